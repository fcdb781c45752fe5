//! CBIS-DDSM: the case-description CSVs (the official layout with image
//! paths, or the trimmed labels-only layout) and cropped-ROI images (DICOM,
//! including RLE Lossless 16-bit MONOCHROME1/2, or PNG).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dicom_io::{read_dicom, DicomOptions};
use crate::error::{DataError, Result};
use crate::image::{read_png, Image};
use crate::sample::{Sample, Source};
use crate::vocab::AttrSet;

/// What BENIGN_WITHOUT_CALLBACK counts as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithoutCallback {
    #[default]
    Benign,
    Malignant,
    Exclude,
}

/// What a row whose cropped image file is missing does (`dataset.missing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingImages {
    /// Loading fails, with the count and the first few paths.
    #[default]
    Error,
    /// The rows are left out and counted ("image missing").
    Skip,
}

impl MissingImages {
    fn is_error(&self) -> bool {
        *self == MissingImages::Error
    }
}

/// How many missing paths an error or a count lists.
pub const MISSING_SHOWN: usize = 5;

/// Options of the CBIS-DDSM loader (`kind = "cbis-ddsm"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CbisOptions {
    /// Folder holding the description CSVs; image paths in them are relative to it.
    pub root: PathBuf,
    pub image_size: usize,
    pub benign_without_callback: WithoutCallback,
    /// Read the calcification tables too.
    pub calcifications: bool,
    /// Read the mass tables (default true).
    pub masses: bool,
    /// Read labels only, even where image paths are present.
    pub labels_only: bool,
    pub dicom: DicomOptions,
    /// Rows whose image file is missing: an error (default) or skipped.
    /// Left out of the serialised options at its default, so existing
    /// jobs keep their ids.
    #[serde(skip_serializing_if = "MissingImages::is_error")]
    pub missing: MissingImages,
}

impl Default for CbisOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("datasets/cbis-ddsm"),
            image_size: 64,
            benign_without_callback: WithoutCallback::Benign,
            calcifications: false,
            masses: true,
            labels_only: false,
            dicom: DicomOptions::default(),
            missing: MissingImages::Error,
        }
    }
}

/// The official mass header (both spellings of breast density are accepted).
pub const MASS_COLUMNS: &[&str] = &[
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
];
const CALC_ONLY: &[&str] = &["breast density", "calc type", "calc distribution", "patient_age"];
const REQUIRED: &[&str] = &["patient_id", "left or right breast", "image view", "abnormality id", "pathology"];

/// The tables of a folder, by kind: (file name, is_mass).
pub const TABLES: &[(&str, bool)] = &[
    ("mass_case_description_train_set.csv", true),
    ("mass_case_description_test_set.csv", true),
    ("calc_case_description_train_set.csv", false),
    ("calc_case_description_test_set.csv", false),
];

/// One parsed CSV row before its image is read.
#[derive(Clone, Debug)]
pub struct CbisRow {
    pub file: PathBuf,
    pub line: u64,
    pub id: String,
    pub patient: String,
    pub view: String,
    pub attributes: AttrSet,
    /// Raw pathology cell.
    pub pathology: String,
    pub cropped_path: Option<String>,
}

