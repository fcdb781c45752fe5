//! Adam(W) with a state that can be saved and restored, for checkpoints.
//!
//! The update is candle-nn's `AdamW` operation for operation (same float
//! expressions in the same order, so runs are bit-identical to those made
//! with it), but the moments are keyed by variable name and exported by
//! [`Adam::save_state`]: candle-nn 0.11 keeps them private, so a run could
//! not be resumed with the optimiser's state.
//!
//! On the CPU in f32 the step is three in-place passes per variable
//! ([`MomentOp`], [`UpdateOp`]) that compute those same expressions element
//! by element, instead of fourteen tensor operations that each allocate
//! their output (about 5% of a training step of the small CNN).

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use candle_nn::{ParamsAdamW, VarMap};
use rayon::prelude::*;

/// The variables of `varmap` whose names satisfy `pick`, with their names,
/// in name order (what [`Adam::new`] takes).
pub fn named_vars(varmap: &VarMap, pick: impl Fn(&str) -> bool) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(String, Var)> = data.iter().filter(|(k, _)| pick(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// Adam with decoupled weight decay over named variables.
pub struct Adam {
    slots: Vec<Slot>,
    step_t: usize,
    params: ParamsAdamW,
    clip: Option<f64>,
}

impl Adam {
    /// An optimiser over `vars` (name, variable); moments start at zero.
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> Result<Self> {
        let slots = vars
            .into_iter()
            .filter(|(_, var)| var.dtype().is_float())
            .map(|(name, var)| {
                // Two buffers: the CPU step updates them in place.
                let m = Tensor::zeros(var.shape(), var.dtype(), var.device())?;
                let v = Tensor::zeros(var.shape(), var.dtype(), var.device())?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, step_t: 0, params, clip: None })
    }

    /// The learning rate of the next steps (the schedule sets it each epoch).
    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// Clip the gradients of each step to this global L2 norm (`None`: no clipping).
    pub fn set_clip_norm(&mut self, clip: Option<f64>) {
        self.clip = clip;
    }

    /// Back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let mut grads = loss.backward()?;
        if let Some(max) = self.clip {
            self.clip_grads(&mut grads, max)?;
        }
        self.step(&grads)
    }

    /// Scales this optimiser's gradients so their global L2 norm is at most `max`.
    fn clip_grads(&self, grads: &mut GradStore, max: f64) -> Result<()> {
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(&s.var) {
                sq += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        if norm > max && norm.is_finite() {
            let scale = max / norm;
            for s in &self.slots {
                if let Some(g) = grads.remove(&s.var) {
                    grads.insert(&s.var, (g * scale)?);
                }
            }
        }
        Ok(())
    }

    /// One step on the gradients in `grads` (variables without one are left alone).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let lr = self.params.lr;
        let lr_lambda = lr * self.params.weight_decay;
        let (beta1, beta2) = (self.params.beta1, self.params.beta2);
        let scale_m = 1f64 / (1f64 - beta1.powi(self.step_t as i32));
        let scale_v = 1f64 / (1f64 - beta2.powi(self.step_t as i32));
        for s in self.slots.iter_mut() {
            let Some(g) = grads.get(&s.var) else { continue };
            if s.var.device().is_cpu() && s.var.dtype() == candle_core::DType::F32 {
                let g = g.contiguous()?;
                s.m.inplace_op2(&g, &MomentOp { beta: beta1, square: false })?;
                s.v.inplace_op2(&g, &MomentOp { beta: beta2, square: true })?;
                let op = UpdateOp { scale_m, scale_v, decay: 1f64 - lr_lambda, eps: self.params.eps, lr };
                s.var.as_tensor().inplace_op3(&s.m, &s.v, &op)?;
                continue;
            }
            let next_m = ((&s.m * beta1)? + (g * (1.0 - beta1))?)?;
            let next_v = ((&s.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (s.var.as_tensor() * (1f64 - lr_lambda))?;
            let adjusted_grad = (m_hat / (v_hat.sqrt()? + self.params.eps)?)?;
            let next_theta = (next_theta - (adjusted_grad * lr)?)?;
            // Detached: with CANDLE_GRAD_DO_NOT_DETACH a gradient keeps its graph,
            // and a moment that held it would chain every step's graph.
            s.m = next_m.detach();
            s.v = next_v.detach();
            s.var.set(&next_theta)?;
        }
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step_t
    }

    /// Adds the moments to `out` as `{prefix}.m.{name}` and `{prefix}.v.{name}`.
    /// They share the optimiser's buffers, which the next CPU step updates
    /// in place: write them out before stepping again (the checkpoint does).
    pub fn save_state(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        for s in &self.slots {
            out.insert(format!("{prefix}.m.{}", s.name), s.m.clone());
            out.insert(format!("{prefix}.v.{}", s.name), s.v.clone());
        }
    }

    /// Restores what [`Adam::save_state`] wrote, and the step count. Every
    /// moment must be present with its variable's shape.
    pub fn load_state(&mut self, prefix: &str, tensors: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for s in self.slots.iter_mut() {
            for (which, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("{prefix}.{which}.{}", s.name);
                let t = tensors.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("no tensor `{key}`")))?;
                if t.shape() != s.var.shape() {
                    candle_core::bail!("`{key}` has shape {:?}, the variable {:?}", t.shape(), s.var.shape());
                }
                // A buffer of its own (the step updates it in place).
                *dst = t.to_device(s.var.device())?.to_dtype(s.var.dtype())?.copy()?;
            }
        }
        self.step_t = steps;
        Ok(())
    }
}

/// The f32 slices of an in-place op's destination and sources (all contiguous, one length).
fn inplace_slices<'a, const N: usize>(
    name: &str,
    (dst, dst_l): (&'a mut CpuStorage, &Layout),
    srcs: [(&'a CpuStorage, &Layout); N],
) -> Result<(&'a mut [f32], [&'a [f32]; N])> {
    let n = dst_l.shape().elem_count();
    let range = |l: &Layout| l.contiguous_offsets().filter(|(a, b)| b - a == n);
    let Some((a, b)) = range(dst_l) else { candle_core::bail!("{name}: the destination must be contiguous") };
    let mut out = [&[][..]; N];
    for (o, (s, l)) in out.iter_mut().zip(srcs) {
        let Some((sa, sb)) = range(l) else { candle_core::bail!("{name}: every source must be contiguous, of {n} values") };
        *o = &s.as_slice::<f32>()?[sa..sb];
    }
    let CpuStorage::F32(d) = dst else { candle_core::bail!("{name}: the destination must be f32") };
    Ok((&mut d[a..b], out))
}

/// Values per parallel task of the element-wise update ops (a ResNet-34
/// has 21 M parameters: its update on one thread was 4% of a step).
const PAR_CHUNK: usize = 1 << 16;

/// `m = m * beta + g * (1 - beta)` in place (`g * g` for `g` where
/// `square`): the first moment, or the second, as candle's tensor
/// operations compute them (each product `x * c + 0` in f32).
struct MomentOp {
    beta: f64,
    square: bool,
}

impl InplaceOp2 for MomentOp {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (m, [g]) = inplace_slices(self.name(), (s1, l1), [(s2, l2)])?;
        let (b, c) = (self.beta as f32, (1.0 - self.beta) as f32);
        m.par_chunks_mut(PAR_CHUNK).zip(g.par_chunks(PAR_CHUNK)).for_each(|(m, g)| {
            for (m, &g) in m.iter_mut().zip(g) {
                let g = if self.square { g * g } else { g };
                *m = (*m * b + 0.0) + (g * c + 0.0);
            }
        });
        Ok(())
    }
}

/// `theta = theta * decay - (m * scale_m) / (sqrt(v * scale_v) + eps) * lr`
/// in place, with candle's rounding of each operation (see [`MomentOp`]).
struct UpdateOp {
    scale_m: f64,
    scale_v: f64,
    decay: f64,
    eps: f64,
    lr: f64,
}

impl InplaceOp3 for UpdateOp {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<()> {
        let (theta, [m, v]) = inplace_slices(self.name(), (s1, l1), [(s2, l2), (s3, l3)])?;
        let f = |x: f64| x as f32;
        let (sm, sv, decay, eps, lr) = (f(self.scale_m), f(self.scale_v), f(self.decay), f(self.eps), f(self.lr));
        theta.par_chunks_mut(PAR_CHUNK).zip(m.par_chunks(PAR_CHUNK).zip(v.par_chunks(PAR_CHUNK))).for_each(|(theta, (m, v))| {
            for ((t, &m), &v) in theta.iter_mut().zip(m).zip(v) {
                let (m_hat, v_hat) = (m * sm + 0.0, v * sv + 0.0);
                let adjusted = m_hat / (v_hat.sqrt() * 1.0 + eps);
                *t = (*t * decay + 0.0) - (adjusted * lr + 0.0);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer};

    fn quad(x: &Var, t: &Tensor) -> Tensor {
        x.as_tensor().sub(t).unwrap().sqr().unwrap().sum_all().unwrap()
    }

    #[test]
    fn clipping_scales_the_gradients_to_the_global_norm() {
        let dev = Device::Cpu;
        let (x, y) = (Var::new(&[1.0f32, 2.0], &dev).unwrap(), Var::new(&[0.5f32], &dev).unwrap());
        let opt = Adam::new(vec![("x".into(), x.clone()), ("y".into(), y.clone())], ParamsAdamW::default()).unwrap();
        // d/dx sum(3 x) = [3, 3], d/dy 4 y = [4]: global norm sqrt(9 + 9 + 16) = sqrt(34).
        let loss = ((x.as_tensor() * 3.0).unwrap().sum_all().unwrap() + (y.as_tensor() * 4.0).unwrap().sum_all().unwrap()).unwrap();
        let mut g = loss.backward().unwrap();
        opt.clip_grads(&mut g, 1.0).unwrap();
        let s = 1.0 / 34f32.sqrt();
        let gx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let gy = g.get(y.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((gx[0] - 3.0 * s).abs() < 1e-6 && (gx[1] - 3.0 * s).abs() < 1e-6 && (gy[0] - 4.0 * s).abs() < 1e-6, "{gx:?} {gy:?}");
        // Below the norm: untouched.
        let mut g = loss.backward().unwrap();
        opt.clip_grads(&mut g, 10.0).unwrap();
        assert_eq!(g.get(y.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), [4.0]);
    }

    /// The same trajectory as candle-nn's AdamW, bit for bit, and a restored
    /// optimiser continues exactly where the saved one was.
    #[test]
    fn matches_candle_adamw_and_resumes_exactly() {
        let dev = Device::Cpu;
        let p = ParamsAdamW { lr: 0.05, weight_decay: 0.01, ..Default::default() };
        let init = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let target = Tensor::new(&[0.3f32, 0.1, -0.7], &dev).unwrap();
        let (a, b) = (Var::from_tensor(&init).unwrap(), Var::from_tensor(&init).unwrap());
        let mut ours = Adam::new(vec![("x".into(), a.clone())], p.clone()).unwrap();
        let mut theirs = AdamW::new(vec![b.clone()], p.clone()).unwrap();
        for _ in 0..7 {
            ours.backward_step(&quad(&a, &target)).unwrap();
            theirs.backward_step(&quad(&b, &target)).unwrap();
        }
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());

        let mut saved = BTreeMap::new();
        ours.save_state("opt", &mut saved);
        assert_eq!(saved.keys().collect::<Vec<_>>(), ["opt.m.x", "opt.v.x"]);
        let c = Var::from_tensor(&a.as_tensor().copy().unwrap()).unwrap();
        let mut resumed = Adam::new(vec![("x".into(), c.clone())], p).unwrap();
        resumed.load_state("opt", &saved.into_iter().collect(), ours.steps()).unwrap();
        for _ in 0..5 {
            ours.backward_step(&quad(&a, &target)).unwrap();
            resumed.backward_step(&quad(&c, &target)).unwrap();
        }
        assert_eq!(a.to_vec1::<f32>().unwrap(), c.to_vec1::<f32>().unwrap());
        // A state that lacks a moment is refused.
        let e = resumed.load_state("other", &HashMap::new(), 3).unwrap_err();
        assert!(e.to_string().contains("other.m.x"), "{e}");
    }

    /// A variable of more than two [`PAR_CHUNK`]s (a partial last one):
    /// the parallel update gives candle's values bit for bit.
    #[test]
    fn matches_candle_adamw_across_parallel_chunks() {
        let dev = Device::Cpu;
        let n = 2 * PAR_CHUNK + 1234;
        let wave = |k: f32| Tensor::from_vec((0..n).map(|i| (i as f32 * k).sin()).collect::<Vec<_>>(), n, &dev).unwrap();
        let (init, target) = (wave(0.37), wave(0.11));
        let (a, b) = (Var::from_tensor(&init).unwrap(), Var::from_tensor(&init).unwrap());
        let p = ParamsAdamW { lr: 0.01, weight_decay: 0.01, ..Default::default() };
        let mut ours = Adam::new(vec![("x".into(), a.clone())], p.clone()).unwrap();
        let mut theirs = AdamW::new(vec![b.clone()], p).unwrap();
        for _ in 0..3 {
            ours.backward_step(&quad(&a, &target)).unwrap();
            theirs.backward_step(&quad(&b, &target)).unwrap();
        }
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    }
}
