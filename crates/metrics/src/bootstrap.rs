//! The two-level bootstrap of a seed-mean statistic: seeds resampled, test
//! patients resampled as clusters (all the views of a patient together),
//! and, where the seeds share one test set, the same patient draw for every
//! seed and every row. It gives the per-row CIs (a row's seed-mean AUC) and
//! the paired contrasts (the seed-mean of per-seed AUC differences between
//! two rows on their common test samples), with percentile CIs and p-values
//! from the same draws; [`holm`] adjusts a family of p-values and
//! [`Draws::tost`] tests equivalence within a margin.

use crate::rng_lite::SplitMix;
use crate::MetricError;

/// One seed's test samples: each sample's label (0/1) and cluster (patient),
/// clusters numbered `0..n_clusters`.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSet {
    pub labels: Vec<u8>,
    pub cluster: Vec<usize>,
    pub n_clusters: usize,
}

impl TestSet {
    /// Numbers the clusters of per-sample patient ids in order of appearance.
    pub fn new<S: AsRef<str>>(labels: Vec<u8>, patients: &[S]) -> TestSet {
        let mut ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let cluster: Vec<usize> = patients
            .iter()
            .map(|p| {
                let n = ids.len();
                *ids.entry(p.as_ref()).or_insert(n)
            })
            .collect();
        TestSet { labels, n_clusters: ids.len(), cluster }
    }

    /// Sample weights for a cluster draw: each sample counts as often as its
    /// cluster was drawn.
    fn weights(&self, counts: &[u32], out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.cluster.iter().map(|&c| counts[c] as f64));
    }
}

/// Scores sorted once, so a weighted AUC costs one pass.
#[derive(Clone, Debug)]
pub struct RankedScores {
    /// Sample indices in ascending score order.
    order: Vec<usize>,
    /// For each position of `order`, the end (exclusive) of its run of tied scores.
    tie_end: Vec<usize>,
}

impl RankedScores {
    pub fn new(scores: &[f64]) -> Result<RankedScores, MetricError> {
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            return Err(MetricError::NotFinite { index });
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut tie_end = vec![0; order.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i + 1;
            while j < order.len() && scores[order[j]] == scores[order[i]] {
                j += 1;
            }
            tie_end[i..j].fill(j);
            i = j;
        }
        Ok(RankedScores { order, tie_end })
    }

    /// The AUC with each sample counted `weights[i]` times (ties count one
    /// half); `None` when a class has no weight.
    pub fn weighted_auc(&self, labels: &[u8], weights: &[f64]) -> Option<f64> {
        let (mut neg_below, mut sum, mut w_pos, mut w_neg) = (0.0, 0.0, 0.0, 0.0);
        let mut i = 0;
        while i < self.order.len() {
            let end = self.tie_end[i];
            let (mut pos, mut neg) = (0.0, 0.0);
            for &k in &self.order[i..end] {
                if labels[k] == 1 {
                    pos += weights[k];
                } else {
                    neg += weights[k];
                }
            }
            sum += pos * (neg_below + 0.5 * neg);
            neg_below += neg;
            (w_pos, w_neg) = (w_pos + pos, w_neg + neg);
            i = end;
        }
        (w_pos > 0.0 && w_neg > 0.0).then(|| sum / (w_pos * w_neg))
    }
}

/// The bootstrap distribution of a statistic and its full-data value.
#[derive(Clone, Debug, PartialEq)]
pub struct Draws {
    /// The statistic on the data as they are.
    pub estimate: f64,
    /// The statistic on each resample, sorted.
    pub draws: Vec<f64>,
}

impl Draws {
    /// The percentile interval holding the central `level` (e.g. 0.95).
    pub fn ci(&self, level: f64) -> (f64, f64) {
        let a = (1.0 - level) / 2.0;
        (self.quantile(a), self.quantile(1.0 - a))
    }

    fn quantile(&self, p: f64) -> f64 {
        let k = (p * (self.draws.len() - 1) as f64).round() as usize;
        self.draws[k.min(self.draws.len() - 1)]
    }

    /// The share of draws at or below `x` (and at or above it), with the
    /// usual +1 correction so no p-value is 0.
    fn tails(&self, x: f64) -> (f64, f64) {
        let n = self.draws.len() as f64;
        let below = self.draws.iter().filter(|&&d| d <= x).count() as f64;
        let above = self.draws.iter().filter(|&&d| d >= x).count() as f64;
        ((below + 1.0) / (n + 1.0), (above + 1.0) / (n + 1.0))
    }

    /// Two-sided p-value of "the statistic is 0" by test inversion of the
    /// percentile interval: twice the smaller tail at 0, at most 1.
    pub fn p_two_sided(&self) -> f64 {
        let (lo, hi) = self.tails(0.0);
        (2.0 * lo.min(hi)).min(1.0)
    }

