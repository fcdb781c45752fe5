//! ICADx (Kim et al., 2018), AC-GAN style, two updates per batch: (1) the
//! diagnosis network on real/fake BCE plus the label and attribute
//! cross-entropies of real patches; (2) the generator on fooling real/fake
//! plus the heads' cross-entropies of its patches against their conditioning.

use std::ops::Range;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarBuilder;
use dae_data::batch::Batch;
use dae_data::rng::Rng;
use dae_losses::{bce_with_logits, cluster_softmax_ce};
use dae_model::{Icadx, IcadxConfig, Network};

use super::{finite, normal, scalar, Build, Method, Step, StepLosses};
use crate::adam::{named_vars, Adam};
use crate::job::LossWeights;
use crate::RunError;

pub struct IcadxMethod {
    net: Icadx,
    cfg: IcadxConfig,
    diagnosis: Adam,
    generator: Adam,
    /// The diagnosis network's batch-norm running statistics.
    running_stats: Vec<Var>,
    weights: LossWeights,
    clusters: Vec<Range<usize>>,
}

impl IcadxMethod {
    pub fn new(b: &Build, cfg: &IcadxConfig, vb: VarBuilder) -> Result<Self, RunError> {
        let d = b.data;
        let net = Icadx::new(&b.job.model, cfg, b.job.dataset.image_size(), d.vocab.len(), d.has_attributes(), b.job.optim.precision, vb)?;
        let gen = Icadx::GENERATOR_PREFIX;
        let stats = |k: &str| !k.starts_with(gen) && (k.ends_with("running_mean") || k.ends_with("running_var"));
        Ok(Self {
            net,
            cfg: cfg.clone(),
            diagnosis: b.adam(|k| !k.starts_with(gen))?,
            generator: b.adam(|k| k.starts_with(gen))?,
            running_stats: named_vars(b.varmap, stats).into_iter().map(|(_, v)| v).collect(),
            weights: b.job.loss.clone(),
            clusters: d.clusters(),
        })
    }
}

impl IcadxMethod {
    /// The networks (diagnosis and generator).
    pub fn net(&self) -> &Icadx {
        &self.net
    }
}

impl Method for IcadxMethod {
    fn network(&self) -> &dyn Network {
        &self.net
    }

    fn step(&mut self, b: &Batch, rng: &mut Rng) -> candle_core::Result<Step> {
        let Self { net: m, cfg, diagnosis, generator, running_stats, weights: w, clusters } = self;
        let x = &b.images;
        let bsz = x.dim(0)?;
        let noise = normal(rng, bsz, m.noise_dim(), x)?;
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
        let l_attr = cluster_softmax_ce(&real.attributes, &b.attributes, clusters)?;
        let l_d = (((&l_rf * cfg.adversarial)? + (&l_cls * w.cls)?)? + (&l_attr * w.attr)?)?;
        let d_v = finite!("loss", l_d);
        diagnosis.backward_step(&l_d)?;
        // (2) Generator: fool real/fake and be diagnosed as its conditioning.
        let seen = judge_fake(&fake)?;
        let l_g = (((bce_with_logits(&seen.real_fake, &ones)? * cfg.adversarial)?
            + (bce_with_logits(&seen.malignancy, &b.labels)? * w.cls)?)?
            + (cluster_softmax_ce(&seen.attributes, &b.attributes, clusters)? * w.attr)?)?;
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

    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("diagnosis", &mut self.diagnosis), ("generator", &mut self.generator)]
    }

    fn extra_columns(&self) -> &'static [&'static str] {
        &["loss_real_fake", "loss_generator", "realness_real", "realness_fake"]
    }
}
