//! The job configuration in two stages: [`JobConfig`], the raw TOML
//! (`dae-train --config JOB.toml`, unknown keys rejected), and [`Job`], the
//! checked and resolved job every later layer takes. A `Job` is made once,
//! by [`Job::parse`] or [`Job::new`]; nothing downstream checks it again.

use std::path::Path;

use dae_data::batch::Augment;
use dae_data::{DatasetConfig, SplitSpec, Vocabulary};
use dae_model::{EncoderKind, GuidedVaeConfig, IcadxConfig, LiDiagnetConfig, Method, MethodSpec, ModelConfig, Precision};
use dae_runfolder::settings::{set_path, SetArg};
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

/// The learning rate over the epochs (`optim.schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `optim.lr` throughout (after any warm-up).
    Constant,
    /// Cosine decay from `optim.lr` towards 0 over the epochs after the warm-up.
    Cosine,
}

/// Optimiser and schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Adam learning rate (the peak of the schedule).
    pub lr: f64,
    pub schedule: Schedule,
    /// Epochs of linear warm-up to `lr` before the schedule (0 = none).
    pub warmup_epochs: usize,
    /// Clip each optimiser's gradients to this global L2 norm (0 = off).
    pub clip_norm: f64,
    /// Decoupled weight decay (0 = plain Adam, the default).
    pub weight_decay: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Stop after this many epochs without a better validation AUC (0 = never).
    pub patience: usize,
    /// Training augmentation; `augment = false` is written as an empty table with all switches off.
    pub augment: Augment,
    /// The convolutions' arithmetic ([`Precision`]): `f32` (the default, left
    /// out of the written config so existing job ids stand) or `bf16` (GPUs).
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
            clip_norm: 0.0,
            weight_decay: 0.0,
            batch_size: 32,
            epochs: 30,
            patience: 8,
            augment: Augment::default(),
            precision: Precision::F32,
        }
    }
}

impl OptimConfig {
    /// The learning rate of epoch `epoch` (1-based): a linear warm-up to
    /// `lr` over `warmup_epochs`, then `lr` (constant) or a cosine decay
    /// over the remaining epochs (the last epoch keeps a small positive rate).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let w = self.warmup_epochs;
        if epoch <= w {
            return self.lr * epoch as f64 / w as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let rest = self.epochs.saturating_sub(w).max(1) as f64;
                let t = (epoch - w - 1) as f64 / rest;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
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

/// One training job as written (the raw stage).
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

/// Where a job trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// A CUDA device by its index among `CUDA_VISIBLE_DEVICES` (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Device {
    /// Parses `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Option<Device> {
        match s {
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
        }
    }
}

/// Why a job config was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JobError {
    /// TOML syntax or types, as the toml crate words it (with line and column).
    #[error("{0}")]
    Toml(String),
    /// TOML syntax or types at a dotted key: the key, its line in the text
    /// and the toml crate's words.
    #[error("{key} (line {line}): {problem}")]
    TomlAt { key: String, line: usize, problem: String },
    /// A value TOML types cannot rule out, at a dotted key.
    #[error("{key}: {problem}")]
    Key { key: String, problem: String },
}

impl JobError {
    fn key(key: impl Into<String>, problem: impl Into<String>) -> JobError {
        JobError::Key { key: key.into(), problem: problem.into() }
    }

    /// The dotted key at fault, where there is one.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            JobError::Key { key, .. } | JobError::TomlAt { key, .. } => Some(key),
            JobError::Toml(_) => None,
        }
    }

    /// What is wrong, without the key and line where the key is known.
    pub fn problem(&self) -> String {
        match self {
            JobError::Key { problem, .. } | JobError::TomlAt { problem, .. } => problem.clone(),
            JobError::Toml(_) => self.to_string(),
        }
    }
}

