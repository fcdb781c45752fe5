//! Runs into records and a polars DataFrame: one row per run, a column per
//! axis and per metric. Runs that failed or never ran are rows too (their
//! metrics empty), so nothing is dropped silently.
//!
//! This module is the reporter's only reader of run folders: the metrics,
//! and on demand a run's per-sample scores ([`RunRecord::scores`]), its
//! history ([`RunRecord::history`]) and its Figure 3 ([`RunRecord::figure3`]).
//! An experiment's jobs come from the runner's plan manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dae_runfolder::{files, read_json, Check, Damage, GraphRecord, Metrics, RunFolder};
use dae_sweep::experiment::{flatten, Variant};
use dae_sweep::plan::show;
use dae_sweep::{Experiment, Manifest, RunDir, Status, SweepError};
use polars::prelude::*;
use rayon::prelude::*;
use toml::Value;

use crate::ReportError;

/// One run as the report sees it.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub id: String,
    pub experiment: String,
    pub variant: Option<String>,
    /// The row's display name (the variant's label, else the axis values).
    pub label: String,
    /// Axis values other than `variant` and `seed`.
    pub axes: Vec<(String, Value)>,
    pub seed: u64,
    /// `done`, `failed`, `incomplete`, `pending`, `stale`, `running`, `damaged`.
    pub status: String,
    /// For a damaged run: which file and what is wrong with it.
    pub damage: Option<String>,
    pub exit_code: Option<i32>,
    /// Numeric entries of `metrics.json`, flattened (`attr_acc_mean`, `probe_auc_h_i`, ...).
    pub metrics: BTreeMap<String, f64>,
    /// `device`, `code_version`; `encoder` and `latent` from the job config.
    pub strings: BTreeMap<String, String>,
    /// The attribute graph a GCN run built.
    pub graph: Option<GraphRecord>,
    pub dir: PathBuf,
}

impl RunRecord {
    /// The row this run belongs to: variant and axes, not the seed.
    pub fn group(&self) -> String {
        let mut parts: Vec<String> = self.variant.iter().map(|v| format!("variant={v}")).collect();
        parts.extend(self.axes.iter().map(|(k, v)| format!("{k}={}", show(v))));
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join(" ")
        }
    }
    pub fn is_done(&self) -> bool {
        self.status == "done" || self.status == "stale"
    }
}

impl Collection {
    /// The encoders and latents the runs used (`small-cnn, latent branches`;
    /// several values joined by ` / `).
    pub fn encoder(&self) -> Option<String> {
        let distinct = |key: &str| -> Vec<&str> {
            let mut v: Vec<&str> = self.runs.iter().filter_map(|r| r.strings.get(key).map(String::as_str)).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let encoders = distinct("encoder");
        if encoders.is_empty() {
            return None;
        }
        let latents = distinct("latent");
        let latent = if latents.is_empty() { String::new() } else { format!(", latent {}", latents.join(" / ")) };
        Some(format!("{}{latent}", encoders.join(" / ")))
    }
}

/// An experiment's runs.
#[derive(Clone, Debug)]
pub struct Collection {
    pub experiment: Experiment,
    pub profile: Option<String>,
    pub runs: Vec<RunRecord>,
    pub not_implemented: Vec<Variant>,
    /// Seeds per row the plan asked for.
    pub planned_seeds: usize,
}

/// A run's `metrics.json` as the report reads it.
#[derive(Clone, Debug, Default)]
pub struct MetricsRead {
    /// Numbers flattened with `_` (arrays of two as `_lo`, `_hi`).
    pub nums: BTreeMap<String, f64>,
    /// `device`, `code_version`.
    pub strings: BTreeMap<String, String>,
    pub graph: Option<GraphRecord>,
}

/// Reads `metrics.json` as the trainer's [`Metrics`]; empty where the file
/// is missing or not a metrics record.
pub fn read_metrics(dir: &Path) -> MetricsRead {
    let Ok(m) = read_json::<Metrics>(&RunFolder::at(dir).metrics()) else { return MetricsRead::default() };
    let (nums, strings) = flatten_metrics(&m);
    MetricsRead { nums, strings, graph: m.graph }
}

fn flatten_metrics(m: &Metrics) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut nums = BTreeMap::new();
    let mut strs = BTreeMap::new();
    let mut v = serde_json::to_value(m).expect("metrics serialise");
    if let Some(o) = v.as_object_mut() {
        o.remove("graph");
    }
    fn walk(prefix: &str, v: &serde_json::Value, nums: &mut BTreeMap<String, f64>, strs: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    nums.insert(prefix.to_string(), x);
                }
            }
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
                    walk(&key, x, nums, strs);
                }
            }
            serde_json::Value::Array(a) if a.len() == 2 => {
                walk(&format!("{prefix}_lo"), &a[0], nums, strs);
                walk(&format!("{prefix}_hi"), &a[1], nums, strs);
            }
            serde_json::Value::String(s) if prefix == "device" || prefix == "code_version" => {
                strs.insert(prefix.to_string(), s.clone());
            }
            _ => {}
        }
    }
    walk("", &v, &mut nums, &mut strs);
    (nums, strs)
}