/// Parses one description CSV. Unknown columns and unknown values are errors
/// naming the file, line and field.
pub fn read_table(path: &Path, is_mass: bool) -> Result<Vec<CbisRow>> {
    let text = std::fs::read(path).map_err(crate::error::io_err(path, "cannot open CBIS-DDSM table"))?;
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_slice());
    let mut lines = crate::csv_lines::PhysicalLines::new(&text);
    let headers = rdr.headers().map_err(|e| DataError::Csv { path: path.into(), source: e })?.clone();
    let valid = || MASS_COLUMNS.iter().chain(CALC_ONLY).copied().collect::<Vec<_>>().join(", ");
    for h in headers.iter() {
        if !MASS_COLUMNS.contains(&h) && !CALC_ONLY.contains(&h) {
            return Err(DataError::Columns { path: path.into(), problem: format!("unknown column `{h}`"), valid: valid() });
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut need: Vec<&str> = REQUIRED.to_vec();
    if is_mass {
        need.extend(["mass shape", "mass margins"]);
    }
    for n in &need {
        if col(n).is_none() {
            return Err(DataError::Columns { path: path.into(), problem: format!("missing column `{n}`"), valid: valid() });
        }
    }
    let (c_pat, c_side, c_view, c_abn, c_path) = (
        col("patient_id").unwrap(),
        col("left or right breast").unwrap(),
        col("image view").unwrap(),
        col("abnormality id").unwrap(),
        col("pathology").unwrap(),
    );
    let (c_shape, c_margin, c_crop) = (col("mass shape"), col("mass margins"), col("cropped image file path"));
    let kind = if is_mass { "mass" } else { "calc" };
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| DataError::Csv { path: path.into(), source: e })?;
        let line = lines.line_of(rec.position());
        let err = |field: &str, problem: String| DataError::Value { path: path.into(), line, field: field.into(), problem };
        let mut attributes = AttrSet::EMPTY;
        for (c, field) in [(c_shape, "mass shape"), (c_margin, "mass margins")] {
            if let Some(c) = c {
                let set = AttrSet::parse_cbis(&rec[c]).map_err(|bad| {
                    err(field, format!("unknown value `{bad}` in `{}`; valid: {} or N/A", &rec[c], crate::vocab::Attribute::valid_names()))
                })?;
                attributes = attributes.union(set);
            }
        }
        let pathology = rec[c_path].trim().to_string();
        if !["MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"].contains(&pathology.as_str()) {
            return Err(err("pathology", format!("`{pathology}`: expected MALIGNANT, BENIGN or BENIGN_WITHOUT_CALLBACK")));
        }
        let patient = rec[c_pat].trim().to_string();
        if patient.is_empty() {
            return Err(err("patient_id", "empty".into()));
        }
        let view = rec[c_view].trim().to_string();
        let id = format!("cbis-{kind}-{patient}-{}-{view}-{}", rec[c_side].trim(), rec[c_abn].trim());
        let cropped_path = c_crop.map(|c| rec[c].trim().to_string()).filter(|s| !s.is_empty());
        rows.push(CbisRow { file: path.into(), line, id, patient, view, attributes, pathology, cropped_path });
    }
    Ok(rows)
}

/// Loads the data set: samples and skipped rows by reason.
pub fn load(opts: &CbisOptions) -> Result<(Vec<Sample>, BTreeMap<String, usize>)> {
    let mut rows = read_tables(opts)?;
    check_unique(&rows)?;
    let mut skipped = BTreeMap::new();
    rows.retain(|r| {
        let keep = !(r.pathology == "BENIGN_WITHOUT_CALLBACK" && opts.benign_without_callback == WithoutCallback::Exclude);
        if !keep {
            *skipped.entry("benign without callback (excluded)".to_string()).or_insert(0) += 1;
        }
        keep
    });
    let labels_only = opts.labels_only || rows.iter().all(|r| r.cropped_path.is_none());
    if !labels_only {
        rows = without_missing_images(rows, opts, &mut skipped)?;
    }
    let images: Vec<Result<Option<Image>>> =
        rows.par_iter().map(|r| if labels_only { Ok(None) } else { read_row_image(r, opts).map(Some) }).collect();
    // The first failure in row order, whichever thread met it first.
    let images: Vec<Option<Image>> = images.into_iter().collect::<Result<_>>()?;
    let samples = rows.into_iter().zip(images).map(|(r, image)| to_sample(r, image, opts)).collect();
    Ok((samples, skipped))
}

