//! The model's configuration (the `[model]` table of a job) and its checks.

use serde::{Deserialize, Serialize};

/// Which encoder backbone to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderKind {
    /// Five 3x3 conv + batch-norm stages (the CPU default).
    SmallCnn,
    Resnet18,
    Resnet34,
}

/// The arithmetic of the convolutional trunks (`optim.precision`).
///
/// `Bf16`: the encoder's and decoder's convolutions run on bf16 activations
/// and bf16 copies of the f32 master weights (products accumulated in f32,
/// as bf16 tensor cores do); batch norm, pooling, the heads, the GCN, the
/// losses and the optimiser stay in f32. bf16 has f32's exponent range, so
/// nothing overflows or underflows that f32 keeps; what it lacks is
/// mantissa (8 bits), hence every reduction in f32. On the CPU it is an
/// emulation: the same roundings, f32 arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The dtype of the trunks' activations.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How the latent blocks come out of the encoder (`model.latent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatentMode {
    /// Each block is the pooled output of its own branch of the last encoder
    /// stage on a shared trunk (the paper's "we explicitly separate h into
    /// three parts" read as parts of the encoder's output): a head that does
    /// not read a block sends no gradient into its branch.
    Branches,
    /// Each block is a linear projection of the same pooled encoder
    /// features: splitting h then only masks head weights (a reparametrisation).
    Projections,
}

/// How attributes supervise the latent (paper Table 2, column "Attribute").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributeMode {
    None,
    /// Free linear heads per cluster.
    Multitask,
    /// Head weights produced by a GCN over the attribute graph.
    Gcn,
}

/// Node features of the attribute graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeFeatures {
    /// Sentence embeddings of the attribute phrases (`datasets/attribute-embeddings.csv`).
    Embedding,
    OneHot,
}

/// The `[model]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub encoder: EncoderKind,
    /// Base channel width of the small CNN (ignored by the ResNets).
    pub width: usize,
    /// Blocks as branches of the last encoder stage, or as projections.
    pub latent: LatentMode,
    /// Separate latent blocks h_ma, h_mi (and h_i) instead of one h.
    pub disentangle: bool,
    pub attributes: AttributeMode,
    /// Decoder and L_rec.
    pub rec: bool,
    /// The disease-irrelevant block h_i (read by the decoder only).
    pub h_i: bool,
    /// Size of h when `disentangle = false`.
    pub h_dim: usize,
    pub h_ma_dim: usize,
    pub h_mi_dim: usize,
    pub h_i_dim: usize,
    /// Width of the GCN's hidden layer.
    pub gcn_hidden: usize,
    pub node_features: NodeFeatures,
    /// Threshold on the conditional co-occurrence M_ij / T_i (paper eq. 2), in (0, 1).
    pub tau: f64,
    /// Re-weighting against over-smoothing (paper eq. 2), in (0, 1).
    pub p: f64,
    /// Erase the malignancy label linearly from h_i ([`crate::erase`]); not
    /// in the paper, off by default. Left out of the written config when
    /// off, so the job ids of the paper's rows do not change.
    #[serde(skip_serializing_if = "is_false")]
    pub h_i_erase: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderKind::SmallCnn,
            width: 16,
            latent: LatentMode::Branches,
            disentangle: true,
            attributes: AttributeMode::Gcn,
            rec: true,
            h_i: true,
            h_dim: 96,
            h_ma_dim: 32,
            h_mi_dim: 32,
            h_i_dim: 32,
            gcn_hidden: 64,
            node_features: NodeFeatures::Embedding,
            tau: 0.4,
            p: 0.2,
            h_i_erase: false,
        }
    }
}

