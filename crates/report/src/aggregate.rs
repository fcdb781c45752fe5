//! Rows of a table: runs grouped by every axis except the seed, with mean,
//! standard deviation (n - 1) and n of each metric (polars `group_by().agg()`),
//! a bootstrap CI of the test AUC from the per-sample scores, and DeLong's
//! test against a reference row.
//!
//! - The bootstrap CI is of the seed-mean AUC: 2,000 stratified resamples
//!   of the test samples, each applied to every seed's scores (the seeds
//!   share one test set). Where the seeds' test sets differ (cross-validation
//!   folds), the scores are pooled over runs and bootstrapped as one set.
//! - DeLong compares the seed-averaged scores of a row with those of the
//!   reference row on the same test samples.

use std::collections::{BTreeMap, HashMap};

use dae_metrics::{bootstrap_auc_ci, bootstrap_mean_auc_ci, delong_test, roc_auc};
use polars::prelude::*;
use toml::Value;

use crate::collect::{to_dataframe, Collection, RunRecord, Scores};
use crate::ReportError;

/// Bootstrap resamples (pROC's default).
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Mean, standard deviation (n - 1; NaN for n = 1) and n of one metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

/// One row of a table.
#[derive(Clone, Debug)]
pub struct RowStats {
    pub group: String,
    pub variant: Option<String>,
    pub label: String,
    pub axes: Vec<(String, Value)>,
    pub planned: usize,
    pub done: usize,
    pub failed: usize,
    /// Metric name -> statistics over the done runs.
    pub stats: BTreeMap<String, Stat>,
    /// 95% bootstrap CI of the test AUC.
    pub auc_ci: Option<(f64, f64)>,
    /// How the CI was computed: `seed-mean` or `pooled`.
    pub ci_kind: Option<&'static str>,
    /// AUC of the seed-averaged scores.
    pub averaged_auc: Option<f64>,
    /// DeLong's test of this row's seed-averaged scores against the reference row's.
    pub delong: Option<Delong>,
}

/// A DeLong comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delong {
    /// This row's AUC minus the reference's (seed-averaged scores).
    pub diff: f64,
    pub p_value: f64,
}

impl RowStats {
    pub fn stat(&self, metric: &str) -> Option<Stat> {
        self.stats.get(metric).copied()
    }
}

/// Scores of several runs on one test set, aligned by sample id; `None`
/// where the runs' test sets differ.
fn aligned(sets: &[Scores]) -> Option<(Vec<u8>, Vec<Vec<f64>>)> {
    let first = sets.first()?;
    if sets.iter().any(|s| s.len() != first.len() || !s.keys().eq(first.keys())) {
        return None;
    }
    let labels: Vec<u8> = first.values().map(|(y, _)| *y).collect();
    let scores = sets.iter().map(|s| s.values().map(|(_, x)| *x).collect()).collect();
    Some((labels, scores))
}

fn averaged(labels: &[u8], scores: &[Vec<f64>]) -> Vec<f64> {
    (0..labels.len()).map(|i| scores.iter().map(|s| s[i]).sum::<f64>() / scores.len() as f64).collect()
}