/// `model.encoder` and `model.latent` of a run's job config.
fn config_strings(rd: &RunDir) -> BTreeMap<String, String> {
    let t: Option<toml::Table> = std::fs::read_to_string(rd.job_toml()).ok().and_then(|t| toml::from_str(&t).ok());
    let model = t.as_ref().and_then(|t| t.get("model")).and_then(|m| m.as_table());
    ["encoder", "latent"]
        .iter()
        .filter_map(|k| model.and_then(|m| m.get(*k)).and_then(|v| v.as_str()).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// Collects the runs of an experiment under a profile (default: the file's
/// default profile), as the runner's plan manifest lists them, whatever
/// their status.
pub fn collect(exp: &Experiment, profile: Option<&str>, results: &Path) -> Result<Collection, SweepError> {
    let profile = exp.plan_label(exp.select_profile(profile)?.map(|(n, _)| n));
    let manifest = Manifest::read(results, &exp.name, profile.as_deref())?;
    let runs: Vec<RunRecord> = manifest.jobs.par_iter().map(|job| record(exp, job, results, &manifest.code_version)).collect();
    let seeds: BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    Ok(Collection {
        experiment: exp.clone(),
        profile,
        runs,
        not_implemented: exp.variants.iter().filter(|v| !v.implemented).cloned().collect(),
        planned_seeds: seeds.len(),
    })
}

/// One planned job's run as the report sees it.
fn record(exp: &Experiment, job: &dae_sweep::manifest::ManifestJob, results: &Path, code_version: &str) -> RunRecord {
    let rd = RunDir::new(results, &job.id);
    let (status, damage) = checked_status(&rd, code_version);
    let read = if matches!(status, Status::Done | Status::Stale { .. }) { read_metrics(&rd.path) } else { Default::default() };
    let mut strings = read.strings;
    strings.extend(config_strings(&rd));
    let axes: Vec<(String, Value)> = job.params.iter().filter(|(k, _)| k != "variant" && k != "seed").cloned().collect();
    let label = match &job.variant {
        Some(v) => exp.variants.iter().find(|x| &x.name == v).map(|x| x.label.clone()).unwrap_or_else(|| v.clone()),
        None => axes.iter().map(|(k, v)| format!("{k}={}", show(v))).collect::<Vec<_>>().join(" "),
    };
    let exit_code = match &status {
        Status::Failed { exit, .. } => *exit,
        _ => None,
    };
    RunRecord {
        id: job.id.clone(),
        experiment: exp.name.clone(),
        variant: job.variant.clone(),
        label,
        axes,
        seed: job.seed,
        status: status.word().to_string(),
        damage,
        exit_code,
        metrics: read.nums,
        strings,
        graph: read.graph,
        dir: rd.path,
    }
}

/// A run's status with the sealed files it reads hashed, and a finished run's
/// `scores.csv` read: a run whose files fail either is damaged (with why).
fn checked_status(rd: &RunDir, code_version: &str) -> (Status, Option<String>) {
    let status = rd.status_checked(code_version, Check::Reports);
    let damage = match &status {
        Status::Damaged { damage } => Some(damage.clone()),
        Status::Done | Status::Stale { .. } => match read_scores(&rd.path) {
            Ok(s) if s.is_empty() => Some(Damage::new(files::SCORES, "no test samples")),
            Ok(_) => None,
            Err(ReportError::Scores { problem, .. }) => Some(Damage::new(files::SCORES, problem)),
            Err(e) => Some(Damage::new(files::SCORES, e.to_string())),
        },
        _ => None,
    };
    match damage {
        Some(d) => (Status::Damaged { damage: d.clone() }, Some(d.to_string())),
        None => (status, None),
    }
}

/// Collects every run folder under `<results>/runs`, whichever experiment
/// made it: axes are the job-config keys whose values differ between runs.
pub fn collect_folder(results: &Path) -> Result<Vec<RunRecord>, ReportError> {
    let runs_dir = results.join("runs");
    let entries: Vec<PathBuf> = match std::fs::read_dir(&runs_dir) {
        Ok(d) => d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(ReportError::Io { path: runs_dir, source }),
    };
    let mut rows: Vec<(RunRecord, Vec<(String, Value)>)> = entries
        .par_iter()
        .map(|dir| {
            let rd = RunDir::at(dir.clone());
            let status = rd.status_unlocked("");
            let read = if status == Status::Done { read_metrics(dir) } else { Default::default() };
            let config: Vec<(String, Value)> = std::fs::read_to_string(rd.job_toml())
                .ok()
                .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
                .map(|t| flatten(&t, ""))
                .unwrap_or_default();
            let seed = config.iter().find(|(k, _)| k == "seed").and_then(|(_, v)| v.as_integer()).unwrap_or(0) as u64;
            let (exit_code, damage) = match &status {
                Status::Failed { exit, .. } => (*exit, None),
                Status::Damaged { damage } => (None, Some(damage.to_string())),
                _ => (None, None),
            };
            let rec = RunRecord {
                id: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                experiment: String::new(),
                variant: None,
                label: String::new(),
                axes: Vec::new(),
                seed,
                status: status.word().to_string(),
                damage,
                exit_code,
                metrics: read.nums,
                strings: read.strings,
                graph: read.graph,
                dir: dir.clone(),
            };
            (rec, config)
        })
        .collect();
    // Keys whose values differ between runs are the axes.
    let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (_, cfg) in &rows {
        for (k, v) in cfg {
            values.entry(k.as_str()).or_default().insert(v.to_string());
        }
    }
    let varying: BTreeSet<String> = values.iter().filter(|(k, v)| v.len() > 1 && **k != "seed").map(|(k, _)| k.to_string()).collect();
    for (rec, cfg) in &mut rows {
        rec.axes = cfg.iter().filter(|(k, _)| varying.contains(k)).cloned().collect();
        rec.label = rec.group();
    }
    let mut out: Vec<RunRecord> = rows.into_iter().map(|(r, _)| r).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One test sample of a run, as `scores.csv` holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleScore {
    pub label: u8,
    pub score: f64,
    pub patient: String,
    /// Per attribute cluster (in the file's order): whether the predicted
    /// attribute is a true one; `None` without a prediction or without a
    /// true attribute in the cluster (the sample does not count there).
    pub attr_hit: Vec<Option<bool>>,
    /// Per cluster, the true attributes (`;`-separated as written).
    pub truth: Vec<String>,
}

/// Per-sample test scores of one run, by sample id.
pub type Scores = BTreeMap<String, SampleScore>;

/// Reads `scores.csv` (`sample_id`, `patient`, `label`, `score`, then
/// `pred_<cluster>` and `true_<cluster>` per cluster).
pub fn read_scores(dir: &Path) -> Result<Scores, ReportError> {
    let path = RunFolder::at(dir).scores();
    let err = |problem: String| ReportError::Scores { path: path.clone(), problem };
    let mut rdr = csv::Reader::from_path(&path).map_err(|e| err(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| err(format!("no `{name}` column")));
    let (ci, pi, li, si) = (col("sample_id")?, col("patient")?, col("label")?, col("score")?);
    let clusters: Vec<(usize, Option<usize>)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("pred_").map(|c| (i, headers.iter().position(|x| x == format!("true_{c}")))))
        .collect();
    let mut out = BTreeMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let bad = |what: &str| err(format!("line {}: bad {what}", i + 2));
        let label: u8 = rec[li].trim().parse().map_err(|_| bad("label"))?;
        let score: f64 = rec[si].trim().parse().map_err(|_| bad("score"))?;
        let (mut attr_hit, mut truth) = (Vec::new(), Vec::new());
        for &(p, t) in &clusters {
            let true_set = t.map(|t| rec[t].to_string()).unwrap_or_default();
            let hit = (!rec[p].is_empty() && !true_set.is_empty()).then(|| true_set.split(';').any(|a| a == &rec[p]));
            attr_hit.push(hit);
            truth.push(true_set);
        }
        out.insert(rec[ci].to_string(), SampleScore { label, score, patient: rec[pi].to_string(), attr_hit, truth });
    }
    Ok(out)
}

/// A small grey image.
#[derive(Clone, Debug)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// A run's Figure 3: the panel names, then per sample its caption lines and
/// one image per panel.
pub struct Figure3Data {
    pub panels: Vec<String>,
    pub samples: Vec<(Vec<String>, Vec<GreyImage>)>,
}

impl RunRecord {
    /// The run's per-sample test scores.
    pub fn scores(&self) -> Result<Scores, ReportError> {
        read_scores(&self.dir)
    }

    /// The run's `history.csv` as one map per epoch (empty where unreadable).
    pub fn history(&self) -> Vec<BTreeMap<String, f64>> {
        let Ok(mut rdr) = csv::Reader::from_path(RunFolder::at(&self.dir).history()) else { return Vec::new() };
        let Ok(headers) = rdr.headers().cloned() else { return Vec::new() };
        rdr.records()
            .flatten()
            .map(|r| headers.iter().zip(r.iter()).filter_map(|(h, v)| v.trim().parse::<f64>().ok().map(|x| (h.to_string(), x))).collect())
            .collect()
    }

    /// Whether the run drew Figure 3.
    pub fn has_figure3(&self) -> bool {
        RunFolder::at(&self.dir).figure3().exists()
    }

    /// The run's Figure 3 (`None` when it drew no sample).
    pub fn figure3(&self) -> Result<Option<Figure3Data>, ReportError> {
        let path = RunFolder::at(&self.dir).figure3();
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io { path: path.clone(), source })?;
        let items: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|x| ReportError::Figure { name: "figure3".into(), problem: format!("{}: {x}", path.display()) })?;
        let mut out = Figure3Data { panels: Vec::new(), samples: Vec::new() };
        for it in &items {
            let Some(file) = it.get("file").and_then(|f| f.as_str()) else { continue };
            out.panels = it
                .get("panels")
                .and_then(|p| p.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let tiles = self.figure3_tiles(file, out.panels.len().max(1))?;
            if !tiles.is_empty() {
                out.samples.push((figure3_caption(it), tiles));
            }
        }
        Ok((!out.samples.is_empty()).then_some(out))
    }

    /// The `n` panels of one Figure 3 strip.
    fn figure3_tiles(&self, file: &str, n: usize) -> Result<Vec<GreyImage>, ReportError> {
        let img = image::open(self.dir.join(file))
            .map_err(|x| ReportError::Figure { name: "figure3".into(), problem: format!("{file}: {x}") })?
            .to_luma8();
        let (w, h) = (img.width() as usize / n, img.height() as usize);
        if w == 0 {
            return Ok(Vec::new());
        }
        Ok((0..n)
            .map(|k| GreyImage {
                width: w,
                height: h,
                pixels: (0..h)
                    .flat_map(|y| (0..w).map(move |x| (k * w + x, y)))
                    .map(|(x, y)| img.get_pixel(x as u32, y as u32).0[0])
                    .collect(),
            })
            .collect())
    }
}

/// A Figure 3 sample's caption: id, truth and score, true and predicted attributes.
fn figure3_caption(it: &serde_json::Value) -> Vec<String> {
    let list = |k: &str| {
        it.get(k).and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    };
    let label_s = if it.get("label").and_then(|v| v.as_u64()) == Some(1) { "malignant" } else { "benign" };
    let score = it.get("score").and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    vec![
        it.get("sample_id").and_then(|v| v.as_str()).unwrap_or("").to_string(),
        format!("truth: {label_s}; P(malignant) = {score:.2}"),
        format!("true attributes: {}", list("true_attributes")),
        format!("predicted: {}", list("predicted_attributes")),
    ]
}

/// The runs as a DataFrame: `id`, `experiment`, `variant`, `label`, one
/// column per axis (numbers as f64, others as strings), `seed`, `status`,
/// `exit_code`, one f64 column per metric, `device`, `code_version`.
pub fn to_dataframe(runs: &[RunRecord]) -> PolarsResult<DataFrame> {
    let mut axis_keys: Vec<String> = Vec::new();
    for r in runs {
        for (k, _) in &r.axes {
            if !axis_keys.contains(k) {
                axis_keys.push(k.clone());
            }
        }
    }
    let metric_keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
    let s = |name: &str, f: &dyn Fn(&RunRecord) -> Option<String>| {
        Column::new(name.into(), runs.iter().map(f).collect::<Vec<Option<String>>>())
    };
    let mut cols = vec![
        s("id", &|r| Some(r.id.clone())),
        s("experiment", &|r| Some(r.experiment.clone())),
        s("variant", &|r| r.variant.clone()),
        s("label", &|r| Some(r.label.clone())),
    ];
    const FIXED: [&str; 8] = ["id", "experiment", "variant", "label", "seed", "status", "exit_code", "device"];
    for k in &axis_keys {
        // An axis named like a fixed column (e.g. `device`) keeps its config path.
        let name =
            if FIXED.contains(&k.as_str()) || k == "code_version" || metric_keys.contains(&k) { format!("config.{k}") } else { k.clone() };
        let vals: Vec<Option<&Value>> = runs.iter().map(|r| r.axes.iter().find(|(a, _)| a == k).map(|(_, v)| v)).collect();
        let numeric = vals.iter().flatten().all(|v| v.is_integer() || v.is_float());
        if numeric {
            let xs: Vec<Option<f64>> = vals.iter().map(|v| v.and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))).collect();
            cols.push(Column::new(name.as_str().into(), xs));
        } else {
            let xs: Vec<Option<String>> = vals.iter().map(|v| v.map(show)).collect();
            cols.push(Column::new(name.as_str().into(), xs));
        }
    }
    cols.push(Column::new("seed".into(), runs.iter().map(|r| r.seed as i64).collect::<Vec<i64>>()));
    cols.push(s("status", &|r| Some(r.status.clone())));
    cols.push(Column::new("exit_code".into(), runs.iter().map(|r| r.exit_code.map(|c| c as i64)).collect::<Vec<Option<i64>>>()));
    for k in metric_keys {
        cols.push(Column::new(k.as_str().into(), runs.iter().map(|r| r.metrics.get(k).copied()).collect::<Vec<Option<f64>>>()));
    }
    cols.push(s("device", &|r| r.strings.get("device").cloned()));
    cols.push(s("code_version", &|r| r.strings.get("code_version").cloned()));
    DataFrame::new_infer_height(cols)
}

/// Writes `<dir>/<stem>.parquet` and `<dir>/<stem>.csv`, each atomically.
pub fn write_frames(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::new();
    for ext in ["parquet", "csv"] {
        let path = dir.join(format!("{stem}.{ext}"));
        let mut bytes = Vec::new();
        let cursor = std::io::Cursor::new(&mut bytes);
        let written = if ext == "parquet" { ParquetWriter::new(cursor).finish(df).map(|_| ()) } else { CsvWriter::new(cursor).finish(df) };
        written.map_err(|e| ReportError::Polars { what: format!("writing {}", path.display()), source: e })?;
        dae_runfolder::write_atomic(&path, &bytes).map_err(|source| ReportError::Io { path: path.clone(), source })?;
        out.push(path);
    }
    Ok(out)
}