/// A TOML error, at the dotted key whose key or value holds the error's
/// position where the text has one.
fn toml_error(text: &str, e: toml::de::Error) -> JobError {
    match e.span().and_then(|s| key_at(text, s.start)) {
        Some((key, line)) => JobError::TomlAt { key, line, problem: e.message().trim_end().to_string() },
        None => JobError::Toml(e.to_string().trim_end().to_string()),
    }
}

/// The dotted key whose key or value contains byte `offset`, with the
/// 1-based line of the key (the innermost key where tables nest).
fn key_at(text: &str, offset: usize) -> Option<(String, usize)> {
    use toml::de::{DeTable, DeValue};
    fn walk(t: &DeTable<'_>, prefix: &str, offset: usize) -> Option<(String, usize)> {
        for (k, v) in t.iter() {
            let key = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
            if let DeValue::Table(sub) = v.get_ref() {
                if let Some(hit) = walk(sub, &key, offset) {
                    return Some(hit);
                }
            }
            if k.span().contains(&offset) || v.span().contains(&offset) {
                return Some((key, k.span().start));
            }
        }
        None
    }
    let doc = DeTable::parse(text).ok()?;
    let (key, start) = walk(doc.get_ref(), "", offset)?;
    Some((key, text[..start.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1))
}

/// A refused job file: the file and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct JobFileError {
    pub path: String,
    #[source]
    pub error: JobError,
}

/// The one command that builds a CUDA trainer (`cargo xtask reproduce
/// --gpus` runs it itself).
pub const CUDA_BUILD: &str =
    "build one with `cargo build --release -p dae-train --no-default-features --features cuda --target-dir target/cuda` \
     and pass `--trainer target/cuda/release/dae-train` (or let `cargo xtask reproduce --gpus 0` build it)";

/// A checked, resolved job: what the trainer runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub seed: u64,
    pub device: Device,
    /// The method with its options.
    pub method: MethodSpec,
    pub vocab: Vocabulary,
    pub dataset: DatasetConfig,
    pub split: SplitSpec,
    pub model: ModelConfig,
    pub loss: LossWeights,
    pub optim: OptimConfig,
    pub output: OutputConfig,
    /// The canonical text ([`Job::canonical`]).
    canonical: String,
}

impl Job {
    /// Reads and checks a job file.
    pub fn load(path: &Path) -> Result<Job, JobFileError> {
        Job::load_with(path, &[])
    }

