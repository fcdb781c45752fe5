//! The conformance check: our decoding of each DICOM file in a folder
//! against the reference array beside it (`<name>.npy` or `<name>.npy.gz`, the modality values
//! another tool decoded, e.g. by `tools/dicom-conformance/reference.py`
//! with pydicom), as the table in `datasets/README.md`.

use std::path::{Path, PathBuf};

use super::{name_of_syntax, read_dicom_modality, transfer_syntax_of};
use crate::error::{io_err, Result};
use crate::npy;

/// What our decoder made of one file, against its reference.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every value equal.
    Exact,
    /// Same shape; the largest absolute difference (> 0).
    MaxDiff(f32),
    /// Decoded, but to another shape than the reference's.
    Shape { ours: (usize, usize), theirs: (usize, usize) },
    /// Our decoder refused it (the error).
    Error(String),
    /// No `<name>.npy` beside it (the reference tool could not decode it either).
    NoReference,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub file: PathBuf,
    /// Transfer syntax UID and name (`?` when the file meta cannot be read).
    pub syntax: String,
    pub verdict: Verdict,
}

/// Checks every `*.dcm` in `dir` (sorted by name).
pub fn check_folder(dir: &Path) -> Result<Vec<Row>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir, "cannot read the folder"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|f| check_file(&f)).collect())
}

/// Checks one file against `<name>.npy` (or `.npy.gz`) beside it.
pub fn check_file(file: &Path) -> Row {
    let syntax = match transfer_syntax_of(file) {
        Ok(uid) => format!("{uid} {}", name_of_syntax(&uid).unwrap_or("")).trim().to_string(),
        Err(_) => "?".into(),
    };
    let reference = ["npy", "npy.gz"].iter().map(|x| file.with_extension(x)).find(|p| p.exists());
    let verdict = if let Some(reference) = reference {
        match (read_dicom_modality(file), npy::read_f32(&reference)) {
            (Err(e), _) => Verdict::Error(e.to_string()),
            (_, Err(e)) => Verdict::Error(format!("reference: {e}")),
            (Ok(m), Ok((rows, cols, _))) if (m.rows, m.cols) != (rows, cols) => {
                Verdict::Shape { ours: (m.rows, m.cols), theirs: (rows, cols) }
            }
            (Ok(m), Ok((_, _, theirs))) => {
                let max = m.values.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                if max == 0.0 {
                    Verdict::Exact
                } else {
                    Verdict::MaxDiff(max)
                }
            }
        }
    } else {
        Verdict::NoReference
    };
    Row { file: file.to_path_buf(), syntax, verdict }
}

/// The rows as a Markdown table (transfer syntax, file, decoded, exact or max difference).
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from("| transfer syntax | file | decoded | exact or max difference |\n|---|---|---|---|\n");
    for r in rows {
        let name = r.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (decoded, detail) = match &r.verdict {
            Verdict::Exact => ("yes", "exact".to_string()),
            Verdict::MaxDiff(d) => ("yes", format!("max difference {d}")),
            Verdict::Shape { ours, theirs } => ("yes", format!("shape {ours:?}, reference {theirs:?}")),
            Verdict::Error(e) => ("no", short_error(e)),
            Verdict::NoReference => ("-", "no reference (the reference tool cannot decode it)".to_string()),
        };
        s.push_str(&format!("| {} | {name} | {decoded} | {detail} |\n", r.syntax));
    }
    s
}

/// An error without the file's path and the list of supported syntaxes.
fn short_error(e: &str) -> String {
    let e = e.split_once(".dcm: ").map_or(e, |(_, rest)| rest);
    e.split(" (supported: ").next().unwrap_or(e).replace('|', "/")
}
