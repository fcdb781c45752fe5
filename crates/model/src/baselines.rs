//! The three methods of the paper's Tables 1 and 3 that are not rows of the
//! ablation, on the same encoder, decoder and data as DAE-GCN. None has code
//! that fits here, so each follows its paper's description; the choices we
//! had to make are in the doc comments and in `ARCHITECTURE.md`.
//!
//! The networks only compute; the training steps (which loss, which
//! optimiser, how many steps per batch) are in `dae-train`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::config::{GuidedVaeConfig, IcadxConfig, Method, ModelConfig, Precision};
use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::network::{keep_blocks, present_panels, Block, Network, Outputs, ProbeGroup};
use crate::ModelError;

/// Guided-VAE (Ding et al., CVPR 2020), supervised form.
///
/// The encoder gives the mean and log-variance of z = [z_t, z_rst]; the
/// decoder reconstructs from a sample of z (the mean at evaluation). The
/// classifier reads z_t ("excitation": malignancy from the target block); an
/// adversary MLP reads z_rst, and the encoder is trained so that the
/// adversary answers 0.5 ("inhibition"). Variables: `encoder.*` and `vae.*`
/// (the encoder side), `classifier.*`, `adversary.*`, `decoder.*`.
#[derive(Debug)]
pub struct GuidedVae {
    encoder: Encoder,
    mu: Linear,
    logvar: Linear,
    classifier: Linear,
    adv_hidden: Linear,
    adv_out: Linear,
    decoder: Decoder,
    z_t: usize,
    blocks: Vec<Block>,
}

impl GuidedVae {
    /// Variable-name prefixes of the encoder side (updated by the VAE step and the inhibition step).
    pub const ENCODER_PREFIXES: [&'static str; 2] = ["encoder.", "vae."];
    /// Variable-name prefix of the adversary (its own optimiser).
    pub const ADVERSARY_PREFIX: &'static str = "adversary.";

    pub fn new(model: &ModelConfig, g: &GuidedVaeConfig, image_size: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let encoder = Encoder::new(model.encoder, model.width, precision, vb.pp("encoder"))?;
        let z_t = model.h_ma_dim + model.h_mi_dim;
        let z_rst = model.h_i_dim;
        let l = z_t + z_rst;
        let mu = linear(encoder.out_dim(), l, vb.pp("vae.mu"))?;
        let logvar = linear(encoder.out_dim(), l, vb.pp("vae.logvar"))?;
        let classifier = linear(z_t, 1, vb.pp("classifier"))?;
        let adv_hidden = linear(z_rst, g.adversary_hidden, vb.pp("adversary.hidden"))?;
        let adv_out = linear(g.adversary_hidden, 1, vb.pp("adversary.out"))?;
        let decoder = Decoder::new(l, crate::decoder::base_width(model), image_size, precision, vb.pp("decoder"))?;
        let blocks = vec![Block { name: "z_t", range: 0..z_t }, Block { name: "z_rst", range: z_t..l }];
        Ok(Self { encoder, mu, logvar, classifier, adv_hidden, adv_out, decoder, z_t, blocks })
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Mean and log-variance `[B, L]` (the log-variance clamped to [-10, 10]).
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let f = self.encoder.forward_t(x, train)?;
        Ok((self.mu.forward(&f)?, self.logvar.forward(&f)?.clamp(-10f32, 10f32)?))
    }

    /// `(z_t, z_rst)` of a latent batch, contiguous.
    pub fn split(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let l = z.dim(1)?;
        Ok((z.narrow(1, 0, self.z_t)?.contiguous()?, z.narrow(1, self.z_t, l - self.z_t)?.contiguous()?))
    }

    /// Malignancy logits `[B]` from z_t.
    pub fn classify(&self, z_t: &Tensor) -> Result<Tensor> {
        self.classifier.forward(z_t)?.squeeze(1)
    }

    /// The adversary's malignancy logits `[B]` from z_rst.
    pub fn adversary(&self, z_rst: &Tensor) -> Result<Tensor> {
        self.adv_out.forward(&self.adv_hidden.forward(z_rst)?.relu()?)?.squeeze(1)
    }

    pub fn decode(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        self.decoder.forward_t(z, train)
    }
}

/// ICADx (Kim et al., 2018), AC-GAN style.
///
/// The diagnosis network (encoder -> feature h -> heads for malignancy, the
/// attributes and real/fake) plays against a generator that draws a patch
/// from the label, the multi-hot attributes and noise (the shared decoder
/// architecture on that vector). Variables: `generator.*` for the generator,
/// everything else is the diagnosis network.
#[derive(Debug)]
pub struct Icadx {
    encoder: Encoder,
    feature: Linear,
    malignancy: Linear,
    attributes: Linear,
    real_fake: Linear,
    generator: Decoder,
    noise_dim: usize,
    blocks: Vec<Block>,
}

/// The diagnosis network's heads on one batch.
#[derive(Debug)]
pub struct DiagnosisHeads {
    pub feature: Tensor,
    /// Malignancy logits `[B]`.
    pub malignancy: Tensor,
    /// Attribute scores `[B, A]` (per-cluster softmax in the loss).
    pub attributes: Tensor,
    /// Real/fake logits `[B]` (real = 1).
    pub real_fake: Tensor,
}

impl Icadx {
    /// Variable-name prefix of the generator (its own optimiser).
    pub const GENERATOR_PREFIX: &'static str = "generator.";