    /// Reads a job file, applies `--set` overrides to it, and checks the
    /// result; an error at an overridden key names the override.
    pub fn load_with(path: &Path, set: &[SetArg]) -> Result<Job, JobFileError> {
        let err = |error: JobError| JobFileError { path: path.display().to_string(), error };
        let text = std::fs::read_to_string(path).map_err(|e| err(JobError::Toml(format!("cannot read: {e}"))))?;
        if set.is_empty() {
            return Job::parse(&text).map_err(err);
        }
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(toml_error(&text, e)))?;
        for a in set {
            set_path(&mut table, &a.key, a.value.clone());
        }
        let merged = toml::to_string(&table).map_err(|e| err(JobError::Toml(format!("cannot apply --set: {e}"))))?;
        Job::parse(&merged).map_err(|e| {
            let Some(key) = e.key_name().map(str::to_string) else { return err(e) };
            match set.iter().rev().find(|a| a.key == key) {
                Some(a) => JobFileError { path: format!("--set {}={}", a.key, a.value), error: JobError::key(key, e.problem()) },
                // A line of the merged text would mislead: the key alone.
                None => err(JobError::key(key, e.problem())),
            }
        })
    }

    /// Parses and checks a job config's text: TOML and type errors with
    /// their key and line, options of another method, then the values.
    pub fn parse(text: &str) -> Result<Job, JobError> {
        let toml_err = |e: toml::de::Error| toml_error(text, e);
        let raw: toml::Table = toml::from_str(text).map_err(toml_err)?;
        let cfg: JobConfig = toml::from_str(text).map_err(toml_err)?;
        check_method_keys(&cfg, &raw)?;
        Job::new(cfg)
    }

    /// Checks a raw config and resolves it (the method's option table filled
    /// with its defaults).
    pub fn new(cfg: JobConfig) -> Result<Job, JobError> {
        let device =
            Device::parse(&cfg.device).ok_or_else(|| JobError::key("device", format!("`{}`; expected cpu, cuda or cuda:N", cfg.device)))?;
        if matches!(device, Device::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(JobError::key(
                "device",
                format!("`{}` needs a trainer built with CUDA, and this one is not: {CUDA_BUILD}", cfg.device),
            ));
        }
        check_precision(cfg.optim.precision, &device, std::env::var_os(CPU_BF16).is_some_and(|v| v == "1"))?;
        let vocab = match &cfg.vocabulary {
            None => Vocabulary::default(),
            Some(names) => Vocabulary::from_names(names).map_err(|e| JobError::key("vocabulary", e))?,
        };
        let method = method_spec(&cfg);
        method.validate(&cfg.model, cfg.dataset.image_size()).map_err(|e| {
            let key = if e.key.contains('.') { e.key.to_string() } else { format!("model.{}", e.key) };
            JobError::key(key, e.problem)
        })?;
        cfg.split.validate().map_err(data_key)?;
        cfg.dataset.validate().map_err(|e| match data_key(e) {
            JobError::Key { key, problem } if !key.contains('.') => JobError::key(format!("dataset.{key}"), problem),
            other => other,
        })?;
        check_optim(&cfg.optim)?;
        check_loss(&cfg.loss)?;
        let canonical = canonical(&cfg, &method)?;
        // The job holds exactly what its canonical text says (keys the
        // method does not read take their defaults), so equal jobs are one job.
        let cfg: JobConfig =
            toml::from_str(&canonical).map_err(|e| JobError::Toml(format!("the canonical config does not parse back: {e}")))?;
        let JobConfig { seed, dataset, split, model, loss, optim, output, .. } = cfg;
        Ok(Job { seed, device, method, vocab, dataset, split, model, loss, optim, output, canonical })
    }

    /// The canonical text: every default filled in, in a fixed key order,
    /// with only the `[model]` and `[loss]` keys the method reads (so a
    /// DAE-GCN setting cannot split one baseline job into several ids). What
    /// the run folder's `config.toml` holds and what a job id hashes; it
    /// parses back to the same job.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The method's kind.
    pub fn method_kind(&self) -> Method {
        self.method.method()
    }
}

fn data_key(e: dae_data::DataError) -> JobError {
    match e {
        dae_data::DataError::Config { key, problem } => JobError::Key { key, problem },
        other => JobError::Toml(other.to_string()),
    }
}

/// The method with its options (defaults where the table is absent).
fn method_spec(cfg: &JobConfig) -> MethodSpec {
    match cfg.method {
        Method::DaeGcn => MethodSpec::DaeGcn,
        Method::GuidedVae => MethodSpec::GuidedVae(cfg.guided_vae.clone().unwrap_or_default()),
        Method::Icadx => MethodSpec::Icadx(cfg.icadx.clone().unwrap_or_default()),
        Method::LiDiagnet => MethodSpec::LiDiagnet(cfg.li_diagnet.clone().unwrap_or_default()),
    }
}

fn check_optim(o: &OptimConfig) -> Result<(), JobError> {
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return Err(JobError::key("optim.lr", format!("{} must be positive", o.lr)));
    }
    if o.weight_decay < 0.0 {
        return Err(JobError::key("optim.weight_decay", format!("{} must be >= 0", o.weight_decay)));
    }
    if o.batch_size < 2 {
        return Err(JobError::key("optim.batch_size", format!("{} must be at least 2 (batch norm needs two samples)", o.batch_size)));
    }
    if o.epochs == 0 {
        return Err(JobError::key("optim.epochs", "must be at least 1"));
    }
    if o.warmup_epochs >= o.epochs {
        let problem = format!("{}: the warm-up must be shorter than the run (optim.epochs = {})", o.warmup_epochs, o.epochs);
        return Err(JobError::key("optim.warmup_epochs", problem));
    }
    if !(o.clip_norm >= 0.0 && o.clip_norm.is_finite()) {
        return Err(JobError::key("optim.clip_norm", format!("{}: expected a norm > 0, or 0 for no clipping", o.clip_norm)));
    }
    Ok(())
}

