//! The (shape, margin, pathology) joint of real CBIS-DDSM masses, committed
//! as `datasets/cbis-ddsm-mass-joint.csv` (derived once from the official
//! description tables by `dae-data derive-prior`; see `datasets/README.md`).

use crate::vocab::{AttrSet, Attribute, Cluster};

/// The committed table, embedded at build time.
pub const JOINT_CSV: &str = include_str!("../../../../datasets/cbis-ddsm-mass-joint.csv");

/// One row of the joint table: raw CBIS-DDSM cells and counts per official split.
#[derive(Clone, Debug, PartialEq)]
pub struct JointRow {
    pub shape: String,
    pub margin: String,
    pub pathology: String,
    pub train: u32,
    pub test: u32,
}

/// Parses the committed joint table (or any text in its format).
pub fn parse_joint(text: &str) -> Result<Vec<JointRow>, String> {
    let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
    let want = ["shape", "margin", "pathology", "train", "test"];
    if headers.iter().collect::<Vec<_>>() != want {
        return Err(format!("joint table header is {:?}, expected {:?}", headers, want));
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| e.to_string())?;
        let num = |k: usize| rec[k].parse::<u32>().map_err(|_| format!("row {}: count `{}` is not a number", i + 1, &rec[k]));
        rows.push(JointRow {
            shape: rec[0].to_string(),
            margin: rec[1].to_string(),
            pathology: rec[2].to_string(),
            train: num(3)?,
            test: num(4)?,
        });
    }
    Ok(rows)
}

/// A lesion type the generator can draw: one shape, one margin, a label, and its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LesionType {
    pub shape: Attribute,
    pub margin: Attribute,
    pub malignant: bool,
    pub weight: f64,
}

/// Shapes and margins the generator renders.
pub const RENDERED_SHAPES: [Attribute; 4] = [Attribute::Round, Attribute::Oval, Attribute::Lobulated, Attribute::Irregular];
pub const RENDERED_MARGINS: [Attribute; 5] =
    [Attribute::Circumscribed, Attribute::Microlobulated, Attribute::Obscured, Attribute::IllDefined, Attribute::Spiculated];

/// The generator's prior: rows of the real joint with exactly one rendered
/// shape and one rendered margin (1,326 of the 1,696 CBIS-DDSM mass ROIs);
/// BENIGN_WITHOUT_CALLBACK counts as benign.
pub fn lesion_prior() -> Vec<LesionType> {
    let rows = parse_joint(JOINT_CSV).expect("the committed joint table parses (checked by a test)");
    let mut out: Vec<LesionType> = Vec::new();
    for r in rows {
        let (Ok(s), Ok(m)) = (AttrSet::parse_cbis(&r.shape), AttrSet::parse_cbis(&r.margin)) else { continue };
        let shapes: Vec<_> = s.iter().filter(|a| a.cluster() == Cluster::Shape).collect();
        let margins: Vec<_> = m.iter().filter(|a| a.cluster() == Cluster::Margin).collect();
        if shapes.len() != 1 || margins.len() != 1 || !RENDERED_SHAPES.contains(&shapes[0]) || !RENDERED_MARGINS.contains(&margins[0]) {
            continue;
        }
        let malignant = r.pathology == "MALIGNANT";
        let w = (r.train + r.test) as f64;
        match out.iter_mut().find(|t| t.shape == shapes[0] && t.margin == margins[0] && t.malignant == malignant) {
            Some(t) => t.weight += w,
            None => out.push(LesionType { shape: shapes[0], margin: margins[0], malignant, weight: w }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_table_matches_the_cbis_ddsm_totals() {
        let rows = parse_joint(JOINT_CSV).unwrap();
        let train: u32 = rows.iter().map(|r| r.train).sum();
        let test: u32 = rows.iter().map(|r| r.test).sum();
        // The official mass tables: 1,318 train rows and 378 test rows.
        assert_eq!((train, test), (1318, 378));
        let prior = lesion_prior();
        let total: f64 = prior.iter().map(|t| t.weight).sum();
        assert_eq!(total, 1326.0);
        // Real stochasticity: both labels occur for circumscribed and spiculated masses.
        let count =
            |m: Attribute, mal: bool| -> f64 { prior.iter().filter(|t| t.margin == m && t.malignant == mal).map(|t| t.weight).sum() };
        assert!(count(Attribute::Circumscribed, true) > 0.0 && count(Attribute::Spiculated, false) > 0.0);
        assert!(count(Attribute::Spiculated, true) > 5.0 * count(Attribute::Spiculated, false));
    }
}

/// Derives the joint table text from a folder with the CBIS-DDSM mass
/// description tables (official or trimmed layout). Cells are canonical:
/// combined values in vocabulary order, `N/A` for none.
pub fn derive_joint_csv(folder: &std::path::Path) -> crate::error::Result<String> {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<(String, String, String), [u32; 2]> = BTreeMap::new();
    for (k, name) in ["mass_case_description_train_set.csv", "mass_case_description_test_set.csv"].iter().enumerate() {
        let path = folder.join(name);
        if !path.exists() {
            return Err(crate::error::DataError::Missing { path, what: "CBIS-DDSM mass description table".into() });
        }
        for r in crate::cbis::read_table(&path, true)? {
            let key = (r.attributes.cbis_string(Cluster::Shape), r.attributes.cbis_string(Cluster::Margin), r.pathology.clone());
            counts.entry(key).or_default()[k] += 1;
        }
    }
    let mut text = String::from(
        "# Joint counts of (mass shape, mass margins, pathology) in CBIS-DDSM.\n\
         # Source: CBIS-DDSM mass case-description tables (mass_case_description_train_set.csv,\n\
         # mass_case_description_test_set.csv), Sawyer-Lee et al. 2016, CC BY 3.0,\n\
         # doi 10.7937/K9/TCIA.2016.7O02S9CY. Combined values are joined by '-' in vocabulary order.\n\
         # Regenerate: cargo xtask data derive-prior --cbis ../shared/data/cbis-ddsm-csv\n\
         shape,margin,pathology,train,test\n",
    );
    for ((s, m, p), [a, b]) in counts {
        text.push_str(&format!("{s},{m},{p},{a},{b}\n"));
    }
    Ok(text)
}
