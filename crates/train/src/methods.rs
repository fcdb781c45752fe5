//! One training step per batch for each method: which losses, which
//! optimisers, how many updates. The networks are in `dae-model`.
//!
//! | method | updates per batch |
//! |---|---|
//! | `dae-gcn` | one Adam step on w_cls L_cls + w_attr L_attr + w_rec L_rec |
//! | `guided-vae` | (1) encoder, decoder, classifier on the summed L1 reconstruction + KL + excitation BCE; (2) the adversary on detached z_rst; (3) the encoder so the adversary answers 0.5 (inhibition) |
//! | `icadx` | (1) the diagnosis network on real/fake BCE + label and attribute cross-entropies of real patches; (2) the generator on fooling real/fake + the heads' cross-entropies of its patches against their conditioning |
//! | `li-diagnet` | one step on the BCE of the originals and both adversarial neighbours (all with the original's label) + the signed-Laplacian regulariser over them |
//!
//! Each optimiser is its own Adam (learning rate and weight decay from
//! `[optim]`; the official Guided-VAE code uses Adam at 1e-4 for all three).
//! Random draws (VAE noise, GAN noise) come from the job's seed, so a seed
//! fixes a CPU run.

use std::ops::Range;

use candle_core::{DType, Tensor, Var};
use candle_nn::{ParamsAdamW, VarMap};
use dae_data::batch::Batch;
use dae_data::rng::{derive_seed, Rng};
use dae_losses::{bce_with_logits, cluster_softmax_ce, gaussian_kl, l1_reconstruction, signed_laplacian};
use dae_model::{GuidedVae, GuidedVaeConfig, Icadx, IcadxConfig, LiDiagnetConfig, Network};

use crate::adam::{named_vars, Adam};
use crate::config::{JobConfig, LossWeights};

/// The loss terms of one step, for `history.csv`. `cls`, `attr` and `rec`
/// are the unweighted terms of the main step (0 where the method has none);
/// `extra` follows [`Trainer::extra_columns`].
#[derive(Clone, Debug, Default)]
pub struct StepLosses {
    pub total: f64,
    pub cls: f64,
    pub attr: f64,
    pub rec: f64,
    pub extra: Vec<f64>,
}

/// A step either ran, or found a loss that is not finite and changed nothing.
#[derive(Debug)]
pub enum Step {
    Done(StepLosses),
    NonFinite { term: &'static str, value: f32 },
}

enum Kind {
    DaeGcn { opt: Adam },
    GuidedVae { cfg: GuidedVaeConfig, vae: Adam, adversary: Adam, encoder: Adam },
    Icadx { cfg: IcadxConfig, diagnosis: Adam, generator: Adam, running_stats: Vec<Var> },
    LiDiagnet { cfg: LiDiagnetConfig, opt: Adam },
}

/// What [`Trainer::save_state`] keeps outside the tensors.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// The random stream (VAE and GAN noise).
    pub rng: [u64; 4],
    /// Steps taken by each optimiser.
    pub steps: std::collections::BTreeMap<String, usize>,
}

/// Holds a method's optimisers and random stream across the batches of a run.
pub struct Trainer {
    kind: Kind,
    weights: LossWeights,
    clusters: Vec<Range<usize>>,
    rng: Rng,
}

/// The variables whose names satisfy `pick`, in name order.
fn vars(varmap: &VarMap, pick: impl Fn(&str) -> bool) -> Vec<Var> {
    named_vars(varmap, pick).into_iter().map(|(_, v)| v).collect()
}

fn scalar(t: &Tensor) -> candle_core::Result<f32> {
    t.to_scalar::<f32>()
}

/// Returns early with [`Step::NonFinite`] when a loss is NaN or infinite.
macro_rules! finite {
    ($term:expr, $t:expr) => {{
        let v = scalar(&$t)?;
        if !v.is_finite() {
            return Ok(Step::NonFinite { term: $term, value: v });
        }
        v
    }};
}

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