/// The environment variable that lets `optim.precision = "bf16"` run on the CPU (as an emulation).
pub const CPU_BF16: &str = "DAE_CPU_BF16";

/// bf16 is a GPU mode: on the CPU it is an emulation, slower than f32, run
/// only when asked for by [`CPU_BF16`] (`allow_cpu`), to check a bf16
/// result without a GPU.
fn check_precision(p: Precision, device: &Device, allow_cpu: bool) -> Result<(), JobError> {
    if p == Precision::Bf16 && *device == Device::Cpu && !allow_cpu {
        let problem = "`bf16` runs on GPUs (`device = \"cuda\"`); on the CPU f32 is faster and bf16 only an emulation of its roundings \
                       (docs/precision.md). Use `f32`, or set DAE_CPU_BF16=1 to run the emulation anyway";
        return Err(JobError::key("optim.precision", problem));
    }
    Ok(())
}

fn check_loss(l: &LossWeights) -> Result<(), JobError> {
    for (k, v) in [("loss.rec", l.rec), ("loss.attr", l.attr), ("loss.cls", l.cls)] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(JobError::key(k, format!("{v} must be a finite weight >= 0")));
        }
    }
    Ok(())
}

/// The `[model]` keys of a baseline whose latent is z = [z_t, z_rst]
/// (Guided-VAE: z_t has the size of [h_ma, h_mi], z_rst that of h_i).
#[derive(Serialize)]
struct SplitLatentModel {
    encoder: EncoderKind,
    width: usize,
    h_ma_dim: usize,
    h_mi_dim: usize,
    h_i_dim: usize,
}

/// The `[model]` keys of a baseline with one feature h (ICADx, Li et al.).
#[derive(Serialize)]
struct FeatureModel {
    encoder: EncoderKind,
    width: usize,
    h_dim: usize,
}

#[derive(Serialize)]
struct RecLoss {
    rec: f64,
}

#[derive(Serialize)]
struct AttrClsLoss {
    attr: f64,
    cls: f64,
}

#[derive(Serialize)]
struct ClsLoss {
    cls: f64,
}

fn table(v: impl Serialize) -> toml::Table {
    toml::Table::try_from(v).expect("a config table serialises to TOML")
}

/// What of `[model]` a method reads, as a table.
fn model_view(method: Method, m: &ModelConfig) -> toml::Table {
    match method {
        Method::DaeGcn => table(m),
        Method::GuidedVae => {
            table(SplitLatentModel { encoder: m.encoder, width: m.width, h_ma_dim: m.h_ma_dim, h_mi_dim: m.h_mi_dim, h_i_dim: m.h_i_dim })
        }
        Method::Icadx | Method::LiDiagnet => table(FeatureModel { encoder: m.encoder, width: m.width, h_dim: m.h_dim }),
    }
}

/// What of `[loss]` a method reads, as a table.
fn loss_view(method: Method, l: &LossWeights) -> toml::Table {
    match method {
        Method::DaeGcn => table(l),
        Method::GuidedVae => table(RecLoss { rec: l.rec }),
        Method::Icadx => table(AttrClsLoss { attr: l.attr, cls: l.cls }),
        Method::LiDiagnet => table(ClsLoss { cls: l.cls }),
    }
}

/// The keys of `table` ("model" or "loss") that `method` reads.
fn keys_read(method: Method, table: &str) -> Vec<String> {
    let view = if table == "model" {
        model_view(method, &ModelConfig { h_i_erase: true, ..ModelConfig::default() })
    } else {
        loss_view(method, &LossWeights::default())
    };
    view.keys().cloned().collect()
}

