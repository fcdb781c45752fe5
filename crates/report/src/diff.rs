//! `diff A B`: two runs side by side. The config keys that differ, every
//! numeric metric with B - A, and DeLong's test of the two test AUCs where
//! both runs scored the same test samples with the same labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dae_runfolder::RunFolder;

use crate::collect::{read_scores, Scores};

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("`{spec}`: {problem}")]
    Run { spec: String, problem: String },
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
}

/// The run folder a user names: a folder holding `config.toml`, or a run id
/// or unique id prefix under `results/runs/`.
pub fn find_run(results: &Path, spec: &str) -> Result<PathBuf, DiffError> {
    let bad = |problem: String| DiffError::Run { spec: spec.to_string(), problem };
    let as_path = Path::new(spec);
    if RunFolder::at(as_path).config().exists() {
        return Ok(as_path.to_path_buf());
    }
    let runs = results.join("runs");
    let mut hits: Vec<String> = std::fs::read_dir(&runs)
        .map_err(|e| bad(format!("not a run folder, and {} cannot be read: {e}", runs.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !spec.is_empty() && name.starts_with(spec))
        .collect();
    hits.sort();
    match hits.as_slice() {
        [one] => Ok(runs.join(one)),
        [] => Err(bad(format!("no run folder, and no run id under {} starts with it", runs.display()))),
        many => Err(bad(format!("{} run ids start with it ({}); give more of the id", many.len(), many.join(", ")))),
    }
}

/// One key or metric of the comparison (`None`: absent in that run).
#[derive(Clone, Debug, PartialEq)]
pub struct Row<T> {
    pub key: String,
    pub a: Option<T>,
    pub b: Option<T>,
}

/// DeLong's test of two runs' test AUCs on their common test set.
#[derive(Clone, Debug, PartialEq)]
pub enum AucTest {
    Done {
        n: usize,
        test: dae_metrics::DelongTest,
    },
    /// Why the test does not apply (other samples or labels, no scores).
    NotApplicable(String),
}

/// The comparison of two runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDiff {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Config keys whose values differ, as TOML text.
    pub config: Vec<Row<String>>,
    /// Every numeric metric (dotted keys into `metrics.json`).
    pub metrics: Vec<Row<f64>>,
    pub auc_test: AucTest,
}

/// Compares run folders `a` and `b`.
pub fn diff(a: &Path, b: &Path) -> Result<RunDiff, DiffError> {
    let (ca, cb) = (flat_config(a)?, flat_config(b)?);
    let config = rows(&ca, &cb).into_iter().filter(|r| r.a != r.b).collect();
    let (ma, mb) = (flat_metrics(a)?, flat_metrics(b)?);
    let metrics = rows(&ma, &mb);
    let auc_test = match (read_scores(a), read_scores(b)) {
        (Ok(sa), Ok(sb)) => delong(&sa, &sb),
        (Err(e), _) | (_, Err(e)) => AucTest::NotApplicable(format!("no test scores: {e}")),
    };
    Ok(RunDiff { a: a.to_path_buf(), b: b.to_path_buf(), config, metrics, auc_test })
}

fn rows<T: Clone>(a: &BTreeMap<String, T>, b: &BTreeMap<String, T>) -> Vec<Row<T>> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().map(|k| Row { key: k.clone(), a: a.get(k).cloned(), b: b.get(k).cloned() }).collect()
}

/// `config.toml` as dotted keys and TOML value texts.
fn flat_config(dir: &Path) -> Result<BTreeMap<String, String>, DiffError> {
    let path = RunFolder::at(dir).config();
    let text = std::fs::read_to_string(&path).map_err(|e| DiffError::File { path: path.clone(), problem: e.to_string() })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| DiffError::File { path, problem: e.to_string() })?;
    Ok(dae_sweep::experiment::flatten(&table, "").into_iter().map(|(k, v)| (k, v.to_string())).collect())
}

/// The numeric leaves of `metrics.json` (arrays by index: `test_auc_ci95.0`).
fn flat_metrics(dir: &Path) -> Result<BTreeMap<String, f64>, DiffError> {
    let path = RunFolder::at(dir).metrics();
    let bad = |problem: String| DiffError::File { path: path.clone(), problem };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("{e} (is the run finished?)")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    flatten_json("", &json, &mut out);
    Ok(out)
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| flatten_json(&key(k), v, out)),
        serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| flatten_json(&key(&i.to_string()), v, out)),
        serde_json::Value::Number(n) => {
            out.insert(prefix.to_string(), n.as_f64().unwrap_or(f64::NAN));
        }
        _ => {}
    }
}

/// DeLong's paired test where both runs scored the same samples with the
/// same labels.
fn delong(a: &Scores, b: &Scores) -> AucTest {
    if a.len() != b.len() || a.keys().ne(b.keys()) {
        let common = a.keys().filter(|k| b.contains_key(*k)).count();
        return AucTest::NotApplicable(format!(
            "the test sets differ ({} and {} samples, {common} in common): the AUCs are not paired",
            a.len(),
            b.len()
        ));
    }
    if let Some((id, _)) = a.iter().find(|(id, s)| b[*id].label != s.label) {
        return AucTest::NotApplicable(format!("sample {id} has another label in each run"));
    }
    let labels: Vec<u8> = a.values().map(|s| s.label).collect();
    let (sa, sb): (Vec<f64>, Vec<f64>) = a.iter().map(|(id, s)| (s.score, b[id].score)).unzip();
    match dae_metrics::delong_test(&sa, &sb, &labels) {
        Ok(test) => AucTest::Done { n: labels.len(), test },
        Err(e) => AucTest::NotApplicable(e.to_string()),
    }
}

impl RunDiff {
    /// The comparison as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("# diff\n\nA: {}\nB: {}\n\n## Config\n\n", self.a.display(), self.b.display());
        if self.config.is_empty() {
            s.push_str("The configs are the same.\n");
        } else {
            s.push_str("| key | A | B |\n|---|---|---|\n");
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
            for r in &self.config {
                s.push_str(&format!("| {} | {} | {} |\n", r.key, show(&r.a), show(&r.b)));
            }
        }
        s.push_str("\n## Metrics\n\n| metric | A | B | B - A |\n|---|---:|---:|---:|\n");
        let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
        for r in &self.metrics {
            let d = r.a.zip(r.b).map(|(a, b)| b - a);
            s.push_str(&format!("| {} | {} | {} | {} |\n", r.key, num(r.a), num(r.b), d.map_or("-".into(), |d| format!("{d:+.4}"))));
        }
        s.push_str("\n## Test AUC, DeLong's paired test\n\n");
        match &self.auc_test {
            AucTest::Done { n, test } => s.push_str(&format!(
                "A {:.4}, B {:.4} on the same {n} test samples: z = {:.3}, two-sided p = {:.4}.\n",
                test.auc_a, test.auc_b, test.z, test.p_value
            )),
            AucTest::NotApplicable(why) => s.push_str(&format!("Not applicable: {why}.\n")),
        }
        s
    }
}