/// A configuration problem, naming the key.
/// `key` is a `[model]` key, or `table.key` for a method's own table.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = if self.key.contains('.') { "" } else { "model." };
        write!(f, "{table}{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl ModelConfig {
    /// Checks sizes, ranges and switch combinations for an input of `image_size` pixels.
    pub fn validate(&self, image_size: usize) -> Result<(), ConfigError> {
        let err = |key, problem: String| Err(ConfigError { key, problem });
        if !(0.0 < self.tau && self.tau < 1.0) {
            return err("tau", format!("{} is outside (0, 1)", self.tau));
        }
        if !(0.0 < self.p && self.p < 1.0) {
            return err("p", format!("{} is outside (0, 1)", self.p));
        }
        if self.h_i && !self.disentangle {
            return err("h_i", "h_i = true needs disentangle = true (without separate blocks there is no irrelevant block)".into());
        }
        if self.h_i_erase && !(self.disentangle && self.h_i) {
            return err(
                "h_i_erase",
                "true, but there is no h_i block to erase the label from; set disentangle = true and h_i = true, or h_i_erase = false"
                    .into(),
            );
        }
        if self.disentangle {
            if self.h_ma_dim == 0 {
                return err("h_ma_dim", "0, but disentangle = true needs a macroscopic block".into());
            }
            if self.h_mi_dim == 0 {
                return err("h_mi_dim", "0, but disentangle = true needs a microscopic block".into());
            }
            if self.h_i && self.h_i_dim == 0 {
                return err("h_i_dim", "0, but h_i = true needs an irrelevant block".into());
            }
        } else if self.h_dim == 0 {
            return err("h_dim", "0, but disentangle = false needs a latent h".into());
        }
        if self.attributes == AttributeMode::Gcn && self.gcn_hidden == 0 {
            return err("gcn_hidden", "0, but attributes = \"gcn\" needs a hidden layer".into());
        }
        self.validate_encoder(image_size)?;
        self.validate_branches()
    }

    /// The latent's total width.
    pub fn latent_width(&self) -> usize {
        match (self.disentangle, self.h_i) {
            (false, _) => self.h_dim,
            (true, false) => self.h_ma_dim + self.h_mi_dim,
            (true, true) => self.h_ma_dim + self.h_mi_dim + self.h_i_dim,
        }
    }

    /// Branches share out the last encoder stage: their total width is at
    /// most its channels.
    fn validate_branches(&self) -> Result<(), ConfigError> {
        let most = crate::encoder::Encoder::last_stage_width(self.encoder, self.width);
        if self.latent == LatentMode::Branches && self.latent_width() > most {
            let key = if self.disentangle { "h_ma_dim" } else { "h_dim" };
            let problem = format!(
                "latent = \"branches\": the blocks are {} channels in all, but the last stage of the encoder has {most} to share out \
                 (8 x width for the small CNN, 512 for the ResNets); make the blocks narrower or use latent = \"projections\"",
                self.latent_width()
            );
            return Err(ConfigError { key, problem });
        }
        Ok(())
    }

    /// The rules every method's encoder and decoder share: the input size and the small CNN's width.
    fn validate_encoder(&self, image_size: usize) -> Result<(), ConfigError> {
        if self.encoder == EncoderKind::SmallCnn && self.width == 0 {
            return Err(ConfigError { key: "width", problem: "0; the small CNN needs at least 1 channel".into() });
        }
        if !(32..=512).contains(&image_size) || image_size % 16 != 0 {
            let problem = format!("input size {image_size}: expected a multiple of 16 in 32..=512 (e.g. 32, 64, 128, 224)");
            return Err(ConfigError { key: "encoder", problem });
        }
        Ok(())
    }
}

/// Which method a job trains (`method = ...` at the top of a job config).
///
/// DAE-GCN and its ablations are one method whose switches live in
/// `[model]`; the three baselines of the paper's Tables 1 and 3 that are not
/// ablation rows have their own option tables (`[guided_vae]`, `[icadx]`,
/// `[li_diagnet]`) and share the encoder (`model.encoder`, `model.width`),
/// the decoder and the data pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    DaeGcn,
    /// Guided-VAE (Ding et al., CVPR 2020), supervised: excitation of z_t, inhibition of z_rst.
    GuidedVae,
    /// ICADx (Kim et al., 2018): a diagnosis network trained adversarially with a lesion generator.
    Icadx,
    /// Li et al. (MICCAI 2019): adversarial augmentation and a signed-Laplacian regulariser.
    LiDiagnet,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::DaeGcn, Method::GuidedVae, Method::Icadx, Method::LiDiagnet];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Method::DaeGcn => "dae-gcn",
            Method::GuidedVae => "guided-vae",
            Method::Icadx => "icadx",
            Method::LiDiagnet => "li-diagnet",
        }
    }

    /// The job config table holding this method's own options (`[model]` for DAE-GCN).
    pub fn table(self) -> &'static str {
        match self {
            Method::DaeGcn => "model",
            Method::GuidedVae => "guided_vae",
            Method::Icadx => "icadx",
            Method::LiDiagnet => "li_diagnet",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Method::DaeGcn
    }
}

/// Guided-VAE's options (`[guided_vae]`). The latent is z = [z_t, z_rst]
/// with z_t the size of DAE-GCN's [h_ma, h_mi] (`model.h_ma_dim +
/// model.h_mi_dim`) and z_rst the size of h_i (`model.h_i_dim`), so the two
/// methods compare like with like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuidedVaeConfig {
    /// Weight of the excitation BCE (malignancy from z_t) against the
    /// per-sample sums of L1 reconstruction and KL (200 in the official code).
    pub excitation: f64,
    /// Weight of the KL term (1 = the plain VAE).
    pub kl: f64,
    /// Inhibition on (adversary on z_rst, encoder pushed to make it answer 0.5).
    pub inhibition: bool,
    /// Hidden width of the adversary MLP on z_rst.
    pub adversary_hidden: usize,
}