/// `[model]` keys every method accepts (the encoder and the latent sizes,
/// so an experiment sets them once for all its rows): those some baseline reads.
fn shared_model_keys() -> Vec<String> {
    Method::ALL.iter().filter(|m| **m != Method::DaeGcn).flat_map(|m| keys_read(*m, "model")).collect()
}

/// The canonical text of a checked config ([`Job::canonical`]).
fn canonical(cfg: &JobConfig, method: &MethodSpec) -> Result<String, JobError> {
    let m = method.method();
    let mut t = table(cfg);
    t.insert("model".into(), toml::Value::Table(model_view(m, &cfg.model)));
    t.insert("loss".into(), toml::Value::Table(loss_view(m, &cfg.loss)));
    let own = match method {
        MethodSpec::DaeGcn => None,
        MethodSpec::GuidedVae(g) => Some(table(g)),
        MethodSpec::Icadx(c) => Some(table(c)),
        MethodSpec::LiDiagnet(c) => Some(table(c)),
    };
    if let Some(own) = own {
        t.insert(m.table().into(), toml::Value::Table(own));
    }
    toml::to_string(&t).map_err(|e| JobError::Toml(format!("cannot write the canonical config: {e}")))
}

/// Rejects options that belong to a method other than the job's: another
/// method's table, or a `[model]` / `[loss]` key the method does not read.
fn check_method_keys(cfg: &JobConfig, raw: &toml::Table) -> Result<(), JobError> {
    let m = cfg.method;
    let names = Method::ALL.map(|x| format!("\"{}\"", x.name())).join(", ");
    for other in Method::ALL.into_iter().filter(|o| *o != m && *o != Method::DaeGcn) {
        if let Some(t) = raw.get(other.table()) {
            let key = t.as_table().and_then(|t| t.keys().next()).map(|k| format!("{}.{k}", other.table()));
            let problem = format!(
                "an option of method = \"{}\", but this job's method is \"{}\"; set method = \"{}\" or remove [{}] (methods: {names})",
                other.name(),
                m.name(),
                other.name(),
                other.table()
            );
            return Err(JobError::key(key.unwrap_or_else(|| other.table().to_string()), problem));
        }
    }
    let shared = shared_model_keys();
    for table in ["model", "loss"] {
        let Some(t) = raw.get(table).and_then(|t| t.as_table()) else { continue };
        let allowed = keys_read(m, table);
        let stray = t.keys().find(|k| !allowed.contains(k) && !(table == "model" && shared.contains(k)));
        if let Some(key) = stray {
            return Err(JobError::key(format!("{table}.{key}"), not_read(m, table, key, &allowed)));
        }
    }
    Ok(())
}

/// The message for a `[model]` / `[loss]` key method `m` does not read.
fn not_read(m: Method, table: &str, key: &str, allowed: &[String]) -> String {
    let owners: Vec<String> =
        Method::ALL.iter().filter(|x| keys_read(**x, table).iter().any(|k| k == key)).map(|x| format!("\"{}\"", x.name())).collect();
    let reads = allowed.iter().map(|k| format!("{table}.{k}")).collect::<Vec<_>>().join(", ");
    let own = if m == Method::DaeGcn { String::new() } else { format!(" and its own [{}] table", m.table()) };
    format!(
        "not an option of method = \"{}\" (it is read by {}); method \"{}\" reads {}{own}",
        m.name(),
        owners.join(", "),
        m.name(),
        if reads.is_empty() { "nothing there".to_string() } else { reads },
    )
}

