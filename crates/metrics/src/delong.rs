//! DeLong's method (DeLong, DeLong & Clarke-Pearson 1988) for the variance
//! of an AUC and the test of two correlated AUCs on one test set, and a
//! stratified bootstrap CI. Ties count one half; variances use n - 1, as in
//! pROC.

use crate::rng_lite::SplitMix;
use crate::MetricError;

/// An AUC with its DeLong standard error and 95% CI.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AucCi {
    pub auc: f64,
    pub se: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The result of comparing two AUCs on the same samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelongTest {
    pub auc_a: f64,
    pub auc_b: f64,
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

fn psi(x: f64, y: f64) -> f64 {
    if x > y {
        1.0
    } else if x == y {
        0.5
    } else {
        0.0
    }
}

/// Structural components: V10 per positive, V01 per negative, and the AUC.
fn components(scores: &[f64], labels: &[u8]) -> Result<(Vec<f64>, Vec<f64>, f64), MetricError> {
    crate::roc_auc(scores, labels)?; // the same input checks
    let pos: Vec<f64> = scores.iter().zip(labels).filter(|(_, &y)| y == 1).map(|(s, _)| *s).collect();
    let neg: Vec<f64> = scores.iter().zip(labels).filter(|(_, &y)| y == 0).map(|(s, _)| *s).collect();
    let v10: Vec<f64> = pos.iter().map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64).collect();
    let v01: Vec<f64> = neg.iter().map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64).collect();
    let auc = v10.iter().sum::<f64>() / v10.len() as f64;
    Ok((v10, v01, auc))
}

fn cov(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (n - 1.0)
}

/// Standard normal CDF (via erfc, |error| < 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The AUC with DeLong's standard error and a 95% CI (clamped to [0, 1]).
pub fn delong_ci(scores: &[f64], labels: &[u8]) -> Result<AucCi, MetricError> {
    let (v10, v01, auc) = components(scores, labels)?;
    let var = var_or_zero(&v10) / v10.len() as f64 + var_or_zero(&v01) / v01.len() as f64;
    let se = var.max(0.0).sqrt();
    Ok(AucCi { auc, se, lo: (auc - 1.959_963_985 * se).max(0.0), hi: (auc + 1.959_963_985 * se).min(1.0) })
}

fn var_or_zero(v: &[f64]) -> f64 {
    if v.len() < 2 {
        0.0
    } else {
        cov(v, v)
    }
}

/// DeLong's test of two AUCs computed on the same samples (`labels`
/// shared, `a` and `b` the two score vectors).
pub fn delong_test(a: &[f64], b: &[f64], labels: &[u8]) -> Result<DelongTest, MetricError> {
    if a.len() != b.len() {
        return Err(MetricError::Length { scores: a.len(), labels: b.len() });
    }
    let (a10, a01, auc_a) = components(a, labels)?;
    let (b10, b01, auc_b) = components(b, labels)?;
    let (m, n) = (a10.len() as f64, a01.len() as f64);
    let var = (var_or_zero(&a10) + var_or_zero(&b10) - 2.0 * if a10.len() > 1 { cov(&a10, &b10) } else { 0.0 }) / m
        + (var_or_zero(&a01) + var_or_zero(&b01) - 2.0 * if a01.len() > 1 { cov(&a01, &b01) } else { 0.0 }) / n;
    let diff = auc_a - auc_b;
    let (z, p_value) = if var <= 0.0 {
        (if diff == 0.0 { 0.0 } else { f64::INFINITY.copysign(diff) }, if diff == 0.0 { 1.0 } else { 0.0 })
    } else {
        let z = diff / var.sqrt();
        (z, 2.0 * (1.0 - normal_cdf(z.abs())))
    };
    Ok(DelongTest { auc_a, auc_b, z, p_value })
}

