//! `dae-losses`: the loss terms of DAE-GCN, as free functions on candle
//! tensors. Each doc comment gives shapes and dtypes; each is tested against
//! values worked by hand (the computation is in a comment beside the test).
//!
//! - [`l1_reconstruction`]: L_rec = mean |x - x_hat|.
//! - [`bce_with_logits`]: L_cls, the numerically stable form
//!   `max(z, 0) - z y + log(1 + exp(-|z|))` (candle's own takes a sigmoid
//!   then a log and can give NaN).
//! - [`cluster_softmax_ce`]: L_gcn and the multi-task loss: a softmax over
//!   each attribute cluster (shape, margin), cross-entropy against the
//!   multi-hot target spread uniformly over the true attributes of the
//!   cluster; a sample with no true attribute in a cluster contributes
//!   nothing for it; summed over clusters, averaged over the batch.
//! - [`gaussian_kl`]: Guided-VAE's KL(N(mu, sigma^2) || N(0, I)), summed
//!   over latent dimensions, averaged over the batch.
//! - [`signed_laplacian`]: Li et al.'s regulariser on a signed graph
//!   (+ within a class, - across classes) over L2-normalised features.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let z = Tensor::new(&[0f32, 2.0], &Device::Cpu).unwrap();
//! let y = Tensor::new(&[1f32, 0.0], &Device::Cpu).unwrap();
//! let l = dae_losses::bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
//! assert!((l - 1.410_038).abs() < 1e-5); // (ln 2 + (2 + ln(1 + e^-2))) / 2
//! ```
//!
//! This crate knows candle and nothing else of the workspace.

use std::ops::Range;

use candle_core::{DType, Result, Tensor, D};

/// Mean absolute error between `x` and `x_hat` (same shape, f32). Returns a scalar.
pub fn l1_reconstruction(x: &Tensor, x_hat: &Tensor) -> Result<Tensor> {
    (x - x_hat)?.abs()?.mean_all()
}

/// Binary cross-entropy with logits, averaged. `logits` and `targets`: `[B]`
/// f32, targets in {0, 1} (or soft labels in [0, 1]). Returns a scalar.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - (logits * targets)?)? + softplus_neg_abs)?.mean_all()
}

/// Per-cluster softmax cross-entropy with multi-hot targets.
///
/// `scores`: `[B, A]` f32 attribute scores; `targets`: `[B, A]` multi-hot
/// f32; `clusters`: the column range of each cluster (contiguous, covering
/// any subset of the columns). Returns a scalar: the sum over clusters of
/// `-sum_i t_i log softmax(s)_i` with `t` the sample's true attributes in
/// the cluster normalised to sum 1, averaged over the `B` samples (samples
/// with no true attribute in a cluster add 0 for it).
pub fn cluster_softmax_ce(scores: &Tensor, targets: &Tensor, clusters: &[Range<usize>]) -> Result<Tensor> {
    let b = scores.dim(0)?;
    let mut total = Tensor::zeros((), DType::F32, scores.device())?;
    for r in clusters {
        let s = scores.narrow(1, r.start, r.len())?;
        let t = targets.narrow(1, r.start, r.len())?;
        let logp = candle_nn_log_softmax(&s)?;
        let count = t.sum_keepdim(1)?; // [B, 1]
                                       // Spread the target uniformly; rows with no true attribute stay zero.
        let t_norm = t.broadcast_div(&count.maximum(1.0)?)?;
        let ce = (t_norm * logp)?.sum_all()?.neg()?;
        total = (total + ce)?;
    }
    total / b as f64
}

/// KL divergence of the diagonal Gaussian `N(mu, exp(logvar))` from
/// `N(0, I)`: `0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)` per
/// sample, averaged over the batch. `mu`, `logvar`: `[B, L]` f32. Returns a scalar.
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let b = mu.dim(0)?;
    let per = ((mu.sqr()? + logvar.exp()?)? - logvar)? - 1.0;
    (per?.sum_all()? * (0.5 / b as f64))?.contiguous()
}

/// The signed-graph Laplacian regulariser of Li et al. (MICCAI 2019) on a
/// batch of features `h` `[N, d]` with node classes `classes` (length N).
///
/// Rows are L2-normalised to `u_i`; with `D_ij = |u_i - u_j|^2 = 2 - 2 u_i.u_j`
/// and the signed weights `w_ij = +1 / n_same` for pairs of one class and
/// `-1 / n_cross` for pairs of two classes (counted over `i < j`), the value
/// is `sum_{i<j} w_ij D_ij`: the mean same-class squared distance minus the
/// mean cross-class one, in [-4, 4]. Minimising it pulls each class
/// together and pushes the classes apart (`sum w_ij D_ij = 2 tr(U^T L U)`
/// with `L` the signed Laplacian of `w`). Returns a scalar; a batch without
/// same-class (or cross-class) pairs leaves that term out.
pub fn signed_laplacian(h: &Tensor, classes: &[u8]) -> Result<Tensor> {
    let n = h.dim(0)?;
    if classes.len() != n {
        candle_core::bail!("signed_laplacian: {} classes for {n} rows", classes.len());
    }
    let norm = h.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-8)?;
    let u = h.broadcast_div(&norm)?;
    let gram = u.matmul(&u.t()?)?;
    let dist = ((gram * -2.0)? + 2.0)?;
    let (mut same, mut cross) = (0usize, 0usize);
    for i in 0..n {
        for j in i + 1..n {
            if classes[i] == classes[j] {
                same += 1;
            } else {
                cross += 1;
            }
        }
    }
    let mut w = vec![0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            w[i * n + j] = if classes[i] == classes[j] { 1.0 / same as f32 } else { -1.0 / cross as f32 };
        }
    }
    let w = Tensor::from_vec(w, (n, n), h.device())?;
    (dist * w)?.sum_all()
}

