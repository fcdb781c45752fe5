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
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderKind::SmallCnn,
            width: 16,
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
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model.{key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

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
        if self.encoder == EncoderKind::SmallCnn && self.width == 0 {
            return err("width", "0; the small CNN needs at least 1 channel".into());
        }
        if self.attributes == AttributeMode::Gcn && self.gcn_hidden == 0 {
            return err("gcn_hidden", "0, but attributes = \"gcn\" needs a hidden layer".into());
        }
        if !(32..=512).contains(&image_size) || image_size % 16 != 0 {
            return err("encoder", format!("input size {image_size}: expected a multiple of 16 in 32..=512 (e.g. 32, 64, 128, 224)"));
        }
        Ok(())
    }
}
