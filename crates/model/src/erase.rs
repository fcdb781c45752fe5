//! Linear erasure of the malignancy label from h_i (`model.h_i_erase`), an
//! option beyond the paper.
//!
//! The paper's three constraints give h_i no reason to lose the label (it is
//! a linear projection of the pooled features the classifier trains, read by
//! the decoder only), and on our data a linear probe reads the label from
//! h_i about as well as from [h_ma, h_mi] (ARCHITECTURE.md, "h_i and the
//! disentanglement probe"). This layer removes it by construction, with
//! LEACE for a binary concept (Belrose et al. 2023, "LEACE: Perfect linear
//! concept erasure in closed form", arXiv:2306.03819):
//!
//! `h' = h - delta (g . (h - mu))`, `g = Sigma^-1 delta / (delta^T Sigma^-1 delta)`,
//!
//! with `mu` the mean of h, `delta` the difference of the class means
//! (malignant minus benign) and `Sigma` the covariance of h (plus a small
//! ridge), all over the data it is fitted on. Then `Cov(h', y) = 0`: the
//! classes have the same mean in h', and no linear classifier fitted on that
//! data does better than a constant. The fit is a statistic of the training
//! split, like batch norm's running statistics: the trainer refits it in
//! evaluation mode after every epoch ([`LabelEraser::fit`]); it is saved with
//! the model and applied, unchanged, to any input. Gradients pass through the
//! (fixed) map to h_i; the statistics take none.
//!
//! A linear probe fitted on the same training-split features therefore sees
//! nothing there by construction; what the erasure leaves on unseen data is
//! what the cross-validated probe on the test split measures.

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// Ridge on `Sigma`, relative to its mean variance.
pub const RIDGE: f64 = 1e-3;

/// The fitted map `h - delta (g . (h - mu))`; the identity until fitted.
#[derive(Debug)]
pub struct LabelEraser {
    mean: Var,
    delta: Var,
    dir: Var,
}

impl LabelEraser {
    /// Variables `mean`, `delta`, `dir` (each `[dim]`, zero: the identity) under `vb`.
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let get = |name: &str| -> Result<Var> { Var::from_tensor(&vb.get_with_hints(dim, name, Init::Const(0.0))?) };
        Ok(Self { mean: get("mean")?, delta: get("delta")?, dir: get("dir")? })
    }

    /// `h` (`[B, dim]`) with the label direction erased.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let d = self.mean.dim(0)?;
        let mean = self.mean.as_tensor().detach().reshape((1, d))?;
        let dir = self.dir.as_tensor().detach().reshape((d, 1))?;
        let delta = self.delta.as_tensor().detach().reshape((1, d))?;
        let score = h.broadcast_sub(&mean)?.matmul(&dir)?;
        h - score.matmul(&delta)?
    }

    /// Refits the map on rows `h` (before erasure) with 0/1 `labels`, and
    /// says whether it could: with one class only (or a degenerate
    /// covariance) the map becomes the identity and `false` is returned.
    pub fn fit(&self, rows: &[Vec<f32>], labels: &[u8]) -> Result<bool> {
        let d = self.mean.dim(0)?;
        if rows.len() != labels.len() || rows.iter().any(|r| r.len() != d) {
            candle_core::bail!("LabelEraser::fit: {} rows of width {d} expected with {} labels", rows.len(), labels.len());
        }
        let fitted = leace_binary(rows, labels, RIDGE);
        let ok = fitted.is_some();
        let (mu, delta, g) = fitted.unwrap_or_else(|| (vec![0.0; d], vec![0.0; d], vec![0.0; d]));
        let dev = self.mean.device();
        let t = |v: Vec<f64>| Tensor::from_vec(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>(), d, dev);
        self.mean.set(&t(mu)?)?;
        self.delta.set(&t(delta)?)?;
        self.dir.set(&t(g)?)?;
        Ok(ok)
    }
}