/// Log-softmax over the last dimension, in the max-subtracted stable form.
fn candle_nn_log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }
    fn t2(v: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (v.len(), 3), &Device::Cpu).unwrap()
    }
    fn scalar(x: Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn l1_is_the_mean_absolute_difference() {
        // |1-0| + |2-4| + |3-3| + |-1-1| = 1 + 2 + 0 + 2 = 5; / 4 = 1.25
        assert!((scalar(l1_reconstruction(&t(&[1., 2., 3., -1.]), &t(&[0., 4., 3., 1.])).unwrap()) - 1.25).abs() < 1e-6);
    }

    #[test]
    fn bce_with_logits_matches_hand_values_and_stays_finite_for_huge_logits() {
        // z = 0, y = 1: ln 2 = 0.693147; z = 2, y = 0: 2 + ln(1 + e^-2) = 2.126928;
        // z = -3, y = 1: 0 + 3 + ln(1 + e^-3) = 3.048587. Mean = 1.956221.
        // PyTorch: F.binary_cross_entropy_with_logits(tensor([0., 2., -3.]), tensor([1., 0., 1.]))
        let l = scalar(bce_with_logits(&t(&[0., 2., -3.]), &t(&[1., 0., 1.])).unwrap());
        assert!((l - 1.956_221).abs() < 1e-5, "{l}");
        // z = 1000, y = 0 -> 1000; z = -1000, y = 0 -> 0 (no NaN, no inf).
        let l = scalar(bce_with_logits(&t(&[1000., -1000.]), &t(&[0., 0.])).unwrap());
        assert!((l - 500.0).abs() < 1e-3, "{l}");
    }

    #[test]
    fn cluster_ce_spreads_multi_hot_targets_and_ignores_empty_clusters() {
        // Two clusters: columns 0..2 and 2..3 (a one-attribute cluster).
        // Sample 1: scores [0, ln 3 | 5], target [1, 1 | 0]:
        //   softmax over [0, ln3] = [1/4, 3/4]; CE = -(0.5 ln(1/4) + 0.5 ln(3/4)) = 0.836988;
        //   second cluster has no true attribute -> 0.
        // Sample 2: scores [2, 0 | 1], target [0, 1 | 1]:
        //   softmax [e^2, 1]/(e^2+1): CE = -ln(1/(e^2+1)) = ln(1 + e^2) = 2.126928;
        //   one-column cluster: log softmax = 0 -> 0.
        // Sum = 2.963916; / 2 samples = 1.481958.
        let s = t2(&[[0., 3f32.ln(), 5.], [2., 0., 1.]]);
        let y = t2(&[[1., 1., 0.], [0., 1., 1.]]);
        let l = scalar(cluster_softmax_ce(&s, &y, &[0..2, 2..3]).unwrap());
        assert!((l - 1.481_958).abs() < 1e-5, "{l}");
    }

    #[test]
    fn gaussian_kl_matches_hand_values() {
        // Sample 1: mu = [0, 1], logvar = [0, ln 2]:
        //   0.5 * ((0 + 1 - 1 - 0) + (1 + 2 - 1 - ln 2)) = 0.5 * (2 - 0.693147) = 0.653426.
        // Sample 2: mu = [0, 0], logvar = [0, 0]: 0 (the prior itself).
        // Mean over the batch: 0.326713.
        let mu = Tensor::from_vec(vec![0f32, 1., 0., 0.], (2, 2), &Device::Cpu).unwrap();
        let lv = Tensor::from_vec(vec![0f32, 2f32.ln(), 0., 0.], (2, 2), &Device::Cpu).unwrap();
        let l = scalar(gaussian_kl(&mu, &lv).unwrap());
        assert!((l - 0.326_713).abs() < 1e-5, "{l}");
    }

    #[test]
    fn signed_laplacian_is_mean_same_minus_mean_cross_distance_of_unit_features() {
        // u1 = (1, 0) and u2 = (0, 1) of class 0 (h1 = (2, 0) is normalised
        // to u1), u3 = (-1, 0) of class 1. Squared distances: D12 = 2,
        // D13 = 4, D23 = 2. Same-class mean 2, cross-class mean (4 + 2) / 2 = 3:
        // value 2 - 3 = -1.
        let h = Tensor::from_vec(vec![2f32, 0., 0., 1., -1., 0.], (3, 2), &Device::Cpu).unwrap();
        let l = scalar(signed_laplacian(&h, &[0, 0, 1]).unwrap());
        assert!((l + 1.0).abs() < 1e-5, "{l}");
        // One class only: the mean same-class distance, (2 + 4 + 2) / 3.
        let l = scalar(signed_laplacian(&h, &[1, 1, 1]).unwrap());
        assert!((l - 8.0 / 3.0).abs() < 1e-5, "{l}");
        assert!(signed_laplacian(&h, &[0, 1]).is_err());
    }

    #[test]
    fn cluster_ce_gradient_points_towards_the_true_attribute() {
        use candle_core::Var;
        let s = Var::from_tensor(&t2(&[[0., 0., 0.]])).unwrap();
        let y = t2(&[[0., 1., 0.]]);
        let l = cluster_softmax_ce(s.as_tensor(), &y, &[0..3]).unwrap();
        let g = l.backward().unwrap();
        let grad: Vec<f32> = g.get(&s).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // d/ds_i = softmax_i - t_i = [1/3, 1/3 - 1, 1/3]
        assert!((grad[0] - 1.0 / 3.0).abs() < 1e-6 && (grad[1] + 2.0 / 3.0).abs() < 1e-6);
    }
}
