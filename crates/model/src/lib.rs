//! `dae-model`: DAE-GCN and its ablation variants on candle.
//!
//! One model type, [`DaeGcn`], built from a [`ModelConfig`] with the four
//! switches of the paper's Table 2 (`disentangle`, `attributes = none |
//! multitask | gcn`, `rec`, `h_i`), so the seven ablation rows are seven
//! configurations:
//!
//! - an [`encoder::Encoder`] (small CNN or ResNet-18/34, batch norm in train
//!   and eval modes, one input channel);
//! - the latent: one vector `h`, or blocks `h_ma`, `h_mi` (and `h_i`), each
//!   from its own linear projection of the pooled features;
//! - the attribute branch on `h_ma` (or `h`): free multi-task heads, or
//!   weights from a [`graph::Gcn`] over the attribute graph of eq. (2);
//! - the classifier on `[h_ma, h_mi]` (or `h`), and the
//!   [`decoder::Decoder`] on all blocks, which can also decode from any
//!   subset of blocks with the others zeroed (the paper's Figure 3).
//!
//! The three other methods of the paper's Tables 1 and 3 (Guided-VAE,
//! ICADx, Li et al.) are in [`baselines`], on the same encoder and decoder;
//! [`Network`] wraps any method so the trainer evaluates, probes and draws
//! Figure 3 the same way for all. [`Method`] says which `[model]` keys each
//! method reads.
//!
//! Weights are initialised from the job's seed by [`init_weights`] (candle
//! cannot seed its CPU generator), so a seed fixes a run on the CPU.
//!
//! This crate knows candle, `dae-data`'s vocabulary and statistics, and
//! `dae-metrics`' linear solver (for the h_i eraser); it knows nothing of
//! losses, training loops, files or sweeps.

pub mod baselines;
pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod erase;
pub mod graph;
pub mod norm;

use std::ops::Range;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use dae_data::{AttrStats, Vocabulary};

pub use baselines::{DiagnosisHeads, GuidedVae, Icadx, LiDiagnet};
pub use config::{
    AttributeMode, ConfigError, EncoderKind, GuidedVaeConfig, IcadxConfig, LiDiagnetConfig, Method, MethodSpec, ModelConfig, NodeFeatures,
};

