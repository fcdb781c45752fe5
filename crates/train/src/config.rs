//! The job configuration (`dae-train --config JOB.toml`): raw TOML with
//! unknown keys rejected, then checked before anything is loaded.

use std::path::Path;

use dae_data::batch::Augment;
use dae_data::{DatasetConfig, SplitSpec, Vocabulary};
use dae_model::ModelConfig;
use serde::{Deserialize, Serialize};

/// Weights of the loss terms: L = rec * L_rec + attr * L_attr + cls * L_cls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    pub rec: f64,
    pub attr: f64,
    pub cls: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { rec: 1.0, attr: 1.0, cls: 1.0 }
    }
}

/// Optimiser and schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Decoupled weight decay (0 = plain Adam, the default).
    pub weight_decay: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Stop after this many epochs without a better validation AUC (0 = never).
    pub patience: usize,
    /// Training augmentation; `augment = false` is written as an empty table with all switches off.
    pub augment: Augment,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self { lr: 1e-3, weight_decay: 0.0, batch_size: 32, epochs: 30, patience: 8, augment: Augment::default() }
    }
}

/// What to write besides the metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Number of fixed test samples drawn for the Figure 3 reconstructions.
    pub figure3_samples: usize,
    pub save_model: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { figure3_samples: 4, save_model: true }
    }
}

/// One training job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Seed of weights, shuffling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda` (device 0 of `CUDA_VISIBLE_DEVICES`) or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// The attributes the study uses (CBIS-DDSM names); default: the four
    /// classic shapes and five margins.
    #[serde(default)]
    pub vocabulary: Option<Vec<String>>,
    #[serde(default)]
    pub dataset: DatasetConfig,
    #[serde(default)]
    pub split: SplitSpec,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub loss: LossWeights,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub output: OutputConfig,
}

fn default_device() -> String {
    "cpu".into()
}

/// A configuration error, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigFileError {
    pub path: String,
    pub message: String,
}

impl JobConfig {
    /// Reads and checks a job file. TOML errors carry the line and column
    /// and, for unknown keys, the valid ones.
    pub fn load(path: &Path) -> Result<JobConfig, ConfigFileError> {
        let err = |message: String| ConfigFileError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let cfg: JobConfig = toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// The study's vocabulary.
    pub fn vocab(&self) -> Result<Vocabulary, String> {
        match &self.vocabulary {
            None => Ok(Vocabulary::default()),
            Some(names) => Vocabulary::from_names(names).map_err(|e| format!("vocabulary: {e}")),
        }
    }

    /// Checks values that TOML types cannot: ranges, sizes, combinations.
    pub fn validate(&self) -> Result<(), String> {
        self.vocab()?;
        self.model.validate(self.dataset.image_size()).map_err(|e| e.to_string())?;
        self.split.validate().map_err(|e| e.to_string())?;
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(format!("optim.lr: {} must be positive", o.lr));
        }
        if o.weight_decay < 0.0 {
            return Err(format!("optim.weight_decay: {} must be >= 0", o.weight_decay));
        }
        if o.batch_size < 2 {
            return Err(format!("optim.batch_size: {} must be at least 2 (batch norm needs two samples)", o.batch_size));
        }
        if o.epochs == 0 {
            return Err("optim.epochs: must be at least 1".into());
        }
        for (k, v) in [("loss.rec", self.loss.rec), ("loss.attr", self.loss.attr), ("loss.cls", self.loss.cls)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{k}: {v} must be a finite weight >= 0"));
            }
        }
        if !(self.device == "cpu" || self.device == "cuda" || self.device.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok()))
        {
            return Err(format!("device: `{}`; expected cpu, cuda or cuda:N", self.device));
        }
        Ok(())
    }
}

/// One job config as the sweep runner sees it: the canonical resolved TOML
/// (every default filled in, fixed key order) and the data's source
/// fingerprint ([`dae_data::DatasetConfig::source_fingerprint`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub config: String,
    pub data: String,
}

impl JobConfig {
    /// The canonical text of a checked config: what the run folder's
    /// `config.toml` holds and what a job id hashes.
    pub fn canonical(&self) -> String {
        toml::to_string(self).expect("a job config serialises to TOML")
    }
}

/// Parses, checks and resolves job configs given as TOML texts (the batch
/// form behind `dae-train --resolve`). The data fingerprint is computed once
/// per distinct data set and split.
pub fn resolve_batch(texts: &[String]) -> Vec<Result<Resolved, String>> {
    let mut fingerprints: std::collections::HashMap<String, Result<String, String>> = std::collections::HashMap::new();
    texts
        .iter()
        .map(|text| {
            let cfg: JobConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
            cfg.validate()?;
            let key = serde_json::to_string(&(&cfg.dataset, &cfg.split)).expect("serialises");
            let data = fingerprints
                .entry(key)
                .or_insert_with(|| cfg.dataset.source_fingerprint(&cfg.split).map_err(|e| format!("{:#}", anyhow::Error::new(e))))
                .clone()?;
            Ok(Resolved { config: cfg.canonical(), data })
        })
        .collect()
}