    /// TOST p-value of "|statistic| >= margin" (equivalence is shown when it
    /// is below alpha): the larger of the tails beyond -margin and +margin.
    pub fn tost(&self, margin: f64) -> f64 {
        let (below_low, _) = self.tails(-margin);
        let (_, above_high) = self.tails(margin);
        below_low.max(above_high).min(1.0)
    }
}

/// Resampling settings: how many draws, and the seed of the draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resampling {
    pub resamples: usize,
    pub seed: u64,
}

/// The two-level bootstrap of `mean over seeds s of stat(s, weights_s)`.
/// `tests[s]` is seed `s`'s test set; with `shared`, every seed's test set
/// is the same and one cluster draw serves all seeds. `stat(s, w)` is seed
/// `s`'s statistic with sample weights `w` (all ones for the data as they
/// are); a resample on which it is undefined (`None`, e.g. one class only)
/// is drawn again.
pub fn two_level(
    tests: &[&TestSet],
    shared: bool,
    stat: &dyn Fn(usize, &[f64]) -> Option<f64>,
    r: Resampling,
) -> Result<Draws, MetricError> {
    if tests.is_empty() {
        return Err(MetricError::Empty);
    }
    let ones: Vec<Vec<f64>> = tests.iter().map(|t| vec![1.0; t.labels.len()]).collect();
    let full: Option<Vec<f64>> = (0..tests.len()).map(|s| stat(s, &ones[s])).collect();
    let full = full.ok_or(MetricError::Empty)?;
    let estimate = full.iter().sum::<f64>() / full.len() as f64;
    let mut rng = SplitMix(r.seed);
    let mut draws = Vec::with_capacity(r.resamples);
    let (mut counts, mut w) = (Vec::new(), Vec::new());
    let mut tries = 0;
    while draws.len() < r.resamples.max(1) {
        tries += 1;
        if tries > 20 * r.resamples.max(1) {
            return Err(MetricError::Empty);
        }
        let seeds: Vec<usize> = (0..tests.len()).map(|_| rng.below(tests.len())).collect();
        let mut total = 0.0;
        let mut ok = true;
        let shared_counts = shared.then(|| draw_clusters(&mut rng, tests[0].n_clusters));
        for &s in &seeds {
            match &shared_counts {
                Some(c) => counts.clone_from(c),
                None => counts = draw_clusters(&mut rng, tests[s].n_clusters),
            }
            tests[s].weights(&counts, &mut w);
            match stat(s, &w) {
                Some(v) => total += v,
                None => ok = false,
            }
        }
        if ok {
            draws.push(total / seeds.len() as f64);
        }
    }
    draws.sort_by(f64::total_cmp);
    Ok(Draws { estimate, draws })
}

/// How often each of `n` clusters is drawn in `n` draws with replacement.
fn draw_clusters(rng: &mut SplitMix, n: usize) -> Vec<u32> {
    let mut counts = vec![0u32; n];
    for _ in 0..n {
        counts[rng.below(n)] += 1;
    }
    counts
}

