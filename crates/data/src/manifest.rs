//! A folder manifest for users with other data: a CSV with the columns
//! `path,label` and optionally `attributes`, `patient`, `view`, `id`, over
//! PNG, PGM or DICOM images (paths relative to the manifest's folder).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image::read_any;
use crate::sample::{Sample, Source};
use crate::vocab::AttrSet;

/// Options of the manifest loader (`kind = "manifest"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestOptions {
    /// The manifest CSV, or a folder holding `manifest.csv`.
    pub root: PathBuf,
    pub image_size: usize,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self { root: PathBuf::from("datasets/manifest.csv"), image_size: 64 }
    }
}

const COLUMNS: &[&str] = &["path", "label", "attributes", "patient", "view", "id"];

/// Loads the samples listed in a manifest. Errors name the file, line and column.
pub fn load(opts: &ManifestOptions) -> Result<(Vec<Sample>, BTreeMap<String, usize>)> {
    let path = if opts.root.is_dir() { opts.root.join("manifest.csv") } else { opts.root.clone() };
    if !path.exists() {
        return Err(DataError::Missing { path, what: "manifest CSV (columns path,label[,attributes,patient,view,id])".into() });
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let text = std::fs::read(&path).map_err(crate::error::io_err(&path, "cannot read the manifest"))?;
    let mut rdr = csv::Reader::from_reader(text.as_slice());
    let mut lines = crate::csv_lines::PhysicalLines::new(&text);
    let headers = rdr.headers().map_err(|e| DataError::Csv { path: path.clone(), source: e })?.clone();
    for h in headers.iter() {
        if !COLUMNS.contains(&h) {
            return Err(DataError::Columns { path: path.clone(), problem: format!("unknown column `{h}`"), valid: COLUMNS.join(", ") });
        }
    }
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(c_path), Some(c_label)) = (col("path"), col("label")) else {
        return Err(DataError::Columns {
            path: path.clone(),
            problem: "the columns `path` and `label` are required".into(),
            valid: COLUMNS.join(", "),
        });
    };
    let (c_attr, c_pat, c_view, c_id) = (col("attributes"), col("patient"), col("view"), col("id"));
    let mut rows: Vec<(u64, PathBuf, Sample)> = Vec::new();
    let mut ids = HashSet::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| DataError::Csv { path: path.clone(), source: e })?;
        let line = lines.line_of(rec.position());
        let err = |field: &str, problem: String| DataError::Value { path: path.clone(), line, field: field.into(), problem };
        let rel = rec[c_path].trim();
        if rel.is_empty() {
            return Err(err("path", "empty".into()));
        }
        let label = match rec[c_label].trim().to_ascii_lowercase().as_str() {
            "1" | "malignant" => 1,
            "0" | "benign" => 0,
            other => return Err(err("label", format!("`{other}`: expected 0, 1, benign or malignant"))),
        };
        let mut attributes = AttrSet::EMPTY;
        if let Some(c) = c_attr {
            for part in rec[c].split([';', '|']).filter(|p| !p.trim().is_empty()) {
                let set = AttrSet::parse_cbis(part).map_err(|bad| {
                    err(
                        "attributes",
                        format!("unknown attribute `{bad}`; valid: {} (separate with ';')", crate::vocab::Attribute::valid_names()),
                    )
                })?;
                attributes = attributes.union(set);
            }
        }
        let id = c_id.map(|c| rec[c].trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| rel.to_string());
        if !ids.insert(id.clone()) {
            return Err(err("id", format!("duplicate sample id `{id}`")));
        }
        let patient = c_pat.map(|c| rec[c].trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| id.clone());
        let view = c_view.map(|c| rec[c].trim().to_string()).unwrap_or_default();
        let sample = Sample { id, patient, view, source: Source::Manifest, image: None, attributes, label, factors: None };
        rows.push((line, base.join(rel), sample));
    }
    let samples: Vec<Sample> = rows
        .into_par_iter()
        .map(|(line, p, mut s)| -> Result<Sample> {
            let img = read_any(&p).map_err(|e| DataError::Value {
                path: path.clone(),
                line,
                field: "path".into(),
                problem: format!("the image cannot be read: {e}"),
            })?;
            s.image = Some(img.pad_square(0.0).resize(opts.image_size, opts.image_size));
            Ok(s)
        })
        .collect::<Result<_>>()?;
    Ok((samples, BTreeMap::new()))
}
