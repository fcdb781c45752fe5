//! Batch normalisation with fused CPU kernels (training and evaluation mode).
//!
//! candle 0.11's `BatchNorm::forward_train` is a chain of about ten tensor
//! operations (transpose and copy, mean, subtract, square, mean, divide,
//! square root, multiply, add, transpose), each allocating its output and
//! each with its own backward node; the ReLU that follows adds two more.
//! In training on the CPU that chain was about a fifth of a step of the
//! small CNN. [`BatchNorm`] does the same computation, optionally followed
//! by a ReLU, as one operation with a hand-written backward pass: one pass
//! over the input for the statistics, one for the output; in the backward,
//! one for the two per-channel sums and one for the input gradient.
//!
//! Same parameters under the same names (`weight`, `bias`, `running_mean`,
//! `running_var`, created by `candle_nn::batch_norm`), same running-statistic
//! update (momentum, unbiased variance), so checkpoints and seeds are
//! unchanged. Evaluation mode is one operation too (scale and shift from
//! the running statistics, + ReLU). Both on the CPU with `f32`; other
//! devices and `DAE_BN=candle` in the environment use candle's operators.
//! Tested against candle's `BatchNorm` (outputs, running statistics and the
//! three gradients, in both modes) below.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, ModuleT, Result, Shape, Tensor, Var};
use candle_nn::{BatchNormConfig, VarBuilder};
use rayon::prelude::*;

use crate::conv::contiguous_f32;
use crate::{lanes, par};

/// Per-channel statistics of one training batch, kept by the forward
/// operation for its backward pass and for the running statistics.
#[derive(Clone, Debug, Default)]
struct Stats {
    mean: Vec<f32>,
    /// Biased variance (the one used to normalise).
    var: Vec<f32>,
    inv_std: Vec<f32>,
    /// Elements per channel (batch x spatial).
    n: usize,
}

/// `x * scale + shift` per channel of a `[B, C, hw]` buffer, with
/// `scale = gamma / std` and `shift = beta - mean * scale`, then a ReLU
/// where `relu` is set: the forward pass of both modes.
#[allow(clippy::too_many_arguments)]
fn scale_shift(x: &[f32], c: usize, hw: usize, gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f32], relu: bool) -> Vec<f32> {
    // SAFETY: each chunk is at most `hw` long, `xs` exactly `hw` (or the
    // slice panics), so the zip writes every element of the chunk.
    unsafe {
        par::written(x.len(), hw, |bc, o| {
            let (ch, xs) = (bc % c, &x[bc * hw..(bc + 1) * hw]);
            let scale = gamma[ch] * inv_std[ch];
            let shift = beta[ch] - mean[ch] * scale;
            if relu {
                o.iter_mut().zip(xs).for_each(|(o, &v)| _ = o.write((v * scale + shift).max(0.0)));
            } else {
                o.iter_mut().zip(xs).for_each(|(o, &v)| _ = o.write(v * scale + shift));
            }
        })
    }
}

/// `(batch, channels, spatial)` of a `[B, C, ...]` layout.
fn bcs(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm: input of rank {} (need [B, C, ...])", d.len());
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// The three f32 inputs of a batch-norm op as slices (each must be
/// contiguous), and `(batch, channels, spatial)` of the first.
#[allow(clippy::type_complexity)]
fn three_inputs<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
    op: &str,
) -> Result<([&'a [f32]; 3], (usize, usize, usize))> {
    Ok(([contiguous_f32(s1, l1, op)?, contiguous_f32(s2, l2, op)?, contiguous_f32(s3, l3, op)?], bcs(l1)?))
}

/// `sum(f(v))` over `xs` with eight f32 accumulators (so that it vectorises).
#[inline]
fn lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 8];
    let mut it = xs.chunks_exact(8);
    for ch in &mut it {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    let rest: f32 = it.remainder().iter().map(|&v| f(v)).sum();
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest as f64
}

