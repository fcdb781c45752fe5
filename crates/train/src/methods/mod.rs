//! One training step per batch for each method: which losses, which
//! optimisers, how many updates. Each method is one type behind the
//! [`Method`] trait, in its own file; the networks are in `dae-model`.
//!
//! | method | file | updates per batch |
//! |---|---|---|
//! | `dae-gcn` | [`dae_gcn`] | one Adam step on w_cls L_cls + w_attr L_attr + w_rec L_rec |
//! | `guided-vae` | [`guided_vae`] | (1) encoder, decoder, classifier on the summed L1 reconstruction + KL + excitation BCE; (2) the adversary on detached z_rst; (3) the encoder so the adversary answers 0.5 (inhibition) |
//! | `icadx` | [`icadx`] | (1) the diagnosis network on real/fake BCE + label and attribute cross-entropies of real patches; (2) the generator on fooling real/fake + the heads' cross-entropies of its patches against their conditioning |
//! | `li-diagnet` | [`li_diagnet`] | one step on the BCE of the originals and both adversarial neighbours (all with the original's label) + the signed-Laplacian regulariser over them |
//!
//! Each optimiser is its own Adam (learning rate and weight decay from
//! `[optim]`; the official Guided-VAE code uses Adam at 1e-4 for all three).
//! Random draws (VAE noise, GAN noise) come from the [`Trainer`]'s stream,
//! seeded by the job, so a seed fixes a CPU run.

pub mod dae_gcn;
pub mod guided_vae;
pub mod icadx;
pub mod li_diagnet;

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor};
use candle_nn::{ParamsAdamW, VarBuilder, VarMap};
use dae_data::batch::Batch;
use dae_data::rng::{derive_seed, Rng};
use dae_model::{MethodSpec, Network};

use crate::adam::{named_vars, Adam};
use crate::data::RunData;
use crate::job::Job;
use crate::RunError;

/// The loss terms of one step (or their means over an epoch), for
/// `history.csv`. `cls`, `attr` and `rec` are the unweighted terms of the
/// main step (0 where the method has none); `extra` follows
/// [`Method::extra_columns`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLosses {
    pub total: f64,
    pub cls: f64,
    pub attr: f64,
    pub rec: f64,
    pub extra: Vec<f64>,
}

impl StepLosses {
    /// Adds another step's terms.
    pub fn add(&mut self, o: &StepLosses) {
        for (s, v) in [(&mut self.total, o.total), (&mut self.cls, o.cls), (&mut self.attr, o.attr), (&mut self.rec, o.rec)] {
            *s += v;
        }
        self.extra.resize(o.extra.len().max(self.extra.len()), 0.0);
        for (s, v) in self.extra.iter_mut().zip(&o.extra) {
            *s += v;
        }
    }

    /// Every term divided by `n`.
    pub fn mean(&self, n: usize) -> StepLosses {
        let n = n.max(1) as f64;
        StepLosses {
            total: self.total / n,
            cls: self.cls / n,
            attr: self.attr / n,
            rec: self.rec / n,
            extra: self.extra.iter().map(|v| v / n).collect(),
        }
    }
}

/// A step either ran, or found a loss that is not finite and changed nothing.
#[derive(Debug)]
pub enum Step {
    Done(StepLosses),
    NonFinite { term: &'static str, value: f32 },
}

/// A method's training: its network, its optimisers and its step.
pub trait Method {
    /// The network, as evaluation sees it.
    fn network(&self) -> &dyn Network;
    /// One training step on a batch (the network in training mode); noise
    /// is drawn from `rng`.
    fn step(&mut self, b: &Batch, rng: &mut Rng) -> candle_core::Result<Step>;
    /// The optimisers by name, in a fixed order.
    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)>;
    /// The method's own `history.csv` columns, after the common ones.
    fn extra_columns(&self) -> &'static [&'static str] {
        &[]
    }
    /// Work after each epoch's training steps, before validation.
    fn after_epoch(&self, _data: &RunData) -> Result<(), RunError> {
        Ok(())
    }
}

/// What a checkpoint keeps of a [`Trainer`] besides the tensors.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// The random stream (VAE and GAN noise).
    pub rng: [u64; 4],
    /// Steps taken by each optimiser.
    pub steps: BTreeMap<String, usize>,
}

/// A method with the random stream its steps draw from.
pub struct Trainer {
    method: Box<dyn Method>,
    rng: Rng,
}