    /// Builds the networks; `has_attributes`: whether the training split
    /// has any attribute in the study's vocabulary (ICADx predicts them).
    pub fn new(
        model: &ModelConfig,
        c: &IcadxConfig,
        image_size: usize,
        n_attr: usize,
        has_attributes: bool,
        precision: Precision,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        if !has_attributes {
            return Err(ModelError::MethodNeedsAttributes { method: Method::Icadx.name() });
        }
        let encoder = Encoder::new(model.encoder, model.width, precision, vb.pp("encoder"))?;
        let h = model.h_dim;
        let feature = linear(encoder.out_dim(), h, vb.pp("heads.feature"))?;
        let malignancy = linear(h, 1, vb.pp("heads.malignancy"))?;
        let attributes = linear(h, n_attr, vb.pp("heads.attributes"))?;
        let real_fake = linear(h, 1, vb.pp("heads.real_fake"))?;
        let generator =
            Decoder::new(1 + n_attr + c.noise_dim, crate::decoder::base_width(model), image_size, precision, vb.pp("generator"))?;
        let blocks = vec![Block { name: "h", range: 0..h }];
        Ok(Self { encoder, feature, malignancy, attributes, real_fake, generator, noise_dim: c.noise_dim, blocks })
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub fn noise_dim(&self) -> usize {
        self.noise_dim
    }

    pub fn diagnose(&self, x: &Tensor, train: bool) -> Result<DiagnosisHeads> {
        let feature = self.feature.forward(&self.encoder.forward_t(x, train)?)?;
        Ok(DiagnosisHeads {
            malignancy: self.malignancy.forward(&feature)?.squeeze(1)?,
            attributes: self.attributes.forward(&feature)?,
            real_fake: self.real_fake.forward(&feature)?.squeeze(1)?,
            feature,
        })
    }

    /// Patches `[B, 1, H, W]` (normalised intensities) from labels `[B]`,
    /// multi-hot attributes `[B, A]` and noise `[B, noise_dim]`.
    pub fn generate(&self, labels: &Tensor, attributes: &Tensor, noise: &Tensor, train: bool) -> Result<Tensor> {
        let cond = Tensor::cat(&[&labels.unsqueeze(1)?, attributes, noise], 1)?;
        self.generator.forward_t(&cond, train)
    }
}

/// Li et al. (MICCAI 2019): a classifier whose feature h is regularised by a
/// signed graph Laplacian over the batch and its adversarial neighbours
/// (the augmentation and the regulariser are training steps in `dae-train`).
#[derive(Debug)]
pub struct LiDiagnet {
    encoder: Encoder,
    feature: Linear,
    classifier: Linear,
    blocks: Vec<Block>,
}

impl LiDiagnet {
    pub fn new(model: &ModelConfig, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let encoder = Encoder::new(model.encoder, model.width, precision, vb.pp("encoder"))?;
        let feature = linear(encoder.out_dim(), model.h_dim, vb.pp("heads.feature"))?;
        let classifier = linear(model.h_dim, 1, vb.pp("classifier"))?;
        Ok(Self { encoder, feature, classifier, blocks: vec![Block { name: "h", range: 0..model.h_dim }] })
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The feature h `[B, h_dim]`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.feature.forward(&self.encoder.forward_t(x, train)?)
    }

    /// Malignancy logits `[B]` from h.
    pub fn classify(&self, h: &Tensor) -> Result<Tensor> {
        self.classifier.forward(h)?.squeeze(1)
    }
}

impl Network for GuidedVae {
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The posterior mean.
    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(GuidedVae::encode(self, x, train)?.0)
    }

    fn evaluate(&self, x: &Tensor) -> Result<Outputs> {
        let (mu, _) = GuidedVae::encode(self, x, false)?;
        let logits = self.classify(&self.split(&mu)?.0)?;
        Ok(Outputs { latent: mu, logits, attr_scores: None, recon: None })
    }

    fn probe_groups(&self) -> Vec<ProbeGroup> {
        vec![("z_t", vec!["z_t"]), ("z_rst", vec!["z_rst"])]
    }

    fn figure3_panels(&self) -> Vec<ProbeGroup> {
        let all: Vec<&'static str> = self.blocks.iter().map(|b| b.name).collect();
        present_panels(&self.blocks, vec![("z", all), ("z_t", vec!["z_t"]), ("z_rst", vec!["z_rst"])])
    }

    fn decode_from(&self, latent: &Tensor, keep: &[&str]) -> Result<Option<Tensor>> {
        Ok(Some(self.decode(&keep_blocks(&self.blocks, latent, keep)?, false)?))
    }
}

impl Network for Icadx {
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.diagnose(x, train)?.feature)
    }

    fn evaluate(&self, x: &Tensor) -> Result<Outputs> {
        let d = self.diagnose(x, false)?;
        Ok(Outputs { latent: d.feature, logits: d.malignancy, attr_scores: Some(d.attributes), recon: None })
    }

    fn probe_groups(&self) -> Vec<ProbeGroup> {
        vec![("h", vec!["h"])]
    }
}

impl Network for LiDiagnet {
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.features(x, train)
    }

    fn evaluate(&self, x: &Tensor) -> Result<Outputs> {
        let h = self.features(x, false)?;
        Ok(Outputs { logits: self.classify(&h)?, latent: h, attr_scores: None, recon: None })
    }

    fn probe_groups(&self) -> Vec<ProbeGroup> {
        vec![("h", vec!["h"])]
    }
}