/// A percentile bootstrap CI of the AUC: `resamples` stratified resamples
/// (positives and negatives drawn separately, as pROC does), seeded.
/// Returns (lo, hi) for the central `level` (e.g. 0.95).
pub fn bootstrap_auc_ci(scores: &[f64], labels: &[u8], resamples: usize, level: f64, seed: u64) -> Result<(f64, f64), MetricError> {
    bootstrap_mean_auc_ci(&[scores], labels, resamples, level, seed)
}

/// The bootstrap CI of the mean AUC of several score sets on the same
/// samples (e.g. one model trained with several seeds, scored on one test
/// set): each resample draws the samples once (stratified) and applies the
/// same draw to every set, so the interval reflects the test set's sampling
/// of the seed-mean AUC. With one set it is [`bootstrap_auc_ci`].
pub fn bootstrap_mean_auc_ci(sets: &[&[f64]], labels: &[u8], resamples: usize, level: f64, seed: u64) -> Result<(f64, f64), MetricError> {
    if sets.is_empty() {
        return Err(MetricError::Empty);
    }
    for s in sets {
        crate::roc_auc(s, labels)?;
    }
    let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1).collect();
    let neg: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let mut rng = SplitMix(seed);
    let mut aucs = Vec::with_capacity(resamples);
    let mut idx = Vec::with_capacity(labels.len());
    let (mut s, mut y) = (Vec::with_capacity(labels.len()), Vec::with_capacity(labels.len()));
    for _ in 0..resamples.max(1) {
        idx.clear();
        for _ in 0..pos.len() {
            idx.push(pos[rng.below(pos.len())]);
        }
        for _ in 0..neg.len() {
            idx.push(neg[rng.below(neg.len())]);
        }
        let mut total = 0.0;
        for set in sets {
            s.clear();
            y.clear();
            s.extend(idx.iter().map(|&i| set[i]));
            y.extend(idx.iter().map(|&i| labels[i]));
            total += crate::roc_auc(&s, &y)?;
        }
        aucs.push(total / sets.len() as f64);
    }
    aucs.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let k = (p * (aucs.len() - 1) as f64).round() as usize;
        aucs[k.min(aucs.len() - 1)]
    };
    let alpha = (1.0 - level) / 2.0;
    Ok((q(alpha), q(1.0 - alpha)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delong_variance_matches_a_hand_computation() {
        // Positives {0.9, 0.6}, negatives {0.7, 0.1}.
        // V10 = [ (1+1)/2, (0+1)/2 ] = [1, 0.5]; V01 = [ (1+0)/2, (1+1)/2 ] = [0.5, 1].
        // AUC = 0.75; S10 = S01 = 0.125 (n - 1); Var = 0.125/2 + 0.125/2 = 0.125; SE = 0.353553.
        let ci = delong_ci(&[0.9, 0.6, 0.7, 0.1], &[1, 1, 0, 0]).unwrap();
        assert!((ci.auc - 0.75).abs() < 1e-12);
        assert!((ci.se - 0.125f64.sqrt()).abs() < 1e-12);
        assert_eq!(ci.hi, 1.0);
        assert!((ci.lo - (0.75 - 1.959963985 * 0.353553391)).abs() < 1e-6);
    }

    #[test]
    fn delong_test_matches_a_hand_computation() {
        // labels [1, 1, 0, 0]; a = [0.9, 0.6, 0.7, 0.1] (V10 [1, .5], V01 [.5, 1], AUC .75);
        // b = [0.8, 0.1, 0.2, 0.4] (V10 [1, 0], V01 [.5, .5], AUC .5).
        // Var_a10 = .125, Var_b10 = .5, Cov10 = (.25)(.5) + (-.25)(-.5) = .25;
        // Var_a01 = .125, Var_b01 = 0, Cov01 = 0.
        // Var(diff) = (.125 + .5 - .5)/2 + (.125 + 0 - 0)/2 = .125.
        // z = .25 / sqrt(.125) = 0.7071068; p = 2 (1 - Phi(z)) = 0.4795001
        // (Phi from Python's math.erf: 0.5 * (1 + erf(z / sqrt(2)))).
        let t = delong_test(&[0.9, 0.6, 0.7, 0.1], &[0.8, 0.1, 0.2, 0.4], &[1, 1, 0, 0]).unwrap();
        assert!((t.auc_a - 0.75).abs() < 1e-12 && (t.auc_b - 0.5).abs() < 1e-12);
        assert!((t.z - 0.707_106_8).abs() < 1e-6, "{}", t.z);
        assert!((t.p_value - 0.479_500_1).abs() < 1e-6, "{}", t.p_value);
        // A score vector against itself: z = 0, p = 1.
        let same = delong_test(&[0.9, 0.6, 0.7, 0.1], &[0.9, 0.6, 0.7, 0.1], &[1, 1, 0, 0]).unwrap();
        assert_eq!((same.z, same.p_value), (0.0, 1.0));
    }

    #[test]
    fn normal_cdf_matches_tables() {
        // Phi(1.959964) = 0.975, Phi(0) = 0.5, Phi(-1) = 0.1586553.
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(-1.0) - 0.158_655_3).abs() < 1e-6);
    }

    #[test]
    fn bootstrap_ci_brackets_the_auc_and_agrees_with_delong_on_a_large_sample() {
        // 400 samples whose scores separate the classes partly.
        let mut s = Vec::new();
        let mut y = Vec::new();
        let mut r = SplitMix(5);
        for i in 0..400 {
            let label = (i % 2) as u8;
            s.push(r.unit() + 0.35 * label as f64);
            y.push(label);
        }
        let auc = crate::roc_auc(&s, &y).unwrap();
        let (lo, hi) = bootstrap_auc_ci(&s, &y, 2000, 0.95, 1).unwrap();
        assert!(lo < auc && auc < hi);
        let d = delong_ci(&s, &y).unwrap();
        // Both are ~±1.96 SE wide; they agree to within a few thousandths here.
        assert!((lo - d.lo).abs() < 0.01 && (hi - d.hi).abs() < 0.01, "{lo} {hi} vs {} {}", d.lo, d.hi);
        assert_eq!(bootstrap_auc_ci(&s, &y, 200, 0.95, 3).unwrap(), bootstrap_auc_ci(&s, &y, 200, 0.95, 3).unwrap());
    }

    #[test]
    fn bootstrap_of_the_seed_mean_resamples_samples_once_for_all_sets() {
        let mut r = SplitMix(9);
        let y: Vec<u8> = (0..300).map(|i| (i % 3 == 0) as u8).collect();
        let a: Vec<f64> = y.iter().map(|&l| r.unit() + 0.5 * l as f64).collect();
        let b: Vec<f64> = y.iter().map(|&l| r.unit() + 0.2 * l as f64).collect();
        // One set: exactly the single-set bootstrap.
        assert_eq!(bootstrap_mean_auc_ci(&[&a], &y, 300, 0.95, 4).unwrap(), bootstrap_auc_ci(&a, &y, 300, 0.95, 4).unwrap());
        // Two identical sets: the same interval as one.
        assert_eq!(bootstrap_mean_auc_ci(&[&a, &a], &y, 300, 0.95, 4).unwrap(), bootstrap_auc_ci(&a, &y, 300, 0.95, 4).unwrap());
        // Two sets: the interval brackets the mean of their AUCs.
        let mean = (crate::roc_auc(&a, &y).unwrap() + crate::roc_auc(&b, &y).unwrap()) / 2.0;
        let (lo, hi) = bootstrap_mean_auc_ci(&[&a, &b], &y, 1000, 0.95, 4).unwrap();
        assert!(lo < mean && mean < hi, "{lo} {mean} {hi}");
        assert_eq!(bootstrap_mean_auc_ci(&[], &y, 10, 0.95, 4), Err(MetricError::Empty));
    }
}