/// Training-mode batch norm (+ ReLU) of `x` `[B, C, ...]` with `gamma`, `beta` `[C]`.
struct BnTrain {
    eps: f64,
    relu: bool,
    stats: Arc<Mutex<Stats>>,
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ([x, gamma, beta], (b, c, hw)) = three_inputs((s1, l1), (s2, l2), (s3, l3), "batch norm")?;
        let n = b * hw;
        // Two passes per channel (mean, then centred squares); 8-lane f32
        // sums within an image, f64 across images.
        let mv: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let chunk = |bi: usize| &x[(bi * c + ch) * hw..(bi * c + ch + 1) * hw];
                let sum: f64 = (0..b).map(|bi| lanes(chunk(bi), |v| v)).sum();
                let mean = (sum / n as f64) as f32;
                let sq: f64 = (0..b).map(|bi| lanes(chunk(bi), |v| (v - mean) * (v - mean))).sum();
                (mean, (sq / n as f64) as f32)
            })
            .collect();
        let mean: Vec<f32> = mv.iter().map(|m| m.0).collect();
        let var: Vec<f32> = mv.iter().map(|m| m.1).collect();
        let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32).collect();
        let out = scale_shift(x, c, hw, gamma, beta, &mean, &inv_std, self.relu);
        *self.stats.lock().expect("batch-norm statistics") = Stats { mean, var, inv_std, n };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.lock().expect("batch-norm statistics").clone();
        let sums = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let op = BnTrainBackward { relu: self.relu, gamma: gamma.to_vec1::<f32>()?, stats, sums: sums.clone() };
        let dx = x.contiguous()?.apply_op3_no_bwd(&res.contiguous()?, &grad.contiguous()?, &op)?;
        let (dgamma, dbeta) = sums.lock().expect("batch-norm sums").clone();
        let c = dgamma.len();
        let dev = x.device();
        Ok((Some(dx), Some(Tensor::from_vec(dgamma, c, dev)?), Some(Tensor::from_vec(dbeta, c, dev)?)))
    }
}

/// The input gradient of [`BnTrain`] from `(x, output, output gradient)`;
/// the gradients of gamma and beta are left in `sums`.
struct BnTrainBackward {
    relu: bool,
    gamma: Vec<f32>,
    stats: Stats,
    sums: Arc<Mutex<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp3 for BnTrainBackward {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = "batch-norm backward";
        let ([x, y, g], (b, c, hw)) = three_inputs((s1, l1), (s2, l2), (s3, l3), name)?;
        let st = &self.stats;
        if st.mean.len() != c || y.len() != x.len() || g.len() != x.len() {
            candle_core::bail!("{name}: shapes do not match the forward pass");
        }
        // Per channel: sum of g (d beta) and of g * x_hat (d gamma), where g
        // is the upstream gradient through the ReLU (zero where the output was clipped).
        let relu = self.relu;
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let m = st.mean[ch];
                let (mut sg, mut sgx) = (0f64, 0f64);
                for bi in 0..b {
                    let r = (bi * c + ch) * hw..(bi * c + ch + 1) * hw;
                    let (a, bb) = lanes::grad_sums(&x[r.clone()], &y[r.clone()], &g[r], m, relu);
                    sg += a;
                    sgx += bb;
                }
                ((sgx * st.inv_std[ch] as f64) as f32, sg as f32)
            })
            .collect();
        let n = st.n as f32;
        // SAFETY: `lanes::input_grad` writes every element of `d` (one
        // channel of one image, as long as its inputs, or it panics).
        let dx = unsafe {
            par::written(x.len(), hw, |bc, d| {
                let ch = bc % c;
                let (m, is, (sgx, sg)) = (st.mean[ch], st.inv_std[ch], sums[ch]);
                let k = self.gamma[ch] * is;
                // dx = k * (g - sg / n - x_hat * sgx / n), x_hat = (x - m) * is
                let (c1, c2) = (sg / n, is * sgx / n);
                let r = bc * hw..(bc + 1) * hw;
                lanes::input_grad(d, &x[r.clone()], &y[r.clone()], &g[r], m, k, (c1, c2), relu);
            })
        };
        *self.sums.lock().expect("batch-norm sums") = (sums.iter().map(|s| s.0).collect(), sums.iter().map(|s| s.1).collect());
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Evaluation-mode batch norm (+ ReLU) of `x` `[B, C, ...]` with the
/// running statistics (as `mean` and `1 / sqrt(var + eps)` per channel),
/// `gamma`, `beta` `[C]`. Its backward (used where a method differentiates
/// through the network in evaluation mode: Li et al.'s neighbours, ICADx's
/// fixed judge) is a few tensor operations.
struct BnEval {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    relu: bool,
}