impl Trainer {
    /// Builds the job's method (network and optimisers) on `varmap`, then
    /// initialises every weight from the job's seed.
    pub fn new(job: &Job, data: &RunData, varmap: &VarMap) -> Result<Trainer, RunError> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &data.dev);
        let adam = ParamsAdamW { lr: job.optim.lr, weight_decay: job.optim.weight_decay, ..Default::default() };
        let ctx = Build { job, data, varmap, adam };
        let method: Box<dyn Method> = match &job.method {
            MethodSpec::DaeGcn => Box::new(dae_gcn::DaeGcnMethod::new(&ctx, vb)?),
            MethodSpec::GuidedVae(g) => Box::new(guided_vae::GuidedVaeMethod::new(&ctx, g, vb)?),
            MethodSpec::Icadx(c) => Box::new(icadx::IcadxMethod::new(&ctx, c, vb)?),
            MethodSpec::LiDiagnet(c) => Box::new(li_diagnet::LiDiagnetMethod::new(&ctx, c, vb)?),
        };
        dae_model::init_weights(varmap, job.seed)?;
        Ok(Trainer { method, rng: Rng::new(derive_seed(job.seed, 0x6e6f_6973_65)) })
    }

    pub fn network(&self) -> &dyn Network {
        self.method.network()
    }

    pub fn step(&mut self, b: &Batch) -> candle_core::Result<Step> {
        self.method.step(b, &mut self.rng)
    }

    pub fn extra_columns(&self) -> &'static [&'static str] {
        self.method.extra_columns()
    }

    pub fn after_epoch(&self, data: &RunData) -> Result<(), RunError> {
        self.method.after_epoch(data)
    }

    /// Every optimiser's learning rate for the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        for (_, opt) in self.method.optimisers() {
            opt.set_lr(lr);
        }
    }

    /// The state a resumed run needs besides the network's variables: each
    /// optimiser's moments (added to `tensors` under `optim.<optimiser>.`)
    /// and step count, and the random stream.
    pub fn save_state(&mut self, tensors: &mut BTreeMap<String, Tensor>) -> TrainerState {
        let mut steps = BTreeMap::new();
        for (name, opt) in self.method.optimisers() {
            opt.save_state(&format!("optim.{name}"), tensors);
            steps.insert(name.to_string(), opt.steps());
        }
        TrainerState { rng: self.rng.state(), steps }
    }

    /// Restores what [`Trainer::save_state`] saved.
    pub fn load_state(&mut self, state: &TrainerState, tensors: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, opt) in self.method.optimisers() {
            let steps = *state.steps.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no step count for optimiser `{name}`")))?;
            opt.load_state(&format!("optim.{name}"), tensors, steps)?;
        }
        self.rng = Rng::from_state(state.rng);
        Ok(())
    }
}

/// What every method's constructor reads.
pub struct Build<'a> {
    pub job: &'a Job,
    pub data: &'a RunData,
    pub varmap: &'a VarMap,
    pub adam: ParamsAdamW,
}

impl Build<'_> {
    /// An Adam optimiser over the variables whose names satisfy `pick`
    /// (with the job's gradient clipping).
    pub fn adam(&self, pick: impl Fn(&str) -> bool) -> candle_core::Result<Adam> {
        let mut a = Adam::new(named_vars(self.varmap, pick), self.adam.clone())?;
        let clip = self.job.optim.clip_norm;
        a.set_clip_norm((clip > 0.0).then_some(clip));
        Ok(a)
    }
}

fn scalar(t: &Tensor) -> candle_core::Result<f32> {
    t.to_scalar::<f32>()
}

/// Returns early with [`Step::NonFinite`] when a loss is NaN or infinite.
macro_rules! finite {
    ($term:expr, $t:expr) => {{
        let v = $crate::methods::scalar(&$t)?;
        if !v.is_finite() {
            return Ok($crate::methods::Step::NonFinite { term: $term, value: v });
        }
        v
    }};
}
pub(crate) use finite;

/// Standard normal noise `[rows, cols]` from `rng`.
fn normal(rng: &mut Rng, rows: usize, cols: usize, like: &Tensor) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, (rows, cols), like.device())
}

/// Fraction of logits on the side of their 0/1 label.
fn accuracy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<f64> {
    let z = logits.to_vec1::<f32>()?;
    let y = labels.to_vec1::<f32>()?;
    Ok(z.iter().zip(&y).filter(|(z, y)| (**z > 0.0) == (**y > 0.5)).count() as f64 / z.len().max(1) as f64)
}
