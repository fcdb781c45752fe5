//! mini-MIAS: `Info.txt` and 1024 x 1024 PGM films; a square crop around
//! each mass sized from its radius.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};
use crate::image::read_pgm;
use crate::sample::{Sample, Source};
use crate::vocab::{AttrSet, Attribute};

/// Options of the mini-MIAS loader (`kind = "mini-mias"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiasOptions {
    /// Folder with `Info.txt` and the `mdbNNN.pgm` files.
    pub root: PathBuf,
    pub image_size: usize,
    /// Crop side as a multiple of the mass radius.
    pub crop_scale: f64,
    /// Smallest crop side in film pixels.
    pub min_crop: usize,
}

impl Default for MiasOptions {
    fn default() -> Self {
        Self { root: PathBuf::from("datasets/mini-mias"), image_size: 64, crop_scale: 3.0, min_crop: 48 }
    }
}

/// One mass row of `Info.txt`.
#[derive(Clone, Debug, PartialEq)]
pub struct MiasMass {
    pub line: u64,
    pub reference: String,
    pub class: String,
    pub malignant: bool,
    /// (x, y, radius) with the origin at the bottom-left corner.
    pub position: Option<(u32, u32, u32)>,
}

const MASS_CLASSES: [(&str, Attribute); 3] =
    [("CIRC", Attribute::Circumscribed), ("SPIC", Attribute::Spiculated), ("MISC", Attribute::IllDefined)];
const OTHER_CLASSES: [&str; 4] = ["CALC", "ARCH", "ASYM", "NORM"];

/// Parses `Info.txt`: mass rows (CIRC, SPIC, MISC) and the count of other rows.
pub fn parse_info(path: &Path, text: &str) -> Result<(Vec<MiasMass>, usize)> {
    let mut masses = Vec::new();
    let mut others = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let toks: Vec<&str> = raw.split_whitespace().collect();
        if toks.is_empty() || !toks[0].starts_with("mdb") {
            continue;
        }
        let err = |field: &str, problem: String| DataError::Value { path: path.into(), line, field: field.into(), problem };
        if toks.len() < 3 {
            return Err(err("class", format!("row `{raw}` has {} columns; expected at least reference, tissue and class", toks.len())));
        }
        let class = toks[2];
        if OTHER_CLASSES.contains(&class) {
            others += 1;
            continue;
        }
        if !MASS_CLASSES.iter().any(|(c, _)| *c == class) {
            return Err(err("class", format!("`{class}`: expected one of CALC, CIRC, SPIC, MISC, ARCH, ASYM, NORM")));
        }
        let malignant = match toks.get(3) {
            Some(&"M") => true,
            Some(&"B") => false,
            Some(other) => return Err(err("severity", format!("`{other}`: expected B or M"))),
            None => return Err(err("severity", "missing for a mass row; expected B or M".into())),
        };
        let position = if toks.len() >= 7 {
            let num =
                |k: usize, f: &str| toks[k].parse::<u32>().map_err(|_| err(f, format!("`{}` is not a non-negative integer", toks[k])));
            Some((num(4, "x")?, num(5, "y")?, num(6, "radius")?))
        } else if toks.len() == 4 {
            None
        } else {
            return Err(err("x", format!("row `{raw}`: expected x, y and radius or none of them")));
        };
        masses.push(MiasMass { line, reference: toks[0].to_string(), class: class.to_string(), malignant, position });
    }
    Ok((masses, others))
}

/// The patient of a film: odd/even reference numbers are one patient's right/left films.
pub fn patient_of(reference: &str) -> String {
    let n: u32 = reference.trim_start_matches("mdb").parse().unwrap_or(0);
    format!("mias-p{:03}", n.div_ceil(2))
}

/// Loads the mass crops; rows without coordinates or whose image is missing
/// are skipped and counted by reason, as are the non-mass rows.
pub fn load(opts: &MiasOptions) -> Result<(Vec<Sample>, BTreeMap<String, usize>)> {
    let info = opts.root.join("Info.txt");
    if !opts.root.is_dir() {
        return Err(DataError::Missing { path: opts.root.clone(), what: "mini-MIAS folder with Info.txt and mdbNNN.pgm".into() });
    }
    let text = std::fs::read_to_string(&info).map_err(io_err(&info, "cannot read mini-MIAS truth table"))?;
    let (masses, others) = parse_info(&info, &text)?;
    let mut skipped = BTreeMap::new();
    if others > 0 {
        skipped.insert("not a mass (CALC, ARCH, ASYM, NORM)".to_string(), others);
    }
    let mut by_film: BTreeMap<String, Vec<MiasMass>> = BTreeMap::new();
    for m in masses {
        if m.position.is_none() {
            *skipped.entry("mass without coordinates".to_string()).or_insert(0) += 1;
        } else if !opts.root.join(format!("{}.pgm", m.reference)).exists() {
            *skipped.entry("image file missing".to_string()).or_insert(0) += 1;
        } else {
            by_film.entry(m.reference.clone()).or_default().push(m);
        }
    }
    let films: Vec<(String, Vec<MiasMass>)> = by_film.into_iter().collect();
    let per_film: Vec<Vec<Sample>> = films
        .par_iter()
        .map(|(reference, masses)| -> Result<Vec<Sample>> {
            let film = read_pgm(&opts.root.join(format!("{reference}.pgm")))?;
            Ok(masses
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    let (x, y, r) = m.position.expect("filtered above");
                    let side = ((opts.crop_scale * r as f64).round() as usize).max(opts.min_crop).min(film.height.max(film.width));
                    let row = film.height as isize - y as isize;
                    let crop = film.crop_square(row, x as isize, side, 0.0).resize(opts.image_size, opts.image_size);
                    let margin = MASS_CLASSES.iter().find(|(c, _)| *c == m.class).map(|(_, a)| *a).expect("validated class");
                    Sample {
                        id: format!("mias-{reference}-{}", k + 1),
                        patient: patient_of(reference),
                        view: "MLO".into(),
                        source: Source::MiniMias,
                        image: Some(crop),
                        attributes: AttrSet::EMPTY.with(margin),
                        label: m.malignant as u8,
                        factors: None,
                    }
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok((per_film.into_iter().flatten().collect(), skipped))
}
