//! Guided-VAE (Ding et al., CVPR 2020), supervised form, three updates
//! per batch: (1) encoder, decoder and classifier on the per-sample sums of
//! the L1 reconstruction and the KL plus the excitation BCE (malignancy from
//! z_t), as the official code; (2) the adversary on the detached z_rst; (3)
//! the encoder so that the adversary answers 0.5 (inhibition).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use dae_data::batch::Batch;
use dae_data::rng::Rng;
use dae_losses::{bce_with_logits, gaussian_kl, l1_reconstruction};
use dae_model::{GuidedVae, GuidedVaeConfig, Network};

use super::{accuracy, finite, normal, scalar, Build, Method, Step, StepLosses};
use crate::adam::Adam;
use crate::job::LossWeights;
use crate::RunError;

pub struct GuidedVaeMethod {
    net: GuidedVae,
    cfg: GuidedVaeConfig,
    vae: Adam,
    adversary: Adam,
    encoder: Adam,
    weights: LossWeights,
}

impl GuidedVaeMethod {
    pub fn new(b: &Build, cfg: &GuidedVaeConfig, vb: VarBuilder) -> Result<Self, RunError> {
        let net = GuidedVae::new(&b.job.model, cfg, b.job.dataset.image_size(), b.job.optim.precision, vb)?;
        Ok(Self {
            net,
            cfg: cfg.clone(),
            vae: b.adam(|k| !k.starts_with(GuidedVae::ADVERSARY_PREFIX))?,
            adversary: b.adam(|k| k.starts_with(GuidedVae::ADVERSARY_PREFIX))?,
            encoder: b.adam(|k| GuidedVae::ENCODER_PREFIXES.iter().any(|p| k.starts_with(p)))?,
            weights: b.job.loss.clone(),
        })
    }
}

impl Method for GuidedVaeMethod {
    fn network(&self) -> &dyn Network {
        &self.net
    }

    fn step(&mut self, b: &Batch, rng: &mut Rng) -> candle_core::Result<Step> {
        let Self { net: m, cfg, vae, adversary, encoder, weights: w } = self;
        let x = &b.images;
        let (bsz, _, h, wd) = x.dims4()?;
        let pixels = (h * wd) as f64;
        // (1) VAE + excitation: per-sample sums, as the official code.
        let (mu, logvar) = m.encode(x, true)?;
        let eps = normal(rng, bsz, mu.dim(1)?, &mu)?;
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

    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("vae", &mut self.vae), ("adversary", &mut self.adversary), ("encoder", &mut self.encoder)]
    }

    fn extra_columns(&self) -> &'static [&'static str] {
        &["loss_kl", "loss_excitation", "loss_adversary", "adversary_acc", "loss_inhibition"]
    }
}
