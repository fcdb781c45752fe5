//! Patient-wise, label-stratified, seeded splits, and split files.
//!
//! A split file is a CSV `sample_id,patient,split` (split is `train`, `val`
//! or `test`), so a split can be published and reused exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, DataError, Result};
use crate::rng::{derive_seed, Rng};
use crate::sample::Sample;

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
    fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.name() == s.trim())
    }
}

/// How to split (the `[split]` table of a job).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSpec {
    pub seed: u64,
    /// Proportions of patients in train, val and test (normalised; default 8:1:1).
    pub ratios: [f64; 3],
    /// Cross-validation by patient: the number of folds (0 = off, a single
    /// split by `ratios`). With K folds, fold `fold` is the test set, fold
    /// `fold + 1 (mod K)` the validation set and the rest train; `ratios`
    /// is not used.
    pub folds: usize,
    /// Which fold is the test set (0-based, below `folds`).
    pub fold: usize,
    /// Read the split from this file instead of drawing it.
    pub file: Option<PathBuf>,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self { seed: 0, ratios: [0.8, 0.1, 0.1], folds: 0, fold: 0, file: None }
    }
}

impl SplitSpec {
    /// Checks the values TOML types cannot.
    pub fn validate(&self) -> Result<()> {
        let r = self.ratios;
        if r.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || r.iter().sum::<f64>() <= 0.0 || r[0] <= 0.0 {
            return Err(DataError::Config {
                key: "split.ratios".into(),
                problem: format!("{r:?}: expected three non-negative proportions [train, val, test] with train > 0"),
            });
        }
        if self.folds == 1 || self.folds == 2 {
            return Err(DataError::Config {
                key: "split.folds".into(),
                problem: format!("{}: cross-validation needs at least 3 folds (test, val and train), or 0 for none", self.folds),
            });
        }
        if self.folds > 0 && self.fold >= self.folds {
            return Err(DataError::Config {
                key: "split.fold".into(),
                problem: format!("{}: expected a fold index from 0 to {}", self.fold, self.folds - 1),
            });
        }
        if self.folds == 0 && self.fold != 0 {
            return Err(DataError::Config { key: "split.fold".into(), problem: format!("{} is set but split.folds is 0", self.fold) });
        }
        if self.folds > 0 && self.file.is_some() {
            return Err(DataError::Config { key: "split.file".into(), problem: "cannot be combined with split.folds".into() });
        }
        Ok(())
    }
}

/// Sample indices of each split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitIndices {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