/// Holm's step-down adjustment of a family of p-values (returned in the
/// given order): the k-th smallest is multiplied by (m - k + 1), then made
/// monotone and capped at 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_auc_matches_the_auc_of_repeated_samples() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.2];
        let labels = [0u8, 0, 1, 1, 1, 0];
        let r = RankedScores::new(&scores).unwrap();
        assert!((r.weighted_auc(&labels, &[1.0; 6]).unwrap() - crate::roc_auc(&scores, &labels).unwrap()).abs() < 1e-12);
        // Weights 2, 0, 1, 3, 1, 1 are the data with those repetitions.
        let w = [2.0, 0.0, 1.0, 3.0, 1.0, 1.0];
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for i in 0..6 {
            for _ in 0..w[i] as usize {
                s.push(scores[i]);
                y.push(labels[i]);
            }
        }
        assert!((r.weighted_auc(&labels, &w).unwrap() - crate::roc_auc(&s, &y).unwrap()).abs() < 1e-12);
        assert_eq!(r.weighted_auc(&labels, &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]), None);
    }

    #[test]
    fn holm_matches_hand_computed_adjustments() {
        // Sorted 0.01, 0.02, 0.03, 0.04 times 4, 3, 2, 1: 0.04, 0.06, 0.06 (monotone), 0.06 (monotone).
        let adj = holm(&[0.03, 0.01, 0.04, 0.02]);
        let want = [0.06, 0.04, 0.06, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn tost_and_two_sided_p_from_hand_made_draws() {
        // 19 draws: -0.01 .. 0.035 in steps of 0.0025.
        let draws: Vec<f64> = (0..19).map(|k| -0.01 + 0.0025 * k as f64).collect();
        let d = Draws { estimate: 0.0125, draws };
        // Margin 0.03: below -0.03 none -> 1/20; above +0.03: 0.03, 0.0325, 0.035 -> 4/20.
        assert!((d.tost(0.03) - 0.2).abs() < 1e-12);
        // Margin 0.04: both tails empty -> 1/20: equivalence shown at 0.05? 0.05 is not below it.
        assert!((d.tost(0.04) - 0.05).abs() < 1e-12);
        // At 0: 5 draws <= 0 (-0.01 .. 0.0) -> 6/20, 15 >= 0 -> 16/20; two-sided 0.6.
        assert!((d.p_two_sided() - 0.6).abs() < 1e-12);
        assert_eq!(d.ci(0.9), (d.draws[1], d.draws[17]));
    }

    /// A tiny case: 2 seeds on one shared test set of 3 patients (5
    /// samples), statistic AUC(a) - AUC(b) per seed. The exact bootstrap
    /// distribution enumerates the 4 seed draws x 27 ordered patient draws
    /// (dropping the draws with one class, which the bootstrap draws again);
    /// the sampled bootstrap must match its mean and spread.
    #[test]
    fn the_two_level_bootstrap_matches_the_enumerated_distribution_on_a_tiny_case() {
        let test = TestSet::new(vec![1, 0, 1, 0, 0], &["p0", "p0", "p1", "p2", "p2"]);
        let a = [[0.9, 0.2, 0.6, 0.5, 0.1], [0.7, 0.3, 0.8, 0.4, 0.35]];
        let b = [[0.6, 0.5, 0.4, 0.45, 0.2], [0.5, 0.6, 0.9, 0.55, 0.1]];
        let ranked: Vec<(RankedScores, RankedScores)> =
            (0..2).map(|s| (RankedScores::new(&a[s]).unwrap(), RankedScores::new(&b[s]).unwrap())).collect();
        let stat = |s: usize, w: &[f64]| -> Option<f64> {
            Some(ranked[s].0.weighted_auc(&test.labels, w)? - ranked[s].1.weighted_auc(&test.labels, w)?)
        };
        let mut exact = Vec::new();
        for seeds in [[0, 0], [0, 1], [1, 0], [1, 1]] {
            for draw in 0..27 {
                let mut counts = [0u32; 3];
                for k in [draw % 3, (draw / 3) % 3, draw / 9] {
                    counts[k] += 1;
                }
                let w: Vec<f64> = test.cluster.iter().map(|&c| counts[c] as f64).collect();
                if let (Some(x), Some(y)) = (stat(seeds[0], &w), stat(seeds[1], &w)) {
                    exact.push((x + y) / 2.0);
                }
            }
        }
        let d = two_level(&[&test, &test], true, &stat, Resampling { resamples: 40_000, seed: 7 }).unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((mean(&d.draws) - mean(&exact)).abs() < 0.005, "{} vs {}", mean(&d.draws), mean(&exact));
        assert!((sd(&d.draws) - sd(&exact)).abs() < 0.005, "{} vs {}", sd(&d.draws), sd(&exact));
        // The estimate is the seed mean of the full-data differences.
        let ones = [1.0; 5];
        assert!((d.estimate - (stat(0, &ones).unwrap() + stat(1, &ones).unwrap()) / 2.0).abs() < 1e-12);
    }

    /// Duplicating every patient's view doubles the samples but adds no
    /// information: the sample (ROI) bootstrap's interval narrows by about
    /// sqrt(2), the cluster bootstrap's stays, so it is the wider one.
    #[test]
    fn the_cluster_bootstrap_does_not_narrow_when_views_are_duplicated() {
        let mut rng = SplitMix(3);
        let (mut s1, mut y1, mut p1) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..80 {
            let y = (i % 2) as u8;
            s1.push(rng.unit() + 0.4 * y as f64);
            y1.push(y);
            p1.push(format!("p{i}"));
        }
        let dup = |v: &[f64]| v.iter().flat_map(|x| [*x, *x]).collect::<Vec<_>>();
        let (s2, y2): (Vec<f64>, Vec<u8>) = (dup(&s1), y1.iter().flat_map(|y| [*y, *y]).collect());
        let p2: Vec<String> = p1.iter().flat_map(|p| [p.clone(), p.clone()]).collect();
        let width = |(lo, hi): (f64, f64)| hi - lo;
        let roi = |s: &[f64], y: &[u8]| width(crate::bootstrap_auc_ci(s, y, 4000, 0.95, 1).unwrap());
        let cluster = |s: &[f64], y: &[u8], p: &[String]| {
            let t = TestSet::new(y.to_vec(), p);
            let r = RankedScores::new(s).unwrap();
            width(two_level(&[&t], true, &|_, w| r.weighted_auc(&t.labels, w), Resampling { resamples: 4000, seed: 1 }).unwrap().ci(0.95))
        };
        let (roi1, roi2) = (roi(&s1, &y1), roi(&s2, &y2));
        let (cl1, cl2) = (cluster(&s1, &y1, &p1), cluster(&s2, &y2, &p2));
        assert!(roi2 < 0.8 * roi1, "the ROI bootstrap narrows: {roi1} -> {roi2}");
        assert!((cl2 - cl1).abs() < 0.1 * cl1, "the cluster bootstrap stays: {cl1} -> {cl2}");
        assert!(cl2 > 1.25 * roi2, "cluster {cl2} vs ROI {roi2} on duplicated views");
    }
}