/// Within-class spread of L2-normalised feature rows relative to their total
/// spread: sum over rows of |u - centroid of its class|^2 over sum of
/// |u - centroid of all|^2 (0 = each class a point, 1 = no class structure).
pub fn within_class_spread(rows: &[Vec<f32>], classes: &[u8]) -> f64 {
    let unit: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let n = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(|v| *v as f64 / n).collect()
        })
        .collect();
    let d = unit.first().map_or(0, |r| r.len());
    let centroid = |pick: &dyn Fn(usize) -> bool| -> Vec<f64> {
        let mut c = vec![0.0; d];
        let mut n = 0.0;
        for (i, u) in unit.iter().enumerate().filter(|(i, _)| pick(*i)) {
            let _ = i;
            n += 1.0;
            for (a, b) in c.iter_mut().zip(u) {
                *a += b;
            }
        }
        c.iter().map(|v| v / f64::max(n, 1.0)).collect()
    };
    let all = centroid(&|_| true);
    let by: Vec<Vec<f64>> = (0..2u8).map(|k| centroid(&|i| classes[i] == k)).collect();
    let sq = |u: &[f64], c: &[f64]| u.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
    let within: f64 = unit.iter().zip(classes).map(|(u, &k)| sq(u, &by[k.min(1) as usize])).sum();
    let total: f64 = unit.iter().map(|u| sq(u, &all)).sum();
    if total > 0.0 {
        within / total
    } else {
        0.0
    }
}

impl Trainer {
    /// Builds the optimisers of `net`'s method over the variables of `varmap`.
    pub fn new(net: &Network, varmap: &VarMap, job: &JobConfig, clusters: Vec<Range<usize>>) -> candle_core::Result<Self> {
        let p = ParamsAdamW { lr: job.optim.lr, weight_decay: job.optim.weight_decay, ..Default::default() };
        let adam = |v: Vec<(String, Var)>| Adam::new(v, p.clone());
        let spec = job.method_spec();
        let kind = match (net, spec) {
            (Network::DaeGcn(_), _) => Kind::DaeGcn { opt: adam(named_vars(varmap, |_| true))? },
            (Network::GuidedVae(_), dae_model::MethodSpec::GuidedVae(cfg)) => Kind::GuidedVae {
                cfg,
                vae: adam(named_vars(varmap, |k| !k.starts_with(GuidedVae::ADVERSARY_PREFIX)))?,
                adversary: adam(named_vars(varmap, |k| k.starts_with(GuidedVae::ADVERSARY_PREFIX)))?,
                encoder: adam(named_vars(varmap, |k| GuidedVae::ENCODER_PREFIXES.iter().any(|p| k.starts_with(p))))?,
            },
            (Network::Icadx(_), dae_model::MethodSpec::Icadx(cfg)) => Kind::Icadx {
                cfg,
                diagnosis: adam(named_vars(varmap, |k| !k.starts_with(Icadx::GENERATOR_PREFIX)))?,
                generator: adam(named_vars(varmap, |k| k.starts_with(Icadx::GENERATOR_PREFIX)))?,
                running_stats: vars(varmap, |k| {
                    !k.starts_with(Icadx::GENERATOR_PREFIX) && (k.ends_with("running_mean") || k.ends_with("running_var"))
                }),
            },
            (Network::LiDiagnet(_), dae_model::MethodSpec::LiDiagnet(cfg)) => {
                Kind::LiDiagnet { cfg, opt: adam(named_vars(varmap, |_| true))? }
            }
            (n, s) => candle_core::bail!("network {:?} built for another method than {:?}", n.method(), s.method()),
        };
        Ok(Self { kind, weights: job.loss.clone(), clusters, rng: Rng::new(derive_seed(job.seed, 0x6e6f_6973_65)) })
    }

