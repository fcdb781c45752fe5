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
//! ICADx, Li et al.) are in [`baselines`], on the same encoder and decoder.
//! Every method's network implements the [`Network`] trait, so the trainer
//! evaluates, probes and draws Figure 3 the same way for all. [`MethodSpec`]
//! is a method with its options, and checks a `[model]` table for it.
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
mod dae_gcn;
pub mod decoder;
pub mod encoder;
pub mod erase;
pub mod graph;
mod lanes;
pub mod network;
pub mod norm;
mod par;

use candle_core::{DType, Result, Tensor};
use candle_nn::VarMap;

pub use baselines::{DiagnosisHeads, GuidedVae, Icadx, LiDiagnet};
pub use config::{
    AttributeMode, ConfigError, EncoderKind, GuidedVaeConfig, IcadxConfig, LatentMode, LiDiagnetConfig, Method, MethodSpec, ModelConfig,
    NodeFeatures, Precision,
};
pub use dae_gcn::DaeGcn;
pub use network::{Block, Network, Outputs, ProbeGroup};

/// Errors building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model.attributes = \"{mode}\" needs attribute labels, but the data set has none in the study's vocabulary")]
    NoAttributes { mode: &'static str },
    #[error("method = \"{method}\" predicts the shape and margin attributes, but the data set has none in the study's vocabulary (methods that need none: guided-vae, li-diagnet, or dae-gcn with model.attributes = \"none\")")]
    MethodNeedsAttributes { method: &'static str },
    #[error("model.node_features: {0}")]
    Features(String),
    #[error("building the model")]
    Candle(#[from] candle_core::Error),
}

/// A stable 64-bit hash of a variable name (FNV-1a).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Re-initialises every weight of `varmap` from `seed`: tensors of rank >= 2
/// get Kaiming-normal values (std sqrt(2 / fan_in)), biases zero; batch-norm
/// scales and running statistics keep their constant initial values. Each
/// variable draws from its own stream, seeded by (seed, its name): the
/// parts two models share (the encoder trunk of every Table 2 row) start
/// from the same weights for one seed, whatever else the models hold
/// (common random numbers, so row differences are not initialisation noise).
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        let mut rng = dae_data::rng::Rng::new(dae_data::rng::derive_seed(seed, name_hash(name)));
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