/// The rows whose image file exists. Missing ones are counted: an error
/// with the count and the first paths, or (`missing = "skip"`) left out and
/// counted under "image missing" with the first paths.
fn without_missing_images(rows: Vec<CbisRow>, opts: &CbisOptions, skipped: &mut BTreeMap<String, usize>) -> Result<Vec<CbisRow>> {
    let total = rows.len();
    let (present, missing): (Vec<CbisRow>, Vec<CbisRow>) =
        rows.into_iter().partition(|r| r.cropped_path.as_ref().is_none_or(|rel| opts.root.join(rel).exists()));
    if missing.is_empty() {
        return Ok(present);
    }
    let first: Vec<String> = missing
        .iter()
        .take(MISSING_SHOWN)
        .map(|r| format!("{} ({}:{})", r.cropped_path.as_deref().unwrap_or(""), r.file.display(), r.line))
        .collect();
    if opts.missing.is_error() {
        return Err(DataError::MissingImages { root: opts.root.clone(), missing: missing.len(), total, first });
    }
    skipped.insert(format!("image missing (first: {})", first.join(", ")), missing.len());
    Ok(present)
}

/// The rows of the selected tables that are present: a folder may hold only
/// some of them, but one with none is an error, not an empty data set.
fn read_tables(opts: &CbisOptions) -> Result<Vec<CbisRow>> {
    if !opts.root.is_dir() {
        return Err(DataError::Missing { path: opts.root.clone(), what: "CBIS-DDSM folder with the case-description CSVs".into() });
    }
    let mut rows = Vec::new();
    let mut found = 0;
    for (name, is_mass) in TABLES {
        if (*is_mass && !opts.masses) || (!*is_mass && !opts.calcifications) {
            continue;
        }
        let p = opts.root.join(name);
        if p.exists() {
            found += 1;
            rows.extend(read_table(&p, *is_mass)?);
        }
    }
    if found == 0 {
        let wanted: Vec<&str> =
            TABLES.iter().filter(|(_, m)| (*m && opts.masses) || (!*m && opts.calcifications)).map(|(n, _)| *n).collect();
        return Err(DataError::Missing { path: opts.root.clone(), what: format!("none of the tables {}", wanted.join(", ")) });
    }
    Ok(rows)
}

/// Rejects a repeated abnormality id: ids name samples in splits and
/// reports, so two rows with one id would be confused downstream.
fn check_unique(rows: &[CbisRow]) -> Result<()> {
    let mut seen = HashSet::new();
    for r in rows {
        if !seen.insert(r.id.clone()) {
            return Err(DataError::Value {
                path: r.file.clone(),
                line: r.line,
                field: "abnormality id".into(),
                problem: format!("duplicate abnormality `{}`", r.id),
            });
        }
    }
    Ok(())
}

/// The cropped ROI a row names. A missing or undecodable image is an error
/// naming the file (and the CSV line that points at it), never a silently
/// smaller data set.
fn read_row_image(r: &CbisRow, opts: &CbisOptions) -> Result<Image> {
    let Some(rel) = &r.cropped_path else {
        return Err(DataError::Value {
            path: r.file.clone(),
            line: r.line,
            field: "cropped image file path".into(),
            problem: "empty".into(),
        });
    };
    let p = opts.root.join(rel);
    if !p.exists() {
        return Err(DataError::Missing { path: p, what: format!("cropped ROI image named on line {} of {}", r.line, r.file.display()) });
    }
    read_roi(&p, opts)
}

/// The sample of a row; BENIGN_WITHOUT_CALLBACK counts as malignant only
/// when the options say so (excluded rows are gone by now).
fn to_sample(r: CbisRow, image: Option<Image>, opts: &CbisOptions) -> Sample {
    let label = match r.pathology.as_str() {
        "MALIGNANT" => 1,
        "BENIGN_WITHOUT_CALLBACK" if opts.benign_without_callback == WithoutCallback::Malignant => 1,
        _ => 0,
    };
    Sample { id: r.id, patient: r.patient, view: r.view, source: Source::CbisDdsm, image, attributes: r.attributes, label, factors: None }
}

/// Reads one cropped ROI (DICOM or PNG), pads it square and resizes it.
pub fn read_roi(path: &Path, opts: &CbisOptions) -> Result<Image> {
    let img = match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => read_png(path)?,
        _ => read_dicom(path, &opts.dicom)?,
    };
    Ok(img.pad_square(0.0).resize(opts.image_size, opts.image_size))
}
