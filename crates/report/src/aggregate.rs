//! Rows of a table and what is measured over them: runs grouped by every
//! axis except the seed, with mean, standard deviation (n - 1) and n of each
//! metric (polars `group_by().agg()`), each row's seed-mean AUC and
//! attribute accuracy with a two-level bootstrap CI (seeds and test patients
//! resampled, [`crate::contrasts`]), the experiment's contrasts, and the
//! chance level of attribute accuracy on the test split.

use std::collections::{BTreeMap, HashMap};

use dae_sweep::experiment::ContrastMetric;
use polars::prelude::*;
use toml::Value;

use crate::collect::{to_dataframe, Collection, RunRecord, Scores};
use crate::contrasts::{contrasts, row_interval, ContrastResult};
use crate::ReportError;

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
    /// Finished runs whose files failed their check (counted as missing).
    pub damaged: usize,
    /// Metric name -> statistics over the done runs.
    pub stats: BTreeMap<String, Stat>,
    /// The seed-mean test AUC and its 95% two-level bootstrap CI.
    pub auc_ci: Option<(f64, (f64, f64))>,
    /// The seed-mean attribute accuracy and its 95% two-level bootstrap CI.
    pub attr_ci: Option<(f64, (f64, f64))>,
    /// The attribute graph of the row's first finished run (the training
    /// split, so the graph, is the same for every seed).
    pub graph: Option<dae_runfolder::GraphRecord>,
}

impl RowStats {
    pub fn stat(&self, metric: &str) -> Option<Stat> {
        self.stats.get(metric).copied()
    }

    /// The CI's half-width of the AUC (NaN without one).
    pub fn auc_half_width(&self) -> f64 {
        self.auc_ci.map_or(f64::NAN, |(_, (lo, hi))| (hi - lo) / 2.0)
    }
}

/// Majority-class attribute accuracy on the test split: per cluster, the
/// share of samples (with a true attribute there) whose true attributes
/// include the cluster's most frequent one; and their mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Chance {
    pub per_cluster: Vec<f64>,
    pub mean: f64,
}

/// Everything the tables and figures of an experiment show.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub rows: Vec<RowStats>,
    pub contrasts: Vec<ContrastResult>,
    pub chance: Option<Chance>,
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
    df.with_column(Column::new("group".into(), groups.clone())).map_err(pe("adding the group column"))?;
    let metrics: Vec<String> =
        done.iter().flat_map(|r| r.metrics.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let group_col = df.column("group").map_err(pe("group column"))?.str().map_err(pe("group column"))?.clone();
    let mut names: Vec<&str> = groups.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut result: HashMap<String, BTreeMap<String, Stat>> = HashMap::new();
    for g in names {
        let part = df.filter(&group_col.equal(g)).map_err(pe("grouping runs"))?;
        for m in &metrics {
            let values = part.column(m).map_err(pe("metric column"))?.cast(&DataType::Float64).map_err(pe("metric column"))?;
            let values = values.f64().map_err(pe("metric column"))?;
            let n = values.len() - values.null_count();
            if n == 0 {
                continue;
            }
            let stat = Stat { mean: values.mean().unwrap_or(f64::NAN), std: values.std(1).unwrap_or(f64::NAN), n };
            result.entry(g.to_string()).or_default().insert(m.clone(), stat);
        }
    }
    Ok(result)
}

/// Rows, contrasts and chance level of an experiment's runs.
pub fn analyse(c: &Collection) -> Result<Analysis, ReportError> {
    let mut scores: BTreeMap<String, Scores> = BTreeMap::new();
    for r in c.runs.iter().filter(|r| r.is_done()) {
        scores.insert(r.id.clone(), r.scores()?);
    }
    let rows = aggregate(c, &scores)?;
    let contrasts = contrasts(c, &scores)?;
    let chance = scores.values().next().and_then(chance);
    Ok(Analysis { rows, contrasts, chance })
}

/// The rows of an experiment, in plan order (variants, then axes).
pub fn aggregate(c: &Collection, scores: &BTreeMap<String, Scores>) -> Result<Vec<RowStats>, ReportError> {
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
    for g in &order {
        let runs = &members[g];
        let done: Vec<(&RunRecord, &Scores)> = runs.iter().filter_map(|r| scores.get(&r.id).map(|s| (*r, s))).collect();
        rows.push(RowStats {
            group: g.clone(),
            variant: runs[0].variant.clone(),
            label: runs[0].label.clone(),
            axes: runs[0].axes.clone(),
            planned: runs.len(),
            done: runs.iter().filter(|r| r.is_done()).count(),
            failed: runs.iter().filter(|r| r.status == "failed").count(),
            damaged: runs.iter().filter(|r| r.damage.is_some()).count(),
            stats: stats.get(g).cloned().unwrap_or_default(),
            auc_ci: row_interval(ContrastMetric::Auc, &done),
            attr_ci: row_interval(ContrastMetric::AttrAcc, &done),
            graph: runs.iter().find_map(|r| r.graph.clone()),
        });
    }
    Ok(rows)
}

/// The majority-class accuracy of one run's test split (the same for every
/// row that shares it); `None` without true attributes.
fn chance(scores: &Scores) -> Option<Chance> {
    let clusters = scores.values().next()?.truth.len();
    let per_cluster: Vec<f64> = (0..clusters)
        .filter_map(|c| {
            let truths: Vec<&str> = scores.values().map(|s| s.truth[c].as_str()).filter(|t| !t.is_empty()).collect();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &truths {
                for a in t.split(';') {
                    *counts.entry(a).or_default() += 1;
                }
            }
            let best = counts.values().max()?;
            Some(*best as f64 / truths.len() as f64)
        })
        .collect();
    (!per_cluster.is_empty()).then(|| Chance { mean: per_cluster.iter().sum::<f64>() / per_cluster.len() as f64, per_cluster })
}