impl CustomOp3 for BnEval {
    fn name(&self) -> &'static str {
        "batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ([x, gamma, beta], (_, c, hw)) = three_inputs((s1, l1), (s2, l2), (s3, l3), "batch norm")?;
        if self.mean.len() != c || gamma.len() != c || beta.len() != c {
            candle_core::bail!("batch norm: {c} channels, {} statistics", self.mean.len());
        }
        let out = scale_shift(x, c, hw, gamma, beta, &self.mean, &self.inv_std, self.relu);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = self.mean.len();
        let mut shape = vec![1usize; x.rank()];
        shape[1] = c;
        let dev = x.device();
        let per_channel = |v: &[f32]| Tensor::from_vec(v.to_vec(), shape.as_slice(), dev);
        let (mean, inv_std) = (per_channel(&self.mean)?, per_channel(&self.inv_std)?);
        let g = grad.detach();
        let g = if self.relu { (g * res.detach().gt(0f32)?.to_dtype(DType::F32)?)? } else { g };
        let dx = g.broadcast_mul(&gamma.detach().reshape(shape.as_slice())?.broadcast_mul(&inv_std)?)?;
        let xhat = x.detach().broadcast_sub(&mean)?.broadcast_mul(&inv_std)?;
        let per_c = |t: Tensor| -> Result<Tensor> { t.transpose(0, 1)?.contiguous()?.flatten_from(1)?.sum(1) };
        Ok((Some(dx), Some(per_c((&g * xhat)?)?), Some(per_c(g)?)))
    }
}

/// Whether the fused kernel may be used (`DAE_BN=candle` turns it off).
fn fused_enabled() -> bool {
    static MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| std::env::var("DAE_BN").map(|v| v != "candle").unwrap_or(true))
}

/// Batch normalisation over dimension 1 of `[B, C, ...]`, affine, with
/// running statistics; see the module documentation.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    inner: candle_nn::BatchNorm,
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// `num_features` channels; `eps` 1e-5, momentum 0.1 (PyTorch's defaults).
    pub fn new(num_features: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
        let inner = candle_nn::batch_norm(num_features, cfg, vb)?;
        let Some((w, b)) = inner.weight_and_bias() else { candle_core::bail!("batch norm without weights") };
        let (weight, bias) = (w.clone(), b.clone());
        // `Var::from_tensor` of a variable shares its storage: updates reach the
        // variables `inner` (and the VarMap) hold.
        let running_mean = Var::from_tensor(inner.running_mean())?;
        let running_var = Var::from_tensor(inner.running_var())?;
        Ok(Self { inner, running_mean, running_var, weight, bias, eps: cfg.eps, momentum: cfg.momentum })
    }

    /// Batch norm, then a ReLU where `relu` is set.
    pub fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if x.dtype() != DType::F32 {
            // A bf16 trunk ([`crate::Precision::Bf16`]): statistics and normalisation in f32.
            return self.forward(&x.to_dtype(DType::F32)?, train, relu)?.to_dtype(x.dtype());
        }
        if !(x.device().is_cpu() && fused_enabled()) {
            let y = self.inner.forward_t(x, train)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        if !train {
            let mean = self.running_mean.as_tensor().to_vec1::<f32>()?;
            let var = self.running_var.as_tensor().to_vec1::<f32>()?;
            let inv_std = var.iter().map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32).collect();
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, BnEval { mean, inv_std, relu });
        }
        let stats = Arc::new(Mutex::new(Stats::default()));
        let op = BnTrain { eps: self.eps, relu, stats: stats.clone() };
        let y = x.contiguous()?.apply_op3(&self.weight, &self.bias, op)?;
        let st = stats.lock().expect("batch-norm statistics").clone();
        let dev = x.device();
        let c = st.mean.len();
        let unbias = if st.n > 1 { st.n as f64 / (st.n as f64 - 1.0) } else { f64::INFINITY };
        let mom = self.momentum;
        let mean = Tensor::from_vec(st.mean, c, dev)?;
        let var = Tensor::from_vec(st.var, c, dev)?;
        self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - mom))? + (mean * mom)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor() * (1.0 - mom))? + (var * (mom * unbias))?)?)?;
        Ok(y)
    }
}

