use crate::MetricError;

/// Per-feature standardisation fitted on one set and applied to others.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardizer {
    pub fn fit(x: &[Vec<f64>]) -> Standardizer {
        let d = x.first().map_or(0, |r| r.len());
        let n = x.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for r in x {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n;
            }
        }
        let mut std = vec![0.0; d];
        for r in x {
            for ((s, v), m) in std.iter_mut().zip(r).zip(&mean) {
                *s += (v - m).powi(2) / n;
            }
        }
        let std = std.into_iter().map(|v| if v > 1e-24 { v.sqrt() } else { 1.0 }).collect();
        Standardizer { mean, std }
    }
    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| (v - m) / s).collect()
    }
}

/// L2-regularised logistic regression (intercept unpenalised), fitted by
/// Newton's method on standardised features.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticRegression {
    pub standardizer: Standardizer,
    /// Intercept first, then one weight per (standardised) feature.
    pub weights: Vec<f64>,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky; a
/// pivot below 1e-12 is raised to it, so a nearly singular `a` gives a large
/// but finite answer instead of NaN).
pub fn solve_spd(mut a: Vec<Vec<f64>>, b: &[f64]) -> Vec<f64> {
    let n = b.len();
    for j in 0..n {
        let mut d = a[j][j];
        for k in 0..j {
            d -= a[j][k] * a[j][k];
        }
        let d = d.max(1e-12).sqrt();
        a[j][j] = d;
        for i in j + 1..n {
            let mut s = a[i][j];
            for k in 0..j {
                s -= a[i][k] * a[j][k];
            }
            a[i][j] = s / d;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i][k] * y[k];
        }
        y[i] = s / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= a[k][i] * x[k];
        }
        x[i] = s / a[i][i];
    }
    x
}

/// The common width of the rows of `x`, after checking that `x` and the
/// labels `y` have the same length and no row is ragged.
pub(crate) fn feature_width(x: &[Vec<f64>], y: &[u8]) -> Result<usize, MetricError> {
    if x.len() != y.len() {
        return Err(MetricError::Length { scores: x.len(), labels: y.len() });
    }
    let d = x.first().map_or(0, |r| r.len());
    if let Some((row, r)) = x.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(MetricError::Ragged { row, got: r.len(), expected: d });
    }
    Ok(d)
}

impl LogisticRegression {
    /// Fits on rows `x` with labels `y` (0/1) and L2 strength `lambda`
    /// (on the mean log-loss scale).
    pub fn fit(x: &[Vec<f64>], y: &[u8], lambda: f64) -> Result<LogisticRegression, MetricError> {
        let d = feature_width(x, y)?;
        let standardizer = Standardizer::fit(x);
        let z: Vec<Vec<f64>> = x.iter().map(|r| std::iter::once(1.0).chain(standardizer.apply(r)).collect()).collect();
        let n = z.len() as f64;
        let p = d + 1;
        let mut w = vec![0.0; p];
        for _ in 0..50 {
            let mut grad = vec![0.0; p];
            let mut hess = vec![vec![0.0; p]; p];
            for (zi, &yi) in z.iter().zip(y) {
                let m = sigmoid(zi.iter().zip(&w).map(|(a, b)| a * b).sum());
                let r = (m - yi as f64) / n;
                let s = (m * (1.0 - m)).max(1e-10) / n;
                for a in 0..p {
                    grad[a] += r * zi[a];
                    for b in 0..=a {
                        hess[a][b] += s * zi[a] * zi[b];
                    }
                }
            }
            for a in 1..p {
                grad[a] += lambda * w[a];
                hess[a][a] += lambda;
            }
            for a in 0..p {
                for b in a + 1..p {
                    hess[a][b] = hess[b][a];
                }
            }
            let step = solve_spd(hess, &grad);
            let mut max_step = 0f64;
            for (wi, si) in w.iter_mut().zip(&step) {
                *wi -= si;
                max_step = max_step.max(si.abs());
            }
            if max_step < 1e-9 {
                break;
            }
        }
        Ok(LogisticRegression { standardizer, weights: w })
    }

    /// Probability of class 1 for one row.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let z = self.standardizer.apply(row);
        sigmoid(self.weights[0] + z.iter().zip(&self.weights[1..]).map(|(a, b)| a * b).sum::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients_on_a_large_sample() {
        // y ~ Bernoulli(sigmoid(0.5 + 2 x)), x uniform on a grid: the fit
        // must recover (0.5, 2) in raw units within sampling error.
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut state = 12345u64;
        for i in 0..20000 {
            let xi = (i % 200) as f64 / 100.0 - 1.0;
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            x.push(vec![xi]);
            y.push((u < sigmoid(0.5 + 2.0 * xi)) as u8);
        }
        let m = LogisticRegression::fit(&x, &y, 0.0).unwrap();
        let slope = m.weights[1] / m.standardizer.std[0];
        let intercept = m.weights[0] - slope * m.standardizer.mean[0];
        assert!((slope - 2.0).abs() < 0.1 && (intercept - 0.5).abs() < 0.06, "{slope} {intercept}");
        assert!((m.predict(&[0.0]) - sigmoid(intercept)).abs() < 1e-9);
    }

    #[test]
    fn ragged_rows_are_an_error() {
        let e = LogisticRegression::fit(&[vec![1.0], vec![1.0, 2.0]], &[0, 1], 0.0).unwrap_err();
        assert_eq!(e, MetricError::Ragged { row: 1, got: 2, expected: 1 });
    }
}