/// Parses, checks and resolves job configs given as TOML texts (the batch
/// form behind `dae-train --resolve`). The data fingerprint is computed once
/// per distinct data set and split.
pub fn resolve_batch(texts: &[String]) -> Vec<dae_runfolder::resolve::Answer> {
    use dae_runfolder::resolve::{Answer, Refusal, Resolved};
    let mut fingerprints: std::collections::HashMap<String, Result<String, String>> = std::collections::HashMap::new();
    let refuse = |key: Option<String>, message: String| Answer::Error(Refusal { key, message });
    texts
        .iter()
        .map(|text| {
            let job = match Job::parse(text) {
                Ok(j) => j,
                // `key: problem` (no line: the sweep generated this text and names its own lines).
                Err(e) => {
                    return refuse(
                        e.key_name().map(str::to_string),
                        e.key_name().map_or_else(|| e.to_string(), |k| format!("{k}: {}", e.problem())),
                    )
                }
            };
            let key = serde_json::to_string(&(&job.dataset, &job.split)).expect("serialises");
            let data = fingerprints
                .entry(key)
                .or_insert_with(|| job.dataset.source_fingerprint(&job.split).map_err(|e| format!("{:#}", anyhow::Error::new(e))))
                .clone();
            let gpu = match job.device {
                Device::Cpu => None,
                Device::Cuda(n) => Some(n),
            };
            match data {
                Ok(data) => Answer::Ok(Resolved { config: job.canonical().to_string(), data, gpu }),
                Err(e) => refuse(None, e),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_linearly_then_decays_as_a_cosine() {
        let o = OptimConfig { lr: 0.01, schedule: Schedule::Cosine, warmup_epochs: 2, epochs: 6, ..OptimConfig::default() };
        // Epochs 1-2: 0.01 * 1/2, 0.01 * 2/2; then 0.01 * (1 + cos(pi t)) / 2 with t = 0, 1/4, 2/4, 3/4.
        let want = [0.005, 0.01, 0.01, 0.0085355339, 0.005, 0.0014644661];
        for (e, w) in (1..=6).zip(want) {
            assert!((o.lr_at(e) - w).abs() < 1e-9, "epoch {e}: {} vs {w}", o.lr_at(e));
        }
        let c = OptimConfig { lr: 0.01, ..OptimConfig::default() };
        assert!((1..=30).all(|e| c.lr_at(e) == 0.01));
    }

    #[test]
    fn every_model_key_is_read_by_dae_gcn_and_the_shared_ones_by_some_baseline() {
        let all = keys_read(Method::DaeGcn, "model");
        assert!(all.contains(&"h_i_erase".to_string()) && all.contains(&"tau".to_string()));
        let shared = shared_model_keys();
        for k in ["encoder", "width", "h_dim", "h_ma_dim", "h_mi_dim", "h_i_dim"] {
            assert!(shared.contains(&k.to_string()), "{k}");
        }
        assert!(!shared.contains(&"tau".to_string()));
    }

    #[test]
    fn bf16_on_the_cpu_is_refused_unless_the_emulation_is_asked_for() {
        let e = check_precision(Precision::Bf16, &Device::Cpu, false).unwrap_err();
        assert_eq!(e.key_name(), Some("optim.precision"));
        assert!(e.to_string().contains("DAE_CPU_BF16=1") && e.to_string().contains("f32"), "{e}");
        assert!(check_precision(Precision::Bf16, &Device::Cpu, true).is_ok());
        assert!(check_precision(Precision::Bf16, &Device::Cuda(0), false).is_ok());
        assert!(check_precision(Precision::F32, &Device::Cpu, false).is_ok());
    }

    #[test]
    fn a_baselines_canonical_config_holds_only_what_it_reads_and_parses_back() {
        let job = Job::parse("method = \"li-diagnet\"\n[model]\nh_ma_dim = 3\n").unwrap();
        let t: toml::Table = toml::from_str(job.canonical()).unwrap();
        let model: Vec<&String> = t["model"].as_table().unwrap().keys().collect();
        assert_eq!(model, ["encoder", "width", "h_dim"]);
        assert_eq!(t["loss"].as_table().unwrap().keys().collect::<Vec<_>>(), ["cls"]);
        assert!(t.contains_key("li_diagnet"));
        assert_eq!(Job::parse(job.canonical()).unwrap(), job);
    }
}
