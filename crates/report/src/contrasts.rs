//! Intervals that do not overstate: a row's seed-mean AUC (or attribute
//! accuracy) with a two-level bootstrap CI, and the experiment's declared
//! `[[contrast]]`s, each the seed-mean of per-seed paired differences on the
//! rows' common test samples, with its CI, p-value (Holm-adjusted over the
//! experiment's contrasts) and verdict.
//!
//! The bootstrap (`dae_metrics::two_level`, 2,000 resamples) resamples the
//! seeds and the test patients as clusters (a patient's views together); the
//! same patient draw serves both rows of a contrast and, where the seeds
//! share one test set, every seed. A superiority contrast's p-value is the
//! two-sided bootstrap p; an equivalence contrast's is the TOST p within
//! its margin. A contrast whose CI half-width exceeds both its own |delta|
//! and its margin is "below resolution": the data cannot tell.

use std::collections::BTreeMap;

use dae_metrics::{holm, two_level, Draws, RankedScores, Resampling, TestSet};
use dae_sweep::experiment::{Contrast, ContrastKind, ContrastMetric};

use crate::collect::{Collection, RunRecord, SampleScore, Scores};
use crate::ReportError;

/// Bootstrap resamples (pROC's default) and the seed of their draws.
pub const RESAMPLING: Resampling = Resampling { resamples: 2000, seed: 20261202 };

/// What a contrast's result says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// a is higher (superiority, Holm-adjusted p < 0.05).
    Higher,
    /// a is lower.
    Lower,
    /// Equal within the margin (TOST, Holm-adjusted p < 0.05).
    Equivalent,
    /// The CI is narrow enough to resolve the margin, but no difference was shown.
    NoDifference,
    /// The CI is narrow enough, but equivalence was not shown.
    NotEquivalent,
    /// The CI half-width exceeds both |delta| and the margin.
    BelowResolution,
    /// No pair of finished runs to compare.
    Missing,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Higher => "a higher",
            Verdict::Lower => "a lower",
            Verdict::Equivalent => "equivalent",
            Verdict::NoDifference => "no difference shown",
            Verdict::NotEquivalent => "not shown equivalent",
            Verdict::BelowResolution => "below resolution",
            Verdict::Missing => "no runs",
        }
    }
}

/// One contrast's result.
#[derive(Clone, Debug)]
pub struct ContrastResult {
    pub contrast: Contrast,
    /// Seeds both rows finished (on common test samples).
    pub n_seeds: usize,
    pub delta: f64,
    pub ci: (f64, f64),
    /// Two-sided bootstrap p (superiority) or TOST p (equivalence).
    pub p: f64,
    pub p_holm: f64,
    pub verdict: Verdict,
    /// The paper's difference of the same rows (its Table 2 or 3 figures), where it reports both.
    pub paper_delta: Option<f64>,
}

/// A prepared statistic of one run on chosen samples.
enum Prepared {
    Auc(RankedScores),
    /// Per sample, per cluster: whether the predicted attribute is a true one.
    Acc(Vec<Vec<Option<bool>>>),
}

impl Prepared {
    fn new(metric: ContrastMetric, samples: &[&SampleScore]) -> Result<Prepared, String> {
        Ok(match metric {
            ContrastMetric::Auc => {
                Prepared::Auc(RankedScores::new(&samples.iter().map(|s| s.score).collect::<Vec<_>>()).map_err(|e| e.to_string())?)
            }
            ContrastMetric::AttrAcc => Prepared::Acc(samples.iter().map(|s| s.attr_hit.clone()).collect()),
        })
    }

    /// The statistic with sample weights `w` (`None` where undefined).
    fn at(&self, labels: &[u8], w: &[f64]) -> Option<f64> {
        match self {
            Prepared::Auc(r) => r.weighted_auc(labels, w),
            Prepared::Acc(hits) => {
                let clusters = hits.first().map_or(0, |h| h.len());
                let per: Vec<f64> = (0..clusters)
                    .filter_map(|c| {
                        let (mut n, mut k) = (0.0, 0.0);
                        for (h, &wi) in hits.iter().zip(w) {
                            if let Some(hit) = h[c] {
                                n += wi;
                                k += wi * hit as u8 as f64;
                            }
                        }
                        (n > 0.0).then(|| k / n)
                    })
                    .collect();
                (!per.is_empty()).then(|| per.iter().sum::<f64>() / per.len() as f64)
            }
        }
    }
}

/// One seed's data for the bootstrap: its test set and one or two runs' statistics.
struct Seed {
    test: TestSet,
    a: Prepared,
    b: Option<Prepared>,
}

/// The samples `ids` of a run, in order.
fn pick<'a>(scores: &'a Scores, ids: &[&String]) -> Vec<&'a SampleScore> {
    ids.iter().map(|id| &scores[*id]).collect()
}

fn seed_of(metric: ContrastMetric, ids: &[&String], a: &Scores, b: Option<&Scores>) -> Result<Seed, String> {
    let sa = pick(a, ids);
    let test = TestSet::new(sa.iter().map(|s| s.label).collect(), &sa.iter().map(|s| s.patient.as_str()).collect::<Vec<_>>());
    let b = match b {
        Some(b) => Some(Prepared::new(metric, &pick(b, ids))?),
        None => None,
    };
    Ok(Seed { a: Prepared::new(metric, &sa)?, b, test })
}

