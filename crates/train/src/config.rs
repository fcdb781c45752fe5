//! The job configuration (`dae-train --config JOB.toml`): raw TOML with
//! unknown keys rejected, then checked before anything is loaded.

use std::path::Path;

use dae_data::batch::Augment;
use dae_data::{DatasetConfig, SplitSpec, Vocabulary};
use dae_model::{GuidedVaeConfig, IcadxConfig, LiDiagnetConfig, Method, MethodSpec, ModelConfig};
use serde::{Deserialize, Serialize};

/// Weights of the loss terms: L = rec * L_rec + attr * L_attr + cls * L_cls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    pub rec: f64,
    pub attr: f64,
    pub cls: f64,
}

impl LossWeights {
    pub const KEYS: [&'static str; 3] = ["rec", "attr", "cls"];
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
    /// `dae-gcn` (the default; its switches are in `[model]`), `guided-vae`,
    /// `icadx` or `li-diagnet` (options in the table of that name).
    #[serde(default, skip_serializing_if = "Method::is_default")]
    pub method: Method,
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
    /// Options of `method = "guided-vae"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_vae: Option<GuidedVaeConfig>,
    /// Options of `method = "icadx"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icadx: Option<IcadxConfig>,
    /// Options of `method = "li-diagnet"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub li_diagnet: Option<LiDiagnetConfig>,
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
        JobConfig::parse(&text).map_err(err)
    }

    /// Parses and checks a job config's text: TOML and type errors with
    /// their line, options of another method, then [`JobConfig::validate`].
    /// The chosen method's option table is filled with its defaults.
    pub fn parse(text: &str) -> Result<JobConfig, String> {
        let raw: toml::Table = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let mut cfg: JobConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        cfg.check_method_keys(&raw)?;
        match cfg.method {
            Method::DaeGcn => {}
            Method::GuidedVae => cfg.guided_vae = Some(cfg.guided_vae.take().unwrap_or_default()),
            Method::Icadx => cfg.icadx = Some(cfg.icadx.take().unwrap_or_default()),
            Method::LiDiagnet => cfg.li_diagnet = Some(cfg.li_diagnet.take().unwrap_or_default()),
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects options that belong to a method other than the job's: another
    /// method's table, or a `[model]` / `[loss]` key the method does not read.
    fn check_method_keys(&self, raw: &toml::Table) -> Result<(), String> {
        let m = self.method;
        let names = Method::ALL.map(|x| format!("\"{}\"", x.name())).join(", ");
        for other in Method::ALL {
            if other == m || other == Method::DaeGcn {
                continue;
            }
            if let Some(t) = raw.get(other.table()) {
                let key = t.as_table().and_then(|t| t.keys().next()).map(|k| format!("{}.{k}", other.table()));
                return Err(format!(
                    "{}: an option of method = \"{}\", but this job's method is \"{}\"; set method = \"{}\" or remove [{}] (methods: {names})",
                    key.unwrap_or_else(|| other.table().to_string()),
                    other.name(),
                    m.name(),
                    other.name(),
                    other.table()
                ));
            }
        }
        for (table, allowed) in [("model", m.model_keys()), ("loss", m.loss_keys())] {
            let Some(t) = raw.get(table).and_then(|t| t.as_table()) else { continue };
            for key in t.keys() {
                let shared = table == "model" && ModelConfig::SHARED_KEYS.contains(&key.as_str());
                if !allowed.contains(&key.as_str()) && !shared {
                    let owners: Vec<&str> = Method::ALL
                        .iter()
                        .filter(|x| if table == "model" { x.model_keys() } else { x.loss_keys() }.contains(&key.as_str()))
                        .map(|x| x.name())
                        .collect();
                    let reads = allowed.iter().map(|k| format!("{table}.{k}")).collect::<Vec<_>>().join(", ");
                    let own = if m == Method::DaeGcn { String::new() } else { format!(" and its own [{}] table", m.table()) };
                    return Err(format!(
                        "{table}.{key}: not an option of method = \"{}\" (it is read by {}); method \"{}\" reads {}{own}",
                        m.name(),
                        owners.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", "),
                        m.name(),
                        if reads.is_empty() { "nothing there".to_string() } else { reads },
                    ));
                }
            }
        }
        Ok(())
    }

    /// The method with its options (defaults where the table is absent).
    pub fn method_spec(&self) -> MethodSpec {
        match self.method {
            Method::DaeGcn => MethodSpec::DaeGcn,
            Method::GuidedVae => MethodSpec::GuidedVae(self.guided_vae.clone().unwrap_or_default()),
            Method::Icadx => MethodSpec::Icadx(self.icadx.clone().unwrap_or_default()),
            Method::LiDiagnet => MethodSpec::LiDiagnet(self.li_diagnet.clone().unwrap_or_default()),
        }
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
        self.method_spec().validate(&self.model, self.dataset.image_size()).map_err(|e| e.to_string())?;
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
    /// Keys the method does not read are left out, so a DAE-GCN setting
    /// cannot split one baseline job into several ids.
    pub fn canonical(&self) -> String {
        let mut t = toml::Table::try_from(self).expect("a job config serialises to TOML");
        for (table, keep) in [("model", self.method.model_keys()), ("loss", self.method.loss_keys())] {
            if let Some(sub) = t.get_mut(table).and_then(|v| v.as_table_mut()) {
                sub.retain(|k, _| keep.contains(&k.as_ref()));
                if sub.is_empty() {
                    t.remove(table);
                }
            }
        }
        toml::to_string(&t).expect("a job config serialises to TOML")
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
            let cfg = JobConfig::parse(text)?;
            let key = serde_json::to_string(&(&cfg.dataset, &cfg.split)).expect("serialises");
            let data = fingerprints
                .entry(key)
                .or_insert_with(|| cfg.dataset.source_fingerprint(&cfg.split).map_err(|e| format!("{:#}", anyhow::Error::new(e))))
                .clone()?;
            Ok(Resolved { config: cfg.canonical(), data })
        })
        .collect()
}