/// `(mu, delta, g)` of LEACE for a binary label (see the module doc), in f64;
/// `None` when a class is missing or the covariance is zero.
pub fn leace_binary(rows: &[Vec<f32>], labels: &[u8], ridge: f64) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    if rows.len() != labels.len() {
        return None;
    }
    let d = rows.first()?.len();
    let n = rows.len() as f64;
    let mut mu = vec![0.0; d];
    let mut class = [vec![0.0; d], vec![0.0; d]];
    let mut count = [0usize; 2];
    for (r, &y) in rows.iter().zip(labels) {
        let k = (y > 0) as usize;
        count[k] += 1;
        for j in 0..d {
            mu[j] += r[j] as f64;
            class[k][j] += r[j] as f64;
        }
    }
    if count[0] == 0 || count[1] == 0 {
        return None;
    }
    mu.iter_mut().for_each(|m| *m /= n);
    let delta: Vec<f64> = (0..d).map(|j| class[1][j] / count[1] as f64 - class[0][j] / count[0] as f64).collect();
    let mut cov = vec![vec![0.0; d]; d];
    for r in rows {
        let c: Vec<f64> = r.iter().zip(&mu).map(|(&v, m)| v as f64 - m).collect();
        for (row, ci) in cov.iter_mut().zip(&c) {
            for (v, cj) in row.iter_mut().zip(&c) {
                *v += ci * cj;
            }
        }
    }
    cov.iter_mut().flatten().for_each(|v| *v /= n);
    let trace: f64 = (0..d).map(|i| cov[i][i]).sum();
    if !(trace > 0.0 && trace.is_finite()) {
        return None;
    }
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] += ridge * trace / d as f64;
    }
    // Positive definite: the ridge is positive since the trace is.
    let s = dae_metrics::solve_spd(cov, &delta);
    let q: f64 = delta.iter().zip(&s).map(|(a, b)| a * b).sum();
    if !(q > 0.0) {
        return None;
    }
    Some((mu, delta, s.iter().map(|v| v / q).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn leace_direction_by_hand() {
        // Rows (0,0), (2,0) benign; (1,1), (1,3) malignant. mu = (1,1);
        // delta = (1,2) - (1,0) = (0,2). Centred rows: (-1,-1), (1,-1),
        // (0,0), (0,2); Sigma = [[2,0],[0,6]] / 4 = diag(0.5, 1.5).
        // Sigma^-1 delta = (0, 4/3); delta^T Sigma^-1 delta = 8/3; g = (0, 0.5).
        let rows = vec![vec![0f32, 0.0], vec![2.0, 0.0], vec![1.0, 1.0], vec![1.0, 3.0]];
        let (mu, delta, g) = leace_binary(&rows, &[0, 0, 1, 1], 0.0).unwrap();
        assert_eq!(mu, vec![1.0, 1.0]);
        assert_eq!(delta, vec![0.0, 2.0]);
        assert!(g[0].abs() < 1e-12 && (g[1] - 0.5).abs() < 1e-12, "{g:?}");
        // Erased: h' = h - delta * 0.5 * (h_2 - 1): second coordinate becomes 1
        // for every row, so the class means agree.
        let vm = VarMap::new();
        let e = LabelEraser::new(2, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let h = Tensor::new(&[[0f32, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 3.0]], &Device::Cpu).unwrap();
        assert_eq!(e.forward(&h).unwrap().to_vec2::<f32>().unwrap(), h.to_vec2::<f32>().unwrap(), "identity before fitting");
        assert!(e.fit(&rows, &[0, 0, 1, 1]).unwrap());
        let out = e.forward(&h).unwrap().to_vec2::<f32>().unwrap();
        let want = [[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [1.0, 1.0]];
        for (o, w) in out.iter().zip(want) {
            assert!((o[0] - w[0]).abs() < 1e-6 && (o[1] - w[1]).abs() < 1e-6, "{out:?}");
        }
        // One class only: the identity, and the fit says so.
        assert!(!e.fit(&rows[..2], &[0, 0]).unwrap());
        assert_eq!(e.forward(&h).unwrap().to_vec2::<f32>().unwrap(), h.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn erased_features_have_no_covariance_with_the_label() {
        // Correlated 4-d features whose class means differ in every
        // coordinate; after fitting, the class means of h' agree (to f32
        // rounding) and the non-label part of h is kept: rows of one class
        // keep their differences up to the rank-one correction.
        let mut rng = dae_data::rng::Rng::new(7);
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let y = (i % 3 == 0) as u8;
            let z: Vec<f64> = (0..4).map(|_| rng.normal()).collect();
            let r = vec![z[0] + y as f64, z[0] * 0.5 + z[1] + 2.0 * y as f64, z[2] - y as f64, z[1] + z[3] + 0.5 * y as f64];
            rows.push(r.iter().map(|&v| v as f32).collect::<Vec<f32>>());
            labels.push(y);
        }
        let vm = VarMap::new();
        let e = LabelEraser::new(4, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        e.fit(&rows, &labels).unwrap();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let out = e.forward(&Tensor::from_vec(flat, (400, 4), &Device::Cpu).unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let class_mean = |rows: &[Vec<f32>], k: u8| -> Vec<f64> {
            let picked: Vec<&Vec<f32>> = rows.iter().zip(&labels).filter(|(_, &y)| y == k).map(|(r, _)| r).collect();
            (0..4).map(|j| picked.iter().map(|r| r[j] as f64).sum::<f64>() / picked.len() as f64).collect()
        };
        let before: Vec<f64> = class_mean(&rows, 1).iter().zip(class_mean(&rows, 0)).map(|(a, b)| a - b).collect();
        let after: Vec<f64> = class_mean(&out, 1).iter().zip(class_mean(&out, 0)).map(|(a, b)| a - b).collect();
        assert!(before.iter().all(|d| d.abs() > 0.3), "{before:?}");
        assert!(after.iter().all(|d| d.abs() < 1e-4), "{after:?}");
        // A logistic regression fitted on the erased rows learns (almost) nothing.
        let x: Vec<Vec<f64>> = out.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect();
        let m = dae_metrics::LogisticRegression::fit(&x, &labels, 1e-2).unwrap();
        let s: Vec<f64> = x.iter().map(|r| m.predict(r)).collect();
        let (lo, hi) = s.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &p| (a.min(p), b.max(p)));
        assert!(hi - lo < 1e-3, "probe scores spread from {lo} to {hi}");
    }

    #[test]
    fn gradients_pass_through_the_eraser_but_not_into_its_statistics() {
        let vm = VarMap::new();
        let e = LabelEraser::new(2, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        e.fit(&[vec![0.0, 0.0], vec![2.0, 0.0], vec![1.0, 1.0], vec![1.0, 3.0]], &[0, 0, 1, 1]).unwrap();
        let h = Var::from_vec(vec![1f32, 2.0], (1, 2), &Device::Cpu).unwrap();
        // h' = (h1, h2 - 2 * 0.5 * (h2 - 1)) = (h1, 1): d sum(h') / dh = (1, 0).
        let grads = e.forward(h.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(h.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!((g[0][0] - 1.0).abs() < 1e-6 && g[0][1].abs() < 1e-6, "{g:?}");
        for v in vm.all_vars() {
            assert!(grads.get(v.as_tensor()).is_none());
        }
    }
}