/// `relu(a + b)`, the join of a residual block, as one operation on the CPU
/// (candle's add and ReLU are two nodes, and the sum between them is kept
/// for the backward pass); candle's operators elsewhere or with `DAE_BN=candle`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == DType::F32 && fused_enabled() && a.dims() == b.dims() {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

/// See [`add_relu`]: both gradients are the upstream gradient where the
/// output is positive, 0 elsewhere (one tensor, shared).
#[derive(Clone, Copy, Debug)]
struct AddRelu;

impl candle_core::CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        zip_map("add-relu", (s1, l1), (s2, l2), |a, b| (a + b).max(0.0))
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op2_no_bwd(res, &ReluMask)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `(grad, out)` -> `grad` where `out > 0`, else 0.
#[derive(Clone, Copy, Debug)]
struct ReluMask;

impl candle_core::CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "relu-mask"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        zip_map("relu mask", (s1, l1), (s2, l2), |g, y| if y > 0.0 { g } else { 0.0 })
    }
}

/// `f(a_i, b_i)` over two contiguous f32 inputs of one length (the
/// element-wise ops above), in parallel.
fn zip_map(
    name: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (a, b) = (contiguous_f32(s1, l1, name)?, contiguous_f32(s2, l2, name)?);
    if a.len() != b.len() {
        candle_core::bail!("{name}: inputs of {} and {} values", a.len(), b.len());
    }
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(1 << 14).zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14))).for_each(|(o, (a, b))| {
        o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(a, b));
    });
    Ok((CpuStorage::F32(out), l1.shape().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn rand(shape: &[usize], seed: u64, scale: f64, shift: f64) -> Tensor {
        let mut r = dae_data::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| (r.normal() * scale + shift) as f32).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    }

    /// Largest absolute difference, relative to the size of `b` where that
    /// is above 1 (a channel of two elements is ill-conditioned: its input
    /// gradient is a difference of nearly equal terms in both versions).
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let max = |t: &Tensor| -> f32 { t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap() };
        max(&(a - b).unwrap()) / max(b).max(1.0)
    }

    /// Two identical layers (same non-trivial weight and bias), ours and
    /// candle's, two training steps: outputs, running statistics, and the
    /// gradients of input, weight and bias.
    fn check(shape: &[usize], relu: bool) {
        let c = shape[1];
        let make = || {
            let vm = VarMap::new();
            let bn = BatchNorm::new(c, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
            let data = vm.data().lock().unwrap();
            data["weight"].set(&rand(&[c], 10, 0.5, 1.0)).unwrap();
            data["bias"].set(&rand(&[c], 11, 0.5, 0.0)).unwrap();
            drop(data);
            (vm, bn)
        };
        let ((vm_a, ours), (vm_b, theirs)) = (make(), make());
        let what = format!("shape {shape:?} relu {relu}");
        for step in 0..2u64 {
            let x = Var::from_tensor(&rand(shape, 1 + step, 2.0, 3.0)).unwrap();
            let a = ours.forward(x.as_tensor(), true, relu).unwrap();
            let b = theirs.inner.forward_t(x.as_tensor(), true).unwrap();
            let b = if relu { b.relu().unwrap() } else { b };
            assert!(max_diff(&a, &b) < 1e-4, "output: {what}");
            let up = rand(a.dims(), 20 + step, 1.0, 0.0);
            let ga = (&a * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let da = ga.get(x.as_tensor()).unwrap();
            let db = gb.get(x.as_tensor()).unwrap();
            assert!(max_diff(da, db) < 3e-4, "input gradient: {what}: {} vs {}", da.flatten_all().unwrap(), db.flatten_all().unwrap());
            let (pa, pb) = (vm_a.data().lock().unwrap(), vm_b.data().lock().unwrap());
            for name in ["weight", "bias"] {
                let (ta, tb) = (ga.get(pa[name].as_tensor()).unwrap(), gb.get(pb[name].as_tensor()).unwrap());
                assert!(max_diff(ta, tb) < 1e-3, "{name} gradient: {what}");
            }
            for name in ["running_mean", "running_var"] {
                assert!(max_diff(pa[name].as_tensor(), pb[name].as_tensor()) < 1e-4, "{name}: {what}");
            }
        }
        // Evaluation mode, on the updated running statistics: outputs and
        // the three gradients (Li et al. differentiate through it).
        let x = Var::from_tensor(&rand(shape, 9, 2.0, 3.0)).unwrap();
        let a = ours.forward(x.as_tensor(), false, relu).unwrap();
        let b = theirs.inner.forward_t(x.as_tensor(), false).unwrap();
        let b = if relu { b.relu().unwrap() } else { b };
        assert!(max_diff(&a, &b) < 1e-4, "eval output: {what}");
        let up = rand(a.dims(), 30, 1.0, 0.0);
        let ga = (&a * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()) < 1e-4, "eval input gradient: {what}");
        let (pa, pb) = (vm_a.data().lock().unwrap(), vm_b.data().lock().unwrap());
        for name in ["weight", "bias"] {
            let (ta, tb) = (ga.get(pa[name].as_tensor()).unwrap(), gb.get(pb[name].as_tensor()).unwrap());
            assert!(max_diff(ta, tb) < 1e-3, "eval {name} gradient: {what}");
        }
    }

    #[test]
    fn a_bf16_input_is_normalised_in_f32_and_rounded_once() {
        let vm = VarMap::new();
        let bn = BatchNorm::new(3, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let x = rand(&[4, 3, 5, 5], 1, 2.0, 20.0).to_dtype(DType::BF16).unwrap();
        let flat = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for train in [true, false] {
            let y = bn.forward(&x, train, true).unwrap();
            assert_eq!(y.dtype(), DType::BF16);
            let expect = bn.forward(&x.to_dtype(DType::F32).unwrap(), train, true).unwrap().to_dtype(DType::BF16).unwrap();
            assert_eq!(flat(&y), flat(&expect), "train={train}");
        }
    }

    #[test]
    fn fused_batch_norm_matches_candle() {
        check(&[4, 3, 5, 5], true);
        check(&[4, 3, 5, 5], false);
        check(&[2, 6, 1, 1], true);
        check(&[3, 4, 2, 7], false);
        check(&[5, 2], true);
    }

    #[test]
    fn add_relu_matches_candle_in_values_and_gradients() {
        let a = Var::from_tensor(&rand(&[3, 4, 5, 7], 1, 1.0, 0.0)).unwrap();
        let b = Var::from_tensor(&rand(&[3, 4, 5, 7], 2, 1.0, 0.0)).unwrap();
        let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let theirs = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(), theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let up = rand(ours.dims(), 3, 1.0, 0.0);
        let g1 = (&ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            assert!(max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap()) < 1e-6);
        }
    }
}