    /// The optimisers by name, in a fixed order.
    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        match &mut self.kind {
            Kind::DaeGcn { opt } | Kind::LiDiagnet { opt, .. } => vec![("opt", opt)],
            Kind::GuidedVae { vae, adversary, encoder, .. } => vec![("vae", vae), ("adversary", adversary), ("encoder", encoder)],
            Kind::Icadx { diagnosis, generator, .. } => vec![("diagnosis", diagnosis), ("generator", generator)],
        }
    }

    /// The state a resumed run needs besides the network's variables: each
    /// optimiser's moments (added to `tensors` under `optim.<optimiser>.`)
    /// and step count, and the random stream.
    pub fn save_state(&mut self, tensors: &mut std::collections::BTreeMap<String, Tensor>) -> TrainerState {
        let rng = self.rng.state();
        let mut steps = std::collections::BTreeMap::new();
        for (name, opt) in self.optimisers() {
            opt.save_state(&format!("optim.{name}"), tensors);
            steps.insert(name.to_string(), opt.steps());
        }
        TrainerState { rng, steps }
    }

    /// Restores what [`Trainer::save_state`] saved.
    pub fn load_state(&mut self, state: &TrainerState, tensors: &std::collections::HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, opt) in self.optimisers() {
            let steps = *state.steps.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no step count for optimiser `{name}`")))?;
            opt.load_state(&format!("optim.{name}"), tensors, steps)?;
        }
        self.rng = Rng::from_state(state.rng);
        Ok(())
    }

    /// The method's own `history.csv` columns, after the common ones.
    pub fn extra_columns(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::DaeGcn { .. } => &[],
            Kind::GuidedVae { .. } => &["loss_kl", "loss_excitation", "loss_adversary", "adversary_acc", "loss_inhibition"],
            Kind::Icadx { .. } => &["loss_real_fake", "loss_generator", "realness_real", "realness_fake"],
            Kind::LiDiagnet { .. } => &["loss_laplacian", "within_class_spread"],
        }
    }

    /// One training step on batch `b` (the network in training mode).
    pub fn step(&mut self, net: &Network, b: &Batch) -> candle_core::Result<Step> {
        let w = self.weights.clone();
        match (&mut self.kind, net) {
            (Kind::DaeGcn { opt }, Network::DaeGcn(m)) => {
                let o = m.forward_t(&b.images, true)?;
                let l_cls = bce_with_logits(&o.logits, &b.labels)?;
                let mut total = (&l_cls * w.cls)?;
                let mut out = StepLosses::default();
                if let Some(s) = &o.attr_scores {
                    let l = cluster_softmax_ce(s, &b.attributes, &self.clusters)?;
                    out.attr = scalar(&l)? as f64;
                    total = (total + (l * w.attr)?)?;
                }
                if let Some(r) = &o.recon {
                    let l = l1_reconstruction(&b.images, r)?;
                    out.rec = scalar(&l)? as f64;
                    total = (total + (l * w.rec)?)?;
                }
                out.total = finite!("loss", total) as f64;
                out.cls = scalar(&l_cls)? as f64;
                opt.backward_step(&total)?;
                Ok(Step::Done(out))
            }
            (Kind::GuidedVae { cfg, vae, adversary, encoder }, Network::GuidedVae(m)) => {
                let x = &b.images;
                let (bsz, _, h, wd) = x.dims4()?;
                let pixels = (h * wd) as f64;
                // (1) VAE + excitation: per-sample sums, as the official code.
                let (mu, logvar) = m.encode(x, true)?;
                let eps = normal(&mut self.rng, bsz, mu.dim(1)?, &mu)?;
                let z = (&mu + (eps.clone() * (&logvar * 0.5)?.exp()?)?)?;
                let (z_t, z_rst) = m.split(&z)?;
                let l_rec = l1_reconstruction(x, &m.decode(&z, true)?)?;
                let l_kl = gaussian_kl(&mu, &logvar)?;
                let l_exc = bce_with_logits(&m.classify(&z_t)?, &b.labels)?;
                let total = (((&l_rec * (w.rec * pixels))? + (&l_kl * cfg.kl)?)? + (&l_exc * cfg.excitation)?)?;
                let total_v = finite!("loss", total);
                vae.backward_step(&total)?;
                // (2) The adversary learns malignancy from the detached z_rst.
                let adv_logits = m.adversary(&z_rst.detach())?;
                let l_adv = bce_with_logits(&adv_logits, &b.labels)?;
                let adv_v = finite!("loss_adversary", l_adv);
                let adv_acc = accuracy(&adv_logits, &b.labels)?;
                adversary.backward_step(&l_adv)?;
                // (3) Inhibition: the encoder makes the adversary answer 0.5.
                let mut inh_v = 0f32;
                if cfg.inhibition {
                    let (mu2, logvar2) = m.encode(x, true)?;
                    let z2 = (&mu2 + (eps * (&logvar2 * 0.5)?.exp()?)?)?;
                    let half = Tensor::full(0.5f32, bsz, x.device())?;
                    let l_inh = bce_with_logits(&m.adversary(&m.split(&z2)?.1)?, &half)?;
                    inh_v = finite!("loss_inhibition", l_inh);
                    encoder.backward_step(&l_inh)?;
                }
                let exc_v = scalar(&l_exc)? as f64;
                Ok(Step::Done(StepLosses {
                    total: total_v as f64,
                    cls: exc_v,
                    attr: 0.0,
                    rec: scalar(&l_rec)? as f64,
                    extra: vec![scalar(&l_kl)? as f64, exc_v, adv_v as f64, adv_acc, inh_v as f64],
                }))
            }
            (Kind::Icadx { cfg, diagnosis, generator, running_stats }, Network::Icadx(m)) => {
                let x = &b.images;
                let bsz = x.dim(0)?;
                let noise = normal(&mut self.rng, bsz, m.noise_dim(), x)?;
                let fake = m.generate(&b.labels, &b.attributes, &noise, true)?;
                let ones = Tensor::ones(bsz, DType::F32, x.device())?;
                let zeros = Tensor::zeros(bsz, DType::F32, x.device())?;
                // Real and generated patches go through the diagnosis network
                // in training mode, each batch on its own (DCGAN-style: a
                // batch of one kind, batch statistics for both). The
                // batch-norm running statistics, which test time uses, are
                // put back after each generated batch, so they come from real
                // patches only. (Judging generated patches in evaluation mode
                // let the real/fake head read the batch-norm mode; one mixed
                // [real; generated] batch normalised real patches by the
                // generator's statistics: either way the malignancy head
                // stopped learning.)
                let judge_fake = |img: &Tensor| -> candle_core::Result<dae_model::DiagnosisHeads> {
                    let saved: Vec<Tensor> = running_stats.iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?;
                    let heads = m.diagnose(img, true)?;
                    for (v, t) in running_stats.iter().zip(&saved) {
                        v.set(t)?;
                    }
                    Ok(heads)
                };
                // (1) Diagnosis network.
                let real = m.diagnose(x, true)?;
                let judged = judge_fake(&fake.detach())?;
                let l_rf = (bce_with_logits(&real.real_fake, &ones)? + bce_with_logits(&judged.real_fake, &zeros)?)?;
                let l_cls = bce_with_logits(&real.malignancy, &b.labels)?;
                let l_attr = cluster_softmax_ce(&real.attributes, &b.attributes, &self.clusters)?;
                let l_d = (((&l_rf * cfg.adversarial)? + (&l_cls * w.cls)?)? + (&l_attr * w.attr)?)?;
                let d_v = finite!("loss", l_d);
                diagnosis.backward_step(&l_d)?;
                // (2) Generator: fool real/fake and be diagnosed as its conditioning.
                let seen = judge_fake(&fake)?;
                let l_g = (((bce_with_logits(&seen.real_fake, &ones)? * cfg.adversarial)?
                    + (bce_with_logits(&seen.malignancy, &b.labels)? * w.cls)?)?
                    + (cluster_softmax_ce(&seen.attributes, &b.attributes, &self.clusters)? * w.attr)?)?;
                let g_v = finite!("loss_generator", l_g);
                generator.backward_step(&l_g)?;
                let mean_sigmoid =
                    |t: &Tensor| -> candle_core::Result<f64> { Ok(candle_nn::ops::sigmoid(t)?.mean_all()?.to_scalar::<f32>()? as f64) };
                Ok(Step::Done(StepLosses {
                    total: d_v as f64,
                    cls: scalar(&l_cls)? as f64,
                    attr: scalar(&l_attr)? as f64,
                    rec: 0.0,
                    extra: vec![scalar(&l_rf)? as f64, g_v as f64, mean_sigmoid(&real.real_fake)?, mean_sigmoid(&seen.real_fake)?],
                }))
            }
            (Kind::LiDiagnet { cfg, opt }, Network::LiDiagnet(m)) => {
                let x = &b.images;
                let y: Vec<u8> = b.labels.to_vec1::<f32>()?.iter().map(|v| (*v > 0.5) as u8).collect();
                let flipped = (1.0 - &b.labels)?;
                let towards = |target: &Tensor| -> candle_core::Result<Tensor> {
                    let mut xc = x.detach();
                    for _ in 0..cfg.steps {
                        let xv = Var::from_tensor(&xc)?;
                        let l = bce_with_logits(&m.classify(&m.features(xv.as_tensor(), false)?)?, target)?;
                        let g = l
                            .backward()?
                            .get(xv.as_tensor())
                            .cloned()
                            .ok_or_else(|| candle_core::Error::Msg("no input gradient".into()))?;
                        xc = (xc - (g.sign()? * cfg.epsilon)?)?.detach();
                    }
                    Ok(xc)
                };
                // Own-class neighbours descend the loss of the true label;
                // other-class neighbours descend that of the flipped label
                // (hard examples near the boundary). Both keep their
                // original's label: they are augmentation, and the signed
                // graph pulls them into their class.
                let pos = towards(&b.labels)?;
                let neg = towards(&flipped)?;
                let all = Tensor::cat(&[x, &pos, &neg], 0)?;
                let h = m.features(&all, true)?;
                let n = y.len();
                let logits = m.classify(&h)?;
                let l_cls = bce_with_logits(&logits, &Tensor::cat(&[&b.labels, &b.labels, &b.labels], 0)?)?;
                let classes: Vec<u8> = y.iter().chain(&y).chain(&y).copied().collect();
                let l_lap = signed_laplacian(&h, &classes)?;
                let total = ((&l_cls * w.cls)? + (&l_lap * cfg.laplacian)?)?;
                let total_v = finite!("loss", total);
                opt.backward_step(&total)?;
                let spread = within_class_spread(&h.narrow(0, 0, n)?.to_vec2::<f32>()?, &y);
                Ok(Step::Done(StepLosses {
                    total: total_v as f64,
                    cls: scalar(&l_cls)? as f64,
                    attr: 0.0,
                    rec: 0.0,
                    extra: vec![scalar(&l_lap)? as f64, spread],
                }))
            }
            _ => candle_core::bail!("trainer and network of different methods"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::within_class_spread;

    #[test]
    fn within_class_spread_is_zero_for_class_points_and_one_without_structure() {
        // Each class one direction: no spread within classes.
        let rows = vec![vec![1.0, 0.0], vec![2.0, 0.0], vec![0.0, 1.0], vec![0.0, 3.0]];
        assert!(within_class_spread(&rows, &[0, 0, 1, 1]).abs() < 1e-12);
        // Unit vectors (1,0), (0,1) in each class: class centroids equal the
        // global one (0.5, 0.5), so within = total: ratio 1.
        let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!((within_class_spread(&rows, &[0, 0, 1, 1]) - 1.0).abs() < 1e-12);
    }
}
