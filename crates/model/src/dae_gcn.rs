//! DAE-GCN and its ablation rows: one model whose four switches
//! (`disentangle`, `attributes`, `rec`, `h_i`) make the paper's Table 2.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use dae_data::{AttrStats, Vocabulary};

use crate::config::{AttributeMode, LatentMode, ModelConfig, Precision};
use crate::network::{keep_blocks, present_panels, Block, Network, Outputs, ProbeGroup};
use crate::{decoder, encoder, erase, graph, ModelError};

/// How the blocks come out of the encoder (`model.latent`).
#[derive(Debug)]
enum Latent {
    /// One linear projection of the pooled encoder features per block
    /// (variables `encoder.*`, `heads.<block>.*`).
    Projections { encoder: encoder::Encoder, heads: Vec<Linear> },
    /// One branch of the last encoder stage per block on a shared trunk
    /// (variables `encoder.*`, `encoder.branch.<block>.*`).
    Branches { trunk: encoder::Encoder, branches: Vec<encoder::Branch> },
}

impl Latent {
    fn new(cfg: &ModelConfig, sizes: &[(&'static str, usize)], precision: Precision, vb: &VarBuilder) -> Result<Latent> {
        let enc = vb.pp("encoder");
        match cfg.latent {
            LatentMode::Projections => {
                let encoder = encoder::Encoder::new(cfg.encoder, cfg.width, precision, enc)?;
                let heads = sizes.iter().map(|(n, d)| linear(encoder.out_dim(), *d, vb.pp(format!("heads.{n}")))).collect::<Result<_>>()?;
                Ok(Latent::Projections { encoder, heads })
            }
            LatentMode::Branches => {
                let trunk = encoder::Encoder::trunk(cfg.encoder, cfg.width, precision, enc.clone())?;
                let branches = sizes
                    .iter()
                    .map(|(n, d)| encoder::Branch::new(cfg.encoder, trunk.out_dim(), *d, enc.pp(format!("branch.{n}"))))
                    .collect::<Result<_>>()?;
                Ok(Latent::Branches { trunk, branches })
            }
        }
    }

    /// Every block of a batch, in order (before any erasure).
    fn blocks(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        match self {
            Latent::Projections { encoder, heads } => {
                let f = encoder.forward_t(x, train)?;
                heads.iter().map(|h| h.forward(&f)).collect()
            }
            Latent::Branches { trunk, branches } => {
                let map = trunk.forward_map(x, train)?;
                branches.iter().map(|b| b.forward_t(&map, train)).collect()
            }
        }
    }

    /// Block `k` of a batch (before any erasure).
    fn block(&self, x: &Tensor, train: bool, k: usize) -> Result<Tensor> {
        match self {
            Latent::Projections { encoder, heads } => heads[k].forward(&encoder.forward_t(x, train)?),
            Latent::Branches { trunk, branches } => branches[k].forward_t(&trunk.forward_map(x, train)?, train),
        }
    }
}

#[derive(Debug)]
enum AttrHead {
    None,
    Multitask(Linear),
    Gcn(graph::Gcn),
}

/// DAE-GCN and its ablations.
#[derive(Debug)]
pub struct DaeGcn {
    cfg: ModelConfig,
    latent: Latent,
    blocks: Vec<Block>,
    attr: AttrHead,
    classifier: Linear,
    decoder: Option<decoder::Decoder>,
    /// The attribute graph's edges and conditioning (`attributes = "gcn"`).
    graph: Option<graph::GraphSummary>,
    /// Linear label erasure on h_i (`h_i_erase`), and h_i's index among the blocks.
    eraser: Option<(usize, erase::LabelEraser)>,
}

impl DaeGcn {
    /// Builds the model from a config checked by [`crate::MethodSpec::validate`].
    /// `stats` are the training split's attribute counts (needed for
    /// `attributes = "gcn"`); `precision` is the encoder's and decoder's.
    pub fn new(
        cfg: &ModelConfig,
        image_size: usize,
        vocab: &Vocabulary,
        stats: &AttrStats,
        precision: Precision,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        if cfg.attributes != AttributeMode::None && stats.t.iter().all(|&t| t == 0) {
            return Err(ModelError::NoAttributes { mode: if cfg.attributes == AttributeMode::Gcn { "gcn" } else { "multitask" } });
        }
        let sizes: Vec<(&'static str, usize)> = if cfg.disentangle {
            let mut v = vec![("h_ma", cfg.h_ma_dim), ("h_mi", cfg.h_mi_dim)];
            if cfg.h_i {
                v.push(("h_i", cfg.h_i_dim));
            }
            v
        } else {
            vec![("h", cfg.h_dim)]
        };
        let latent = Latent::new(cfg, &sizes, precision, &vb)?;
        let mut blocks = Vec::new();
        let mut at = 0;
        for (name, d) in sizes {
            blocks.push(Block { name, range: at..at + d });
            at += d;
        }
        let att_dim = if cfg.disentangle { cfg.h_ma_dim } else { cfg.h_dim };
        let cls_dim = if cfg.disentangle { cfg.h_ma_dim + cfg.h_mi_dim } else { cfg.h_dim };
        let mut graph = None;
        let attr = match cfg.attributes {
            AttributeMode::None => AttrHead::None,
            AttributeMode::Multitask => AttrHead::Multitask(linear(att_dim, vocab.len(), vb.pp("attr.multitask"))?),
            AttributeMode::Gcn => {
                let adj = graph::adjacency(stats, cfg.tau, cfg.p);
                graph = Some(graph::summary(&adj));
                let feats = graph::node_features(vocab, cfg.node_features).map_err(ModelError::Features)?;
                AttrHead::Gcn(graph::Gcn::new(&adj, &feats, cfg.gcn_hidden, att_dim, vb.pp("attr.gcn"))?)
            }
        };
        let classifier = linear(cls_dim, 1, vb.pp("classifier"))?;
        let base = decoder::base_width(cfg);
        let decoder = if cfg.rec { Some(decoder::Decoder::new(at, base, image_size, precision, vb.pp("decoder"))?) } else { None };
        let eraser = match blocks.iter().position(|b| b.name == "h_i") {
            Some(k) if cfg.h_i_erase => Some((k, erase::LabelEraser::new(cfg.h_i_dim, vb.pp("eraser.h_i"))?)),
            _ => None,
        };
        Ok(Self { cfg: cfg.clone(), latent, blocks, attr, classifier, decoder, graph, eraser })
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
        let mut parts = self.latent.blocks(x, train)?;
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
            Some((k, _)) => Ok(Some(self.latent.block(x, train, *k)?)),
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

impl Network for DaeGcn {
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        DaeGcn::encode(self, x, train)
    }

    fn evaluate(&self, x: &Tensor) -> Result<Outputs> {
        self.forward_heads(x, false)
    }

    /// `ma_mi` and `h_i`, or `h` without separate blocks.
    fn probe_groups(&self) -> Vec<ProbeGroup> {
        if !self.cfg.disentangle {
            return vec![("h", vec!["h"])];
        }
        let mut g = vec![("ma_mi", vec!["h_ma", "h_mi"])];
        if self.cfg.h_i {
            g.push(("h_i", vec!["h_i"]));
        }
        g
    }

    fn figure3_panels(&self) -> Vec<ProbeGroup> {
        if !self.cfg.rec {
            return Vec::new();
        }
        let all: Vec<&'static str> = self.blocks.iter().map(|b| b.name).collect();
        let candidates =
            vec![("h", all), ("h_ma+h_mi", vec!["h_ma", "h_mi"]), ("h_i", vec!["h_i"]), ("h_ma", vec!["h_ma"]), ("h_mi", vec!["h_mi"])];
        present_panels(&self.blocks, candidates)
    }

    fn decode_from(&self, latent: &Tensor, keep: &[&str]) -> Result<Option<Tensor>> {
        DaeGcn::decode_from(self, latent, keep)
    }

    fn graph(&self) -> Option<&graph::GraphSummary> {
        self.graph.as_ref()
    }
}