impl Default for GuidedVaeConfig {
    fn default() -> Self {
        Self { excitation: 200.0, kl: 1.0, inhibition: true, adversary_hidden: 64 }
    }
}

/// ICADx's options (`[icadx]`). The diagnosis network's feature h has
/// `model.h_dim` columns (as the Vanilla row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcadxConfig {
    /// Size of the generator's noise input (besides the label and the attributes).
    pub noise_dim: usize,
    /// Weight of the real/fake terms in both players' losses.
    pub adversarial: f64,
}

impl Default for IcadxConfig {
    fn default() -> Self {
        Self { noise_dim: 32, adversarial: 1.0 }
    }
}

/// Li et al.'s options (`[li_diagnet]`). The feature h has `model.h_dim` columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiDiagnetConfig {
    /// Size of one sign-gradient step in input space, in units of the
    /// normalised intensity (the training split's standard deviation).
    pub epsilon: f64,
    /// Gradient steps per adversarial neighbour (1 = FGSM).
    pub steps: usize,
    /// Weight of the signed-Laplacian regulariser.
    pub laplacian: f64,
}

impl Default for LiDiagnetConfig {
    fn default() -> Self {
        Self { epsilon: 0.05, steps: 1, laplacian: 1.0 }
    }
}

/// A method with its options, as the model and the trainer use it.
#[derive(Clone, Debug, PartialEq)]
pub enum MethodSpec {
    DaeGcn,
    GuidedVae(GuidedVaeConfig),
    Icadx(IcadxConfig),
    LiDiagnet(LiDiagnetConfig),
}

impl MethodSpec {
    pub fn method(&self) -> Method {
        match self {
            MethodSpec::DaeGcn => Method::DaeGcn,
            MethodSpec::GuidedVae(_) => Method::GuidedVae,
            MethodSpec::Icadx(_) => Method::Icadx,
            MethodSpec::LiDiagnet(_) => Method::LiDiagnet,
        }
    }

    /// Checks the method's options and the `[model]` sizes it reads.
    pub fn validate(&self, model: &ModelConfig, image_size: usize) -> Result<(), ConfigError> {
        let err = |key, problem: String| Err(ConfigError { key, problem });
        if self.method() == Method::DaeGcn {
            return model.validate(image_size);
        }
        model.validate_encoder(image_size)?;
        let bad = |key: &'static str, problem: String| Err(ConfigError { key, problem });
        match self {
            MethodSpec::DaeGcn => unreachable!(),
            MethodSpec::GuidedVae(g) => {
                if model.h_ma_dim + model.h_mi_dim == 0 {
                    return err("h_ma_dim", "h_ma_dim + h_mi_dim is 0, but Guided-VAE's z_t has that size".into());
                }
                if model.h_i_dim == 0 {
                    return err("h_i_dim", "0, but Guided-VAE's z_rst has that size".into());
                }
                for (k, v) in [("guided_vae.excitation", g.excitation), ("guided_vae.kl", g.kl)] {
                    if !(v >= 0.0 && v.is_finite()) {
                        return bad_outside(k, v);
                    }
                }
                if g.adversary_hidden == 0 {
                    return bad("guided_vae.adversary_hidden", "0; the adversary needs a hidden layer".into());
                }
            }
            MethodSpec::Icadx(c) => {
                if model.h_dim == 0 {
                    return err("h_dim", "0, but ICADx's diagnosis network needs a feature h".into());
                }
                if c.noise_dim == 0 {
                    return bad("icadx.noise_dim", "0; the generator needs noise (e.g. 32)".into());
                }
                if !(c.adversarial >= 0.0 && c.adversarial.is_finite()) {
                    return bad_outside("icadx.adversarial", c.adversarial);
                }
            }
            MethodSpec::LiDiagnet(c) => {
                if model.h_dim == 0 {
                    return err("h_dim", "0, but Li et al.'s network needs a feature h".into());
                }
                if !(c.epsilon > 0.0 && c.epsilon.is_finite()) {
                    return bad("li_diagnet.epsilon", format!("{} must be positive (e.g. 0.05)", c.epsilon));
                }
                if c.steps == 0 {
                    return bad("li_diagnet.steps", "0; at least one gradient step makes a neighbour".into());
                }
                if !(c.laplacian >= 0.0 && c.laplacian.is_finite()) {
                    return bad_outside("li_diagnet.laplacian", c.laplacian);
                }
            }
        }
        Ok(())
    }
}

fn bad_outside(key: &'static str, v: f64) -> Result<(), ConfigError> {
    Err(ConfigError { key, problem: format!("{v} must be a finite weight >= 0") })
}