/// The two-level bootstrap over these seeds of a's statistic, or of a - b.
fn bootstrap(seeds: &[Seed], shared: bool) -> Result<Draws, String> {
    let tests: Vec<&TestSet> = seeds.iter().map(|s| &s.test).collect();
    let stat = |k: usize, w: &[f64]| -> Option<f64> {
        let s = &seeds[k];
        let a = s.a.at(&s.test.labels, w)?;
        match &s.b {
            Some(b) => Some(a - b.at(&s.test.labels, w)?),
            None => Some(a),
        }
    };
    two_level(&tests, shared, &stat, RESAMPLING).map_err(|e| e.to_string())
}

/// A row's seed-mean statistic with its 95% two-level bootstrap CI, from
/// its finished runs' scores (`None` without finished runs or where the
/// statistic is undefined, e.g. no attribute predictions).
pub fn row_interval(metric: ContrastMetric, runs: &[(&RunRecord, &Scores)]) -> Option<(f64, (f64, f64))> {
    let first = runs.first()?.1;
    let shared = runs.iter().all(|(_, s)| s.keys().eq(first.keys()));
    let seeds: Vec<Seed> =
        runs.iter().map(|(_, s)| seed_of(metric, &s.keys().collect::<Vec<_>>(), s, None)).collect::<Result<_, _>>().ok()?;
    let d = bootstrap(&seeds, shared).ok()?;
    Some((d.estimate, d.ci(0.95)))
}

/// The finished runs of a row (variant), by (axes, seed).
fn runs_of<'a>(c: &'a Collection, variant: &str) -> Vec<&'a RunRecord> {
    c.runs.iter().filter(|r| r.is_done() && r.variant.as_deref() == Some(variant)).collect()
}

/// Every declared contrast of the experiment, Holm-adjusted as one family.
pub fn contrasts(c: &Collection, scores: &BTreeMap<String, Scores>) -> Result<Vec<ContrastResult>, ReportError> {
    let mut out: Vec<ContrastResult> = c.experiment.contrasts.iter().map(|k| one(c, k, scores)).collect::<Result<_, _>>()?;
    let present: Vec<usize> = (0..out.len()).filter(|&i| out[i].verdict != Verdict::Missing).collect();
    let adjusted = holm(&present.iter().map(|&i| out[i].p).collect::<Vec<_>>());
    for (&i, p) in present.iter().zip(adjusted) {
        out[i].p_holm = p;
        out[i].verdict = verdict(&out[i]);
    }
    Ok(out)
}

/// One contrast, before the family's adjustment.
fn one(c: &Collection, k: &Contrast, scores: &BTreeMap<String, Scores>) -> Result<ContrastResult, ReportError> {
    let paper = |v: &str| {
        let key = if k.metric == ContrastMetric::Auc { "auc" } else { "attr_acc" };
        c.experiment.variants.iter().find(|x| x.name == v).and_then(|x| x.paper.get(key)).and_then(|x| x.as_float())
    };
    let paper_delta = paper(&k.a).zip(paper(&k.b)).map(|(a, b)| a - b);
    let mut result = ContrastResult {
        contrast: k.clone(),
        n_seeds: 0,
        delta: f64::NAN,
        ci: (f64::NAN, f64::NAN),
        p: f64::NAN,
        p_holm: f64::NAN,
        verdict: Verdict::Missing,
        paper_delta,
    };
    let (ra, rb) = (runs_of(c, &k.a), runs_of(c, &k.b));
    let pairs: Vec<(&RunRecord, &RunRecord)> =
        ra.iter().flat_map(|a| rb.iter().filter(|b| b.seed == a.seed && b.axes == a.axes).map(move |b| (*a, *b))).collect();
    let mut seeds = Vec::new();
    let mut common_sets: Vec<Vec<&String>> = Vec::new();
    for (a, b) in &pairs {
        let (sa, sb) = (&scores[&a.id], &scores[&b.id]);
        let ids: Vec<&String> = sa.keys().filter(|id| sb.contains_key(*id)).collect();
        if ids.is_empty() {
            continue;
        }
        let seed = seed_of(k.metric, &ids, sa, Some(sb)).map_err(|problem| ReportError::Scores { path: a.dir.clone(), problem })?;
        seeds.push(seed);
        common_sets.push(ids);
    }
    if seeds.is_empty() {
        return Ok(result);
    }
    let shared = common_sets.iter().all(|s| *s == common_sets[0]);
    let Ok(d) = bootstrap(&seeds, shared) else { return Ok(result) };
    result.n_seeds = seeds.len();
    result.delta = d.estimate;
    result.ci = d.ci(0.95);
    result.p = match k.kind {
        ContrastKind::Superiority => d.p_two_sided(),
        ContrastKind::Equivalence => d.tost(k.margin),
    };
    result.p_holm = result.p;
    result.verdict = verdict(&result);
    Ok(result)
}

/// The verdict of a contrast from its Holm-adjusted p and its CI.
fn verdict(r: &ContrastResult) -> Verdict {
    let half = (r.ci.1 - r.ci.0) / 2.0;
    let unresolved = half > r.delta.abs() && half > r.contrast.margin;
    match r.contrast.kind {
        ContrastKind::Superiority if r.p_holm < 0.05 => {
            if r.delta > 0.0 {
                Verdict::Higher
            } else {
                Verdict::Lower
            }
        }
        ContrastKind::Equivalence if r.p_holm < 0.05 => Verdict::Equivalent,
        _ if unresolved => Verdict::BelowResolution,
        ContrastKind::Superiority => Verdict::NoDifference,
        ContrastKind::Equivalence => Verdict::NotEquivalent,
    }
}