impl SplitIndices {
    pub fn get(&self, s: Split) -> &[usize] {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
    fn get_mut(&mut self, s: Split) -> &mut Vec<usize> {
        match s {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
            Split::Test => &mut self.test,
        }
    }
}

/// Assigns patients to splits: patients are stratified by their label (1 if
/// any of their samples is malignant), each stratum shuffled with the seed
/// and cut by the ratios, or dealt round-robin into `folds` folds.
/// Input: (patient, label) per sample, in any order.
pub fn assign_patients(labels: &[(String, u8)], spec: &SplitSpec) -> Result<HashMap<String, Split>> {
    spec.validate()?;
    let r = spec.ratios;
    let total: f64 = r.iter().sum();
    let mut patient_label: BTreeMap<&str, u8> = BTreeMap::new();
    for (p, y) in labels {
        let e = patient_label.entry(p.as_str()).or_insert(0);
        *e = (*e).max(*y);
    }
    let mut out = HashMap::new();
    for stratum in [0u8, 1u8] {
        let mut ps: Vec<&str> = patient_label.iter().filter(|(_, y)| **y == stratum).map(|(p, _)| *p).collect();
        Rng::new(derive_seed(spec.seed, 1000 + stratum as u64)).shuffle(&mut ps);
        if spec.folds > 0 {
            let k = spec.folds;
            // Stratum 1 continues the deal where stratum 0 stopped, so fold sizes differ by at most one overall.
            let offset = if stratum == 0 { 0 } else { patient_label.values().filter(|y| **y == 0).count() };
            for (i, p) in ps.into_iter().enumerate() {
                let f = (i + offset) % k;
                let s = if f == spec.fold {
                    Split::Test
                } else if f == (spec.fold + 1) % k {
                    Split::Val
                } else {
                    Split::Train
                };
                out.insert(p.to_string(), s);
            }
            continue;
        }
        let n = ps.len() as f64;
        let n_train = (n * r[0] / total).round() as usize;
        let n_val = ((n * (r[0] + r[1]) / total).round() as usize).saturating_sub(n_train);
        for (i, p) in ps.into_iter().enumerate() {
            let s = if i < n_train {
                Split::Train
            } else if i < n_train + n_val {
                Split::Val
            } else {
                Split::Test
            };
            out.insert(p.to_string(), s);
        }
    }
    Ok(out)
}

/// Splits a data set: from `spec.file` if given, else drawn with [`assign_patients`].
pub fn split_samples(samples: &[Sample], spec: &SplitSpec) -> Result<SplitIndices> {
    if let Some(file) = &spec.file {
        return read_split_file(file, samples);
    }
    let labels: Vec<(String, u8)> = samples.iter().map(|s| (s.patient.clone(), s.label)).collect();
    let assignment = assign_patients(&labels, spec)?;
    let mut idx = SplitIndices::default();
    for (i, s) in samples.iter().enumerate() {
        idx.get_mut(assignment[&s.patient]).push(i);
    }
    Ok(idx)
}

/// Writes a split file atomically (temp file + rename).
pub fn write_split_file(path: &Path, samples: &[Sample], split: &SplitIndices) -> Result<()> {
    let mut rows: Vec<(usize, Split)> = Vec::new();
    for s in Split::ALL {
        rows.extend(split.get(s).iter().map(|&i| (i, s)));
    }
    rows.sort();
    let mut text = String::from("sample_id,patient,split\n");
    for (i, s) in rows {
        text.push_str(&format!("{},{},{}\n", crate::csv_field(&samples[i].id), crate::csv_field(&samples[i].patient), s.name()));
    }
    crate::write_atomic(path, text.as_bytes())
}

/// Reads a split file and checks it against the data set: every sample
/// listed exactly once, no unknown sample, patients as in the data set, and
/// no patient in two splits. Errors name the file and line.
pub fn read_split_file(path: &Path, samples: &[Sample]) -> Result<SplitIndices> {
    let text = std::fs::read_to_string(path).map_err(io_err(path, "cannot read split file"))?;
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut lines = crate::csv_lines::PhysicalLines::new(text.as_bytes());
    let headers = rdr.headers().map_err(|e| DataError::Csv { path: path.into(), source: e })?.clone();
    if headers.iter().collect::<Vec<_>>() != ["sample_id", "patient", "split"] {
        return Err(DataError::Columns {
            path: path.into(),
            problem: format!("header is `{}`", headers.iter().collect::<Vec<_>>().join(",")),
            valid: "sample_id, patient, split (in that order)".into(),
        });
    }
    let by_id: HashMap<&str, usize> = samples.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut seen: Vec<Option<Split>> = vec![None; samples.len()];
    let mut patient_split: HashMap<String, (Split, u64)> = HashMap::new();
    let mut idx = SplitIndices::default();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| DataError::Csv { path: path.into(), source: e })?;
        let line = lines.line_of(rec.position());
        let val_err = |field: &str, problem: String| DataError::Value { path: path.into(), line, field: field.into(), problem };
        let id = &rec[0];
        let &i = by_id.get(id).ok_or_else(|| val_err("sample_id", format!("`{id}` is not a sample of this data set")))?;
        let s = Split::parse(&rec[2]).ok_or_else(|| val_err("split", format!("`{}`: expected train, val or test", &rec[2])))?;
        if samples[i].patient != rec[1] {
            return Err(val_err(
                "patient",
                format!("`{}` but the data set says sample `{id}` belongs to `{}`", &rec[1], samples[i].patient),
            ));
        }
        if seen[i].is_some() {
            return Err(val_err("sample_id", format!("`{id}` is listed twice")));
        }
        match patient_split.get(&rec[1]) {
            Some((other, other_line)) if *other != s => {
                return Err(val_err(
                    "split",
                    format!(
                        "patient `{}` is in {} here and in {} on line {other_line}; a patient must be in one split",
                        &rec[1],
                        s.name(),
                        other.name()
                    ),
                ))
            }
            _ => {
                patient_split.insert(rec[1].to_string(), (s, line));
            }
        }
        seen[i] = Some(s);
        idx.get_mut(s).push(i);
    }
    let missing: Vec<&str> = seen.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| samples[i].id.as_str()).take(5).collect();
    if !missing.is_empty() {
        let n = seen.iter().filter(|s| s.is_none()).count();
        return Err(DataError::Split {
            path: path.into(),
            problem: format!("{n} samples of the data set are not listed (first: {})", missing.join(", ")),
        });
    }
    for v in [&mut idx.train, &mut idx.val, &mut idx.test] {
        v.sort_unstable();
    }
    Ok(idx)
}