/// The metric statistics per group, computed with polars.
pub fn group_stats(runs: &[RunRecord]) -> Result<HashMap<String, BTreeMap<String, Stat>>, ReportError> {
    let done: Vec<RunRecord> = runs.iter().filter(|r| r.is_done()).cloned().collect();
    if done.is_empty() {
        return Ok(HashMap::new());
    }
    let pe = |what: &str| {
        let what = what.to_string();
        move |source| ReportError::Polars { what: what.clone(), source }
    };
    let mut df = to_dataframe(&done).map_err(pe("building the run table"))?;
    let groups: Vec<String> = done.iter().map(|r| r.group()).collect();
    df.with_column(Column::new("group".into(), groups)).map_err(pe("adding the group column"))?;
    let metrics: Vec<String> =
        done.iter().flat_map(|r| r.metrics.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut aggs = Vec::new();
    for m in &metrics {
        aggs.push(col(m.as_str()).mean().alias(format!("{m}__mean")));
        aggs.push(col(m.as_str()).std(1).alias(format!("{m}__std")));
        aggs.push(col(m.as_str()).count().alias(format!("{m}__n")));
    }
    let out = df.lazy().group_by([col("group")]).agg(aggs).collect().map_err(pe("grouping runs"))?;
    let names = out.column("group").map_err(pe("group column"))?.str().map_err(pe("group column"))?.clone();
    let mut result: HashMap<String, BTreeMap<String, Stat>> = HashMap::new();
    for m in &metrics {
        let mean = out.column(&format!("{m}__mean")).map_err(pe("mean"))?.cast(&DataType::Float64).map_err(pe("mean"))?;
        let std = out.column(&format!("{m}__std")).map_err(pe("std"))?.cast(&DataType::Float64).map_err(pe("std"))?;
        let n = out.column(&format!("{m}__n")).map_err(pe("n"))?.cast(&DataType::UInt64).map_err(pe("n"))?;
        let (mean, std, n) = (mean.f64().map_err(pe("mean"))?, std.f64().map_err(pe("std"))?, n.u64().map_err(pe("n"))?);
        for i in 0..out.height() {
            let Some(g) = names.get(i) else { continue };
            let k = n.get(i).unwrap_or(0) as usize;
            if k == 0 {
                continue;
            }
            let stat = Stat { mean: mean.get(i).unwrap_or(f64::NAN), std: std.get(i).unwrap_or(f64::NAN), n: k };
            result.entry(g.to_string()).or_default().insert(m.clone(), stat);
        }
    }
    Ok(result)
}

/// The rows of an experiment, in plan order (variants, then axes).
pub fn aggregate(c: &Collection) -> Result<Vec<RowStats>, ReportError> {
    let stats = group_stats(&c.runs)?;
    let mut order: Vec<String> = Vec::new();
    let mut members: HashMap<String, Vec<&RunRecord>> = HashMap::new();
    for r in &c.runs {
        let g = r.group();
        if !members.contains_key(&g) {
            order.push(g.clone());
        }
        members.entry(g).or_default().push(r);
    }
    let mut rows = Vec::new();
    let mut scores_of: HashMap<String, Vec<Scores>> = HashMap::new();
    for g in &order {
        let runs = &members[g];
        let first = runs[0];
        let mut sets = Vec::new();
        for r in runs.iter().filter(|r| r.is_done()) {
            sets.push(r.scores()?);
        }
        let (ci, kind, avg) = match aligned(&sets) {
            Some((labels, scores)) => {
                let refs: Vec<&[f64]> = scores.iter().map(|s| s.as_slice()).collect();
                let ci = bootstrap_mean_auc_ci(&refs, &labels, BOOTSTRAP_RESAMPLES, 0.95, 20261126).ok();
                let avg = roc_auc(&averaged(&labels, &scores), &labels).ok();
                (ci, Some("seed-mean"), avg)
            }
            None if !sets.is_empty() => {
                let (mut labels, mut scores) = (Vec::new(), Vec::new());
                for s in &sets {
                    for (y, x) in s.values() {
                        labels.push(*y);
                        scores.push(*x);
                    }
                }
                let ci = bootstrap_auc_ci(&scores, &labels, BOOTSTRAP_RESAMPLES, 0.95, 20261126).ok();
                (ci, Some("pooled"), roc_auc(&scores, &labels).ok())
            }
            None => (None, None, None),
        };
        scores_of.insert(g.clone(), sets);
        rows.push(RowStats {
            group: g.clone(),
            variant: first.variant.clone(),
            label: first.label.clone(),
            axes: first.axes.clone(),
            planned: runs.len(),
            done: runs.iter().filter(|r| r.is_done()).count(),
            failed: runs.iter().filter(|r| r.status == "failed").count(),
            stats: stats.get(g).cloned().unwrap_or_default(),
            auc_ci: ci,
            ci_kind: kind,
            averaged_auc: avg,
            delong: None,
        });
    }
    delong_against_reference(c, &mut rows, &scores_of);
    Ok(rows)
}

/// DeLong's test of each row's seed-averaged scores against the reference
/// row with the same axes, where both share one test set.
fn delong_against_reference(c: &Collection, rows: &mut [RowStats], scores_of: &HashMap<String, Vec<Scores>>) {
    if let Some(reference) = &c.experiment.reference {
        let refs: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.variant.as_deref() == Some(reference.as_str()))
            .map(|(i, r)| (axes_key(&r.axes), i))
            .collect();
        for i in 0..rows.len() {
            let Some(&j) = refs.get(&axes_key(&rows[i].axes)) else { continue };
            if i == j {
                continue;
            }
            let (a, b) = (&scores_of[&rows[i].group], &scores_of[&rows[j].group]);
            let (Some((la, sa)), Some((lb, sb))) = (aligned(a), aligned(b)) else { continue };
            let same_samples = a[0].keys().eq(b[0].keys()) && la == lb;
            if !same_samples {
                continue;
            }
            if let Ok(t) = delong_test(&averaged(&la, &sa), &averaged(&lb, &sb), &la) {
                rows[i].delong = Some(Delong { diff: t.auc_a - t.auc_b, p_value: t.p_value });
            }
        }
    }
}

fn axes_key(axes: &[(String, Value)]) -> String {
    axes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}