/// Errors building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model.attributes = \"{mode}\" needs attribute labels, but the data set has none in the study's vocabulary")]
    NoAttributes { mode: &'static str },
    #[error("method = \"{method}\" predicts the shape and margin attributes, but the data set has none in the study's vocabulary (methods that need none: guided-vae, li-diagnet, or dae-gcn with model.attributes = \"none\")")]
    MethodNeedsAttributes { method: &'static str },
    #[error("model.node_features: {0}")]
    Features(String),
    #[error("building the model")]
    Candle(#[from] candle_core::Error),
}

/// A named latent block and its columns in the latent vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub name: &'static str,
    pub range: Range<usize>,
}

#[derive(Debug)]
enum AttrHead {
    None,
    Multitask(Linear),
    Gcn(graph::Gcn),
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct Outputs {
    /// All blocks concatenated, `[B, L]`.
    pub latent: Tensor,
    /// Malignancy logits `[B]`.
    pub logits: Tensor,
    /// Attribute scores `[B, A]` (softmax per cluster in the loss), when attributes are on.
    pub attr_scores: Option<Tensor>,
    /// Reconstruction `[B, 1, H, W]`, when `rec` is on.
    pub recon: Option<Tensor>,
}

/// DAE-GCN and its ablations.
#[derive(Debug)]
pub struct DaeGcn {
    cfg: ModelConfig,
    encoder: encoder::Encoder,
    heads: Vec<Linear>,
    blocks: Vec<Block>,
    attr: AttrHead,
    classifier: Linear,
    decoder: Option<decoder::Decoder>,
    /// Linear label erasure on h_i (`h_i_erase`), and h_i's index in `heads`.
    eraser: Option<(usize, erase::LabelEraser)>,
}

impl DaeGcn {
    /// Builds the model. `stats` are the training split's attribute counts
    /// (needed for `attributes = "gcn"`).
    pub fn new(
        cfg: &ModelConfig,
        image_size: usize,
        vocab: &Vocabulary,
        stats: &AttrStats,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(image_size)?;
        if cfg.attributes != AttributeMode::None && stats.t.iter().all(|&t| t == 0) {
            return Err(ModelError::NoAttributes { mode: if cfg.attributes == AttributeMode::Gcn { "gcn" } else { "multitask" } });
        }
        let encoder = encoder::Encoder::new(cfg.encoder, cfg.width, vb.pp("encoder"))?;
        let sizes: Vec<(&'static str, usize)> = if cfg.disentangle {
            let mut v = vec![("h_ma", cfg.h_ma_dim), ("h_mi", cfg.h_mi_dim)];
            if cfg.h_i {
                v.push(("h_i", cfg.h_i_dim));
            }
            v
        } else {
            vec![("h", cfg.h_dim)]
        };
        let mut blocks = Vec::new();
        let mut heads = Vec::new();
        let mut at = 0;
        for (name, d) in sizes {
            heads.push(linear(encoder.out_dim(), d, vb.pp(format!("heads.{name}")))?);
            blocks.push(Block { name, range: at..at + d });
            at += d;
        }
        let att_dim = if cfg.disentangle { cfg.h_ma_dim } else { cfg.h_dim };
        let cls_dim = if cfg.disentangle { cfg.h_ma_dim + cfg.h_mi_dim } else { cfg.h_dim };
        let attr = match cfg.attributes {
            AttributeMode::None => AttrHead::None,
            AttributeMode::Multitask => AttrHead::Multitask(linear(att_dim, vocab.len(), vb.pp("attr.multitask"))?),
            AttributeMode::Gcn => {
                let adj = graph::adjacency(stats, cfg.tau, cfg.p);
                let feats = graph::node_features(vocab, cfg.node_features).map_err(ModelError::Features)?;
                AttrHead::Gcn(graph::Gcn::new(&adj, &feats, cfg.gcn_hidden, att_dim, vb.pp("attr.gcn"))?)
            }
        };
        let classifier = linear(cls_dim, 1, vb.pp("classifier"))?;
        let base = if cfg.encoder == EncoderKind::SmallCnn { cfg.width } else { 32 };
        let decoder = if cfg.rec { Some(decoder::Decoder::new(at, base, image_size, vb.pp("decoder"))?) } else { None };
        let eraser = match blocks.iter().position(|b| b.name == "h_i") {
            Some(k) if cfg.h_i_erase => Some((k, erase::LabelEraser::new(cfg.h_i_dim, vb.pp("eraser.h_i"))?)),
            _ => None,
        };
        Ok(Self { cfg: cfg.clone(), encoder, heads, blocks, attr, classifier, decoder, eraser })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The latent blocks, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// One block of a latent batch (contiguous, as CUDA matmuls need).
    pub fn block(&self, latent: &Tensor, name: &str) -> Result<Option<Tensor>> {
        match self.blocks.iter().find(|b| b.name == name) {
            Some(b) => Ok(Some(latent.narrow(1, b.range.start, b.range.len())?.contiguous()?)),
            None => Ok(None),
        }
    }

    /// The columns the classifier reads: `[h_ma, h_mi]`, or `h`.
    pub fn classifier_input(&self, latent: &Tensor) -> Result<Tensor> {
        if self.cfg.disentangle {
            latent.narrow(1, 0, self.cfg.h_ma_dim + self.cfg.h_mi_dim)?.contiguous()
        } else {
            Ok(latent.clone())
        }
    }

    fn attr_input(&self, latent: &Tensor) -> Result<Tensor> {
        if self.cfg.disentangle {
            latent.narrow(1, 0, self.cfg.h_ma_dim)?.contiguous()
        } else {
            Ok(latent.clone())
        }
    }

    /// The latent of a batch of images `[B, 1, H, W]`.
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.encoder.forward_t(x, train)?;
        let mut parts: Vec<Tensor> = self.heads.iter().map(|h| h.forward(&f)).collect::<Result<_>>()?;
        if let Some((k, e)) = &self.eraser {
            parts[*k] = e.forward(&parts[*k])?;
        }
        Tensor::cat(&parts, 1)
    }

    /// Whether h_i goes through a [`erase::LabelEraser`] (`h_i_erase`).
    pub fn has_eraser(&self) -> bool {
        self.eraser.is_some()
    }

    /// h_i before erasure, `[B, h_i_dim]`, of a batch of images (what the
    /// eraser is fitted on); `None` without an eraser.
    pub fn h_i_before_erasure(&self, x: &Tensor, train: bool) -> Result<Option<Tensor>> {
        match &self.eraser {
            Some((k, _)) => Ok(Some(self.heads[*k].forward(&self.encoder.forward_t(x, train)?)?)),
            None => Ok(None),
        }
    }

    /// Refits the eraser on rows of h_i before erasure and their 0/1 labels;
    /// `false` when it had to become the identity (see [`erase::LabelEraser::fit`])
    /// or there is none.
    pub fn fit_eraser(&self, rows: &[Vec<f32>], labels: &[u8]) -> Result<bool> {
        match &self.eraser {
            Some((_, e)) => e.fit(rows, labels),
            None => Ok(false),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Outputs> {
        let mut out = self.forward_heads(x, train)?;
        if let Some(d) = &self.decoder {
            out.recon = Some(d.forward_t(&out.latent, train)?);
        }
        Ok(out)
    }

    /// The latent, logits and attribute scores without running the decoder
    /// (`recon` is `None`): what evaluation needs.
    pub fn forward_heads(&self, x: &Tensor, train: bool) -> Result<Outputs> {
        let latent = self.encode(x, train)?;
        let logits = self.classifier.forward(&self.classifier_input(&latent)?)?.squeeze(1)?;
        let attr_scores = match &self.attr {
            AttrHead::None => None,
            AttrHead::Multitask(l) => Some(l.forward(&self.attr_input(&latent)?)?),
            AttrHead::Gcn(g) => Some(self.attr_input(&latent)?.matmul(&g.weights()?.t()?)?),
        };
        Ok(Outputs { latent, logits, attr_scores, recon: None })
    }

    /// Decodes from the named blocks only, the others zeroed (Figure 3).
    /// `None` when the model has no decoder.
    pub fn decode_from(&self, latent: &Tensor, keep: &[&str]) -> Result<Option<Tensor>> {
        let Some(d) = &self.decoder else { return Ok(None) };
        Ok(Some(d.forward_t(&keep_blocks(&self.blocks, latent, keep)?, false)?))
    }
}

/// `latent` with the columns of blocks not named in `keep` zeroed.
fn keep_blocks(blocks: &[Block], latent: &Tensor, keep: &[&str]) -> Result<Tensor> {
    let (b, l) = latent.dims2()?;
    let mask: Vec<f32> = (0..l).map(|i| blocks.iter().any(|bl| bl.range.contains(&i) && keep.contains(&bl.name)) as u8 as f32).collect();
    let mask = Tensor::from_vec(mask, (1, l), latent.device())?.broadcast_as((b, l))?;
    latent * mask
}

/// Any method's network, seen the same way at evaluation: a latent with
/// named blocks (for the probes), malignancy logits, attribute scores where
/// the method predicts attributes, and reconstructions where it has a
/// decoder. The trainer evaluates, probes and draws Figure 3 through this.
#[derive(Debug)]
pub enum Network {
    DaeGcn(DaeGcn),
    GuidedVae(GuidedVae),
    Icadx(Icadx),
    LiDiagnet(LiDiagnet),
}

impl Network {
    /// Builds the network of `spec`. `stats` are the training split's attribute counts.
    pub fn new(
        spec: &MethodSpec,
        cfg: &ModelConfig,
        image_size: usize,
        vocab: &Vocabulary,
        stats: &AttrStats,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        spec.validate(cfg, image_size)?;
        Ok(match spec {
            MethodSpec::DaeGcn => Network::DaeGcn(DaeGcn::new(cfg, image_size, vocab, stats, vb)?),
            MethodSpec::GuidedVae(g) => Network::GuidedVae(GuidedVae::new(cfg, g, image_size, vb)?),
            MethodSpec::Icadx(c) => {
                if stats.t.iter().all(|&t| t == 0) {
                    return Err(ModelError::MethodNeedsAttributes { method: Method::Icadx.name() });
                }
                Network::Icadx(Icadx::new(cfg, c, image_size, vocab.len(), vb)?)
            }
            MethodSpec::LiDiagnet(_) => Network::LiDiagnet(LiDiagnet::new(cfg, vb)?),
        })
    }

    pub fn method(&self) -> Method {
        match self {
            Network::DaeGcn(_) => Method::DaeGcn,
            Network::GuidedVae(_) => Method::GuidedVae,
            Network::Icadx(_) => Method::Icadx,
            Network::LiDiagnet(_) => Method::LiDiagnet,
        }
    }

    /// The latent blocks, in order.
    pub fn blocks(&self) -> &[Block] {
        match self {
            Network::DaeGcn(m) => m.blocks(),
            Network::GuidedVae(m) => m.blocks(),
            Network::Icadx(m) => m.blocks(),
            Network::LiDiagnet(m) => m.blocks(),
        }
    }

    /// The latent of a batch (Guided-VAE: the posterior mean).
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Network::DaeGcn(m) => m.encode(x, train),
            Network::GuidedVae(m) => Ok(m.encode(x, train)?.0),
            Network::Icadx(m) => Ok(m.diagnose(x, train)?.feature),
            Network::LiDiagnet(m) => m.features(x, train),
        }
    }

    /// Evaluation-mode outputs (no reconstruction).
    pub fn evaluate(&self, x: &Tensor) -> Result<Outputs> {
        match self {
            Network::DaeGcn(m) => m.forward_heads(x, false),
            Network::GuidedVae(m) => {
                let (mu, _) = m.encode(x, false)?;
                let logits = m.classify(&m.split(&mu)?.0)?;
                Ok(Outputs { latent: mu, logits, attr_scores: None, recon: None })
            }
            Network::Icadx(m) => {
                let d = m.diagnose(x, false)?;
                Ok(Outputs { latent: d.feature, logits: d.malignancy, attr_scores: Some(d.attributes), recon: None })
            }
            Network::LiDiagnet(m) => {
                let h = m.features(x, false)?;
                Ok(Outputs { logits: m.classify(&h)?, latent: h, attr_scores: None, recon: None })
            }
        }
    }

    /// The linear probes to run: `(metrics key, blocks)`. DAE-GCN:
    /// `ma_mi` and `h_i` (or `h`); Guided-VAE: `z_t` and `z_rst`; the others `h`.
    pub fn probe_groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        match self {
            Network::DaeGcn(m) if m.config().disentangle => {
                let mut g = vec![("ma_mi", vec!["h_ma", "h_mi"])];
                if m.config().h_i {
                    g.push(("h_i", vec!["h_i"]));
                }
                g
            }
            Network::GuidedVae(_) => vec![("z_t", vec!["z_t"]), ("z_rst", vec!["z_rst"])],
            _ => vec![("h", vec!["h"])],
        }
    }

    /// Whether Figure 3 can be drawn (the method has a decoder of the latent).
    pub fn has_decoder(&self) -> bool {
        match self {
            Network::DaeGcn(m) => m.config().rec,
            Network::GuidedVae(_) => true,
            _ => false,
        }
    }

    /// Figure 3's panels after the input: `(title, blocks kept)`.
    pub fn figure3_panels(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let all: Vec<&'static str> = self.blocks().iter().map(|b| b.name).collect();
        let candidates: Vec<(&'static str, Vec<&'static str>)> = match self {
            Network::GuidedVae(_) => vec![("z", all), ("z_t", vec!["z_t"]), ("z_rst", vec!["z_rst"])],
            _ => {
                vec![("h", all), ("h_ma+h_mi", vec!["h_ma", "h_mi"]), ("h_i", vec!["h_i"]), ("h_ma", vec!["h_ma"]), ("h_mi", vec!["h_mi"])]
            }
        };
        candidates
            .into_iter()
            .filter(|(_, keep)| !keep.is_empty() && keep.iter().all(|b| self.blocks().iter().any(|bl| bl.name == *b)))
            .collect()
    }

    /// Decodes from the named blocks only, the others zeroed; `None` without a decoder.
    pub fn decode_from(&self, latent: &Tensor, keep: &[&str]) -> Result<Option<Tensor>> {
        match self {
            Network::DaeGcn(m) => m.decode_from(latent, keep),
            Network::GuidedVae(m) => Ok(Some(m.decode(&keep_blocks(m.blocks(), latent, keep)?, false)?)),
            _ => Ok(None),
        }
    }
}

/// Re-initialises every weight of `varmap` from `seed`: tensors of rank >= 2
/// get Kaiming-normal values (std sqrt(2 / fan_in)), biases zero; batch-norm
/// scales and running statistics keep their constant initial values. Names
/// are visited in sorted order, so the result depends on the seed alone.
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = dae_data::rng::Rng::new(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            continue;
        }
        if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let std = (2.0 / fan_in.max(1) as f64).sqrt();
            let v: Vec<f32> = (0..var.elem_count()).map(|_| (rng.normal() * std) as f32).collect();
            var.set(&Tensor::from_vec(v, dims.as_slice(), var.device())?.to_dtype(DType::F32)?)?;
        } else if name.ends_with("bias") {
            var.set(&var.zeros_like()?)?;
        }
    }
    Ok(())
}
