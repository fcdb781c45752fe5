//! The training loop and the run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dae_data::batch::{batches, BatchSpec, Normalize};
use dae_data::rng::derive_seed;
use dae_data::split::split_samples;
use dae_data::{csv_field, AttrStats, Dataset, Sample, Vocabulary};
use dae_model::{init_weights, Network};
use serde::Serialize;

use crate::checkpoint;
use crate::config::JobConfig;
use crate::methods::{Step, Trainer};

/// Why a run stopped without success.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("data: {0}")]
    Data(#[from] dae_data::DataError),
    #[error("training diverged at epoch {epoch}, batch {batch}: loss is {value} (lower the learning rate?)")]
    Diverged { epoch: usize, batch: usize, value: f32 },
    #[error("interrupted by a signal; the run is left marked incomplete")]
    Interrupted,
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor computation")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => crate::exit::BAD_CONFIG,
            RunError::Data(_) => crate::exit::DATA_ERROR,
            RunError::Diverged { .. } => crate::exit::DIVERGED,
            RunError::Interrupted => crate::exit::INTERRUPTED,
            _ => crate::exit::OTHER,
        }
    }
}

/// What a finished run measured (also written as `metrics.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    pub test_auc: f64,
    /// The method trained (`dae-gcn`, `guided-vae`, `icadx`, `li-diagnet`).
    pub method: String,
    pub val_auc: f64,
    /// DeLong 95% CI of the test AUC.
    pub test_auc_ci95: [f64; 2],
    /// Attribute accuracy per cluster on the test split, and `mean` over clusters.
    pub attr_acc: BTreeMap<String, f64>,
    /// Linear-probe test AUCs of frozen features: `ma_mi` ([h_ma, h_mi]), `h_i`, or `h`;
    /// the probe is fitted on the training split.
    pub probe_auc: BTreeMap<String, f64>,
    /// The same probes fitted and scored within the test split, 5-fold
    /// cross-validated with folds by patient (the paper's protocol: a classifier trained on
    /// test-time features). Unlike `probe_auc` it is not fitted on the data
    /// `model.h_i_erase` is fitted on.
    pub probe_auc_test_cv: BTreeMap<String, f64>,
    /// The same cross-validation with a nonlinear probe: an RBF-kernel SVM
    /// (C = 1, gamma = 1/d on standardised features; the paper's "SVM"
    /// does not name its kernel, and RBF is the usual default). What a
    /// linear erasure of h_i leaves, this may still read. Empty above
    /// 2,500 test samples (the kernel matrix grows with their square).
    pub probe_auc_test_cv_rbf: BTreeMap<String, f64>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// The epoch of the checkpoint this run resumed from (0: not resumed).
    pub resumed_from_epoch: usize,
    /// Over all attempts of a resumed run (without the unfinished epoch an
    /// interrupt threw away).
    pub wall_seconds: f64,
    pub train_samples_per_second: f64,
    pub peak_memory_mb: f64,
    pub device: String,
    pub code_version: String,
    pub status: String,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    pub data_fingerprint: String,
}

/// Writes `bytes` to `dir/name` atomically.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RunError> {
    dae_data::write_atomic(&dir.join(name), bytes).map_err(|e| match e {
        dae_data::DataError::Io { path, action, source } => RunError::Io { path, action, source },
        other => RunError::Io { path: dir.join(name), action: "cannot write", source: std::io::Error::other(other.to_string()) },
    })
}

/// Renames a finished temporary file onto its final name.
fn move_into_place(tmp: &Path, dest: &Path) -> Result<(), RunError> {
    std::fs::rename(tmp, dest).map_err(|source| RunError::Io { path: dest.into(), action: "cannot move into place", source })
}

fn device(spec: &str) -> Result<Device, RunError> {
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let idx = spec.strip_prefix("cuda:").map(|n| n.parse::<usize>().unwrap_or(0)).unwrap_or(0);
    if !candle_core::utils::cuda_is_available() {
        return Err(RunError::Config(format!(
            "device = \"{spec}\", but this dae-train was built without CUDA (build with --features cuda)"
        )));
    }
    Device::new_cuda(idx).map_err(|e| RunError::Config(format!("device = \"{spec}\": {e}")))
}

/// Peak resident memory of this process in MiB (VmHWM), 0 where unknown.
pub fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-z as f64).exp())
}

/// Model outputs over a split, in eval mode.
struct Eval {
    scores: Vec<f64>,
    labels: Vec<u8>,
    attr_scores: Vec<Vec<f32>>,
    attr_targets: Vec<Vec<f32>>,
    latents: Vec<Vec<f32>>,
    indices: Vec<usize>,
}

fn evaluate(model: &Network, samples: &[Sample], idx: &[usize], spec: &BatchSpec, dev: &Device) -> Result<Eval, RunError> {
    let mut e = Eval { scores: vec![], labels: vec![], attr_scores: vec![], attr_targets: vec![], latents: vec![], indices: vec![] };
    for b in batches(samples, idx, spec, dev)? {
        let b = b?;
        let out = model.evaluate(&b.images)?;
        e.scores.extend(out.logits.to_vec1::<f32>()?.into_iter().map(sigmoid));
        e.labels.extend(b.labels.to_vec1::<f32>()?.into_iter().map(|v| v as u8));
        if let Some(s) = out.attr_scores {
            e.attr_scores.extend(s.to_vec2::<f32>()?);
        }
        e.attr_targets.extend(b.attributes.to_vec2::<f32>()?);
        e.latents.extend(out.latent.to_vec2::<f32>()?);
        e.indices.extend(b.indices);
    }
    Ok(e)
}

fn auc_or_half(scores: &[f64], labels: &[u8]) -> f64 {
    dae_metrics::roc_auc(scores, labels).unwrap_or(0.5)
}

fn attr_accuracy(e: &Eval, vocab: &Vocabulary) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if e.attr_scores.is_empty() {
        return out;
    }
    let mut accs = Vec::new();
    for (c, r) in vocab.clusters() {
        if let Some(a) = dae_metrics::cluster_accuracy(&e.attr_scores, &e.attr_targets, r) {
            out.insert(c.name().to_string(), a);
            accs.push(a);
        }
    }
    if !accs.is_empty() {
        out.insert("mean".into(), accs.iter().sum::<f64>() / accs.len() as f64);
    }
    out
}

/// How [`train_with`] treats an earlier attempt, and when it stops.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Start from epoch 1 even where `out` holds a checkpoint of this job.
    pub fresh: bool,
    /// Stop as if interrupted right after this epoch's checkpoint is written
    /// (for tests; not a command-line option).
    pub interrupt_after_epoch: Option<usize>,
}

/// Trains the job and writes the run folder `out`, resuming from the
/// folder's checkpoint where it holds one of this job ([`crate::checkpoint`]).
/// `stop` is polled between batches (set by SIGINT/SIGTERM).
pub fn train(cfg: &JobConfig, out: &Path, stop: &AtomicBool) -> Result<RunOutcome, RunError> {
    train_with(cfg, out, stop, &TrainOptions::default())
}

/// [`train`] with options.
pub fn train_with(cfg: &JobConfig, out: &Path, stop: &AtomicBool, opts: &TrainOptions) -> Result<RunOutcome, RunError> {
    let t0 = Instant::now();
    // Hashed before anything slow: a rebuild while the data load runs must
    // not lend this process the new executable's identity.
    let binary = crate::binary_sha256();
    cfg.validate().map_err(RunError::Config)?;
    if out.join("done").exists() {
        return Err(RunError::Config(format!("{}: already holds a finished run (remove it or choose another --out)", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|source| RunError::Io { path: out.into(), action: "cannot create the output folder", source })?;
    let _ = std::fs::remove_file(out.join("failed"));
    write_file(out, "incomplete", b"")?;
    write_file(out, "config.toml", cfg.canonical().as_bytes())?;

    let vocab = cfg.vocab().map_err(RunError::Config)?;
    let dev = device(&cfg.device)?;
    let cache = std::env::var_os("DAE_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("datasets/cache"));
    let ds = Dataset::load(&cfg.dataset, &cfg.split, Some(&cache))?;
    let split = split_samples(&ds.samples, &cfg.split)?;
    for (name, ix) in [("train", &split.train), ("val", &split.val), ("test", &split.test)] {
        if ix.len() < 2 {
            return Err(RunError::Data(dae_data::DataError::Empty {
                what: format!("{} split", name),
                detail: format!("{} samples; the data set or split ratios are too small", ix.len()),
            }));
        }
    }
    let stats = AttrStats::from_samples(split.train.iter().map(|&i| &ds.samples[i]), &vocab);
    let norm = Normalize::fit(&ds.samples, &split.train)?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Network::new(&cfg.method_spec(), &cfg.model, cfg.dataset.image_size(), &vocab, &stats, vb).map_err(|e| match e {
        dae_model::ModelError::Candle(c) => RunError::Candle(c),
        other => RunError::Config(other.to_string()),
    })?;
    init_weights(&varmap, cfg.seed)?;
    let clusters: Vec<std::ops::Range<usize>> = vocab.clusters().into_iter().map(|(_, r)| r).collect();
    let mut trainer = Trainer::new(&model, &varmap, cfg, clusters)?;

    let eval_spec = BatchSpec {
        batch_size: cfg.optim.batch_size.max(64),
        vocab: &vocab,
        normalize: norm,
        shuffle_seed: None,
        augment: None,
        keep_last: true,
    };
    let extra = trainer.extra_columns();
    let mut history = String::from("epoch,loss,loss_cls,loss_attr,loss_rec,val_auc,val_attr_acc,lr,seconds");
    for c in extra {
        history.push(',');
        history.push_str(c);
    }
    history.push('\n');
    let (mut best_auc, mut best_epoch, mut best_snap) = (f64::NEG_INFINITY, 0, None);
    let mut epochs_run = 0;
    let (mut train_seen, mut train_secs) = (0usize, 0f64);
    let canonical = cfg.canonical();
    let (mut wall_before, mut training_done, mut resumed_from_epoch) = (0f64, false, 0usize);
    let ckpt_path = out.join(checkpoint::FILE);
    let ckpt_error =
        |reason: String| RunError::Config(format!("{}: {reason} (delete it, or pass --fresh, to start the run over)", ckpt_path.display()));
    checkpoint::clear_temporaries(out);
    let previous = if opts.fresh {
        // Removed, so that an interrupt before the first epoch ends cannot
        // bring the old state back at the next start.
        match std::fs::remove_file(&ckpt_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RunError::Io { path: ckpt_path.clone(), action: "cannot remove (--fresh)", source: e })
            }
            _ => None,
        }
    } else {
        checkpoint::load(out).map_err(|e| ckpt_error(e.reason))?
    };
    let data_fingerprint = ds.fingerprint();
    let other = |st: &checkpoint::CheckpointState| -> Option<&'static str> {
        if st.config != canonical {
            Some("another config")
        } else if st.data_fingerprint != data_fingerprint {
            Some("other data")
        } else if binary.is_none() {
            Some("unknown origin: this executable cannot be hashed")
        } else if st.binary_sha256.as_deref() != binary {
            Some("another dae-train executable")
        } else {
            None
        }
    };
    match previous.map(|c| (other(&c.state), c)) {
        Some((Some(what), c)) => {
            tracing::warn!(
                checkpoint = %ckpt_path.display(),
                made_by = %c.state.code_version,
                "the checkpoint is of {what}; starting from epoch 1"
            );
        }
        Some((None, c)) => {
            let tensors = c.tensors(&dev).map_err(|e| ckpt_error(e.reason))?;
            checkpoint::restore_vars(&varmap, &checkpoint::with_prefix(&tensors, "model"), "model").map_err(ckpt_error)?;
            let best = checkpoint::with_prefix(&tensors, "best");
            if !best.is_empty() {
                checkpoint::check_matches(&varmap, &best, "best").map_err(ckpt_error)?;
                best_snap = Some(best);
            }
            trainer.load_state(&c.state.trainer, &tensors).map_err(|e| ckpt_error(e.to_string()))?;
            let st = c.state;
            (best_auc, best_epoch, epochs_run, train_seen, train_secs) =
                (st.best_auc, st.best_epoch, st.epoch, st.train_seen, st.train_seconds);
            (wall_before, training_done, resumed_from_epoch, history) = (st.wall_seconds, st.training_done, st.epoch, st.history);
            write_file(out, "history.csv", history.as_bytes())?;
            tracing::info!(epoch = st.epoch, "resuming from the checkpoint");
        }
        None => {}
    }
    let first_epoch = if training_done { cfg.optim.epochs + 1 } else { epochs_run + 1 };
    for epoch in first_epoch..=cfg.optim.epochs {
        let te = Instant::now();
        let spec = BatchSpec {
            batch_size: cfg.optim.batch_size,
            shuffle_seed: Some(derive_seed(cfg.seed, epoch as u64)),
            augment: Some(&cfg.optim.augment),
            keep_last: false,
            ..eval_spec.clone()
        };
        let mut sums = [0f64; 4];
        let mut extra_sums = vec![0f64; extra.len()];
        let mut nb = 0usize;
        for (bi, b) in batches(&ds.samples, &split.train, &spec, &dev)?.enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(RunError::Interrupted);
            }
            let b = b?;
            let l = match trainer.step(&model, &b)? {
                Step::Done(l) => l,
                Step::NonFinite { term, value } => {
                    write_file(out, "failed", format!("diverged at epoch {epoch}, batch {}: {term} is {value}\n", bi + 1).as_bytes())?;
                    write_file(out, "history.csv", history.as_bytes())?;
                    // Resuming would diverge the same way.
                    let _ = std::fs::remove_file(&ckpt_path);
                    return Err(RunError::Diverged { epoch, batch: bi + 1, value });
                }
            };
            for (s, v) in sums.iter_mut().zip([l.total, l.cls, l.attr, l.rec]) {
                *s += v;
            }
            for (s, v) in extra_sums.iter_mut().zip(&l.extra) {
                *s += v;
            }
            nb += 1;
            train_seen += b.indices.len();
        }
        train_secs += te.elapsed().as_secs_f64();
        fit_eraser(&model, &ds.samples, &split.train, &eval_spec, &dev)?;
        let ev = evaluate(&model, &ds.samples, &split.val, &eval_spec, &dev)?;
        let val_auc = auc_or_half(&ev.scores, &ev.labels);
        let val_acc = attr_accuracy(&ev, &vocab).get("mean").copied();
        let n = nb.max(1) as f64;
        history.push_str(&format!(
            "{epoch},{:.6},{:.6},{:.6},{:.6},{val_auc:.6},{},{},{:.3}",
            sums[0] / n,
            sums[1] / n,
            sums[2] / n,
            sums[3] / n,
            val_acc.map(|a| format!("{a:.6}")).unwrap_or_default(),
            cfg.optim.lr,
            te.elapsed().as_secs_f64()
        ));
        for v in &extra_sums {
            history.push_str(&format!(",{:.6}", v / n));
        }
        history.push('\n');
        write_file(out, "history.csv", history.as_bytes())?;
        tracing::info!(epoch, loss = sums[0] / n, val_auc, "epoch done");
        epochs_run = epoch;
        if val_auc > best_auc {
            best_auc = val_auc;
            best_epoch = epoch;
            best_snap = Some(checkpoint::snapshot(&varmap)?);
        } else if cfg.optim.patience > 0 && epoch - best_epoch >= cfg.optim.patience {
            training_done = true;
        }
        training_done |= epoch == cfg.optim.epochs;
        let mut optim = BTreeMap::new();
        let trainer_state = trainer.save_state(&mut optim);
        let state = checkpoint::CheckpointState {
            format: checkpoint::FORMAT,
            code_version: crate::CODE_VERSION.to_string(),
            binary_sha256: binary.map(str::to_string),
            data_fingerprint: data_fingerprint.clone(),
            config: canonical.clone(),
            epoch,
            training_done,
            best_auc,
            best_epoch,
            train_seen,
            train_seconds: train_secs,
            wall_seconds: wall_before + t0.elapsed().as_secs_f64(),
            history: history.clone(),
            trainer: trainer_state,
        };
        let tc = Instant::now();
        match checkpoint::save(out, &state, &checkpoint::current(&varmap), best_snap.as_ref(), optim) {
            Ok(()) => tracing::debug!(epoch, seconds = tc.elapsed().as_secs_f64(), "checkpoint written"),
            // The previous checkpoint is still a valid place to resume from:
            // a full disk costs resumability, not the run.
            Err(e) => tracing::warn!(epoch, "cannot write the checkpoint, training goes on without it: {e}"),
        }
        if opts.interrupt_after_epoch == Some(epoch) {
            return Err(RunError::Interrupted);
        }
        if training_done {
            break;
        }
    }
    if let Some(s) = &best_snap {
        checkpoint::restore_vars(&varmap, s, "best").map_err(|e| RunError::Internal(format!("restoring the best epoch: {e}")))?;
    }

    // Test metrics from the selected epoch only.
    let test = evaluate(&model, &ds.samples, &split.test, &eval_spec, &dev)?;
    let test_auc = auc_or_half(&test.scores, &test.labels);
    let test_auc_ci95 = dae_metrics::delong_ci(&test.scores, &test.labels).map_or([0.0, 1.0], |c| [c.lo, c.hi]);
    let attr_acc = attr_accuracy(&test, &vocab);
    let probe = probes(&model, &ds.samples, &split.train, &test, &eval_spec, &dev)?;
    write_scores(out, &ds.samples, &test, &vocab)?;
    figure3(out, &model, &ds.samples, &test, &vocab, norm, cfg.output.figure3_samples, &dev)?;
    if cfg.output.save_model {
        let tmp = out.join(".model.safetensors.tmp");
        varmap.save(&tmp)?;
        move_into_place(&tmp, &out.join("model.safetensors"))?;
    }
    let outcome = RunOutcome {
        test_auc,
        method: cfg.method.name().to_string(),
        val_auc: best_auc,
        test_auc_ci95,
        attr_acc,
        probe_auc: probe.train_fit,
        probe_auc_test_cv: probe.test_cv,
        probe_auc_test_cv_rbf: probe.test_cv_rbf,
        best_epoch,
        epochs_run,
        resumed_from_epoch,
        wall_seconds: wall_before + t0.elapsed().as_secs_f64(),
        train_samples_per_second: train_seen as f64 / train_secs.max(1e-9),
        peak_memory_mb: peak_memory_mb(),
        device: cfg.device.clone(),
        code_version: crate::CODE_VERSION.to_string(),
        status: "done".into(),
        n_train: split.train.len(),
        n_val: split.val.len(),
        n_test: split.test.len(),
        data_fingerprint,
    };
    write_file(out, "metrics.json", serde_json::to_string_pretty(&outcome).expect("metrics serialise").as_bytes())?;
    write_file(out, "done", format!("{}\n", crate::CODE_VERSION).as_bytes())?;
    let _ = std::fs::remove_file(out.join("incomplete"));
    let _ = std::fs::remove_file(&ckpt_path);
    checkpoint::clear_temporaries(out);
    Ok(outcome)
}

/// Linear probes on frozen features: fitted on the training split and
/// scored on the test split, and cross-validated within the test split.
fn probes(
    model: &Network,
    samples: &[Sample],
    train_idx: &[usize],
    test: &Eval,
    spec: &BatchSpec,
    dev: &Device,
) -> Result<Probes, RunError> {
    let train = evaluate(model, samples, train_idx, spec, dev)?;
    let patients: Vec<&str> = test.indices.iter().map(|&i| samples[i].patient.as_str()).collect();
    let (mut out, mut cv, mut cv_rbf) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let with_rbf = test.labels.len() <= RBF_PROBE_MAX_ROWS;
    if !with_rbf {
        tracing::warn!(
            test_samples = test.labels.len(),
            "the RBF-SVM probe is left out above {RBF_PROBE_MAX_ROWS} test samples (its kernel matrix grows with their square)"
        );
    }
    let cols = |name: &[&str]| -> Vec<std::ops::Range<usize>> {
        model.blocks().iter().filter(|b| name.contains(&b.name)).map(|b| b.range.clone()).collect()
    };
    let groups: Vec<(&str, Vec<std::ops::Range<usize>>)> = model.probe_groups().into_iter().map(|(n, b)| (n, cols(&b))).collect();
    for (name, ranges) in groups {
        let pick = |rows: &[Vec<f32>]| -> Vec<Vec<f64>> {
            rows.iter().map(|r| ranges.iter().flat_map(|rg| r[rg.clone()].iter().map(|&v| v as f64)).collect()).collect()
        };
        let (xtr, xte) = (pick(&train.latents), pick(&test.latents));
        if let Some(s) = Probe::Linear.fit_score(&xtr, &train.labels, &xte.iter().collect::<Vec<_>>()) {
            out.insert(name.to_string(), auc_or_half(&s, &test.labels));
        }
        if let Some(a) = cross_validated_probe(&xte, &test.labels, &patients, PROBE_FOLDS, Probe::Linear) {
            cv.insert(name.to_string(), a);
        }
        if let Some(a) = with_rbf.then(|| cross_validated_probe(&xte, &test.labels, &patients, PROBE_FOLDS, Probe::Rbf)).flatten() {
            cv_rbf.insert(name.to_string(), a);
        }
    }
    Ok(Probes { train_fit: out, test_cv: cv, test_cv_rbf: cv_rbf })
}

/// The probes' AUCs per probe group (see [`RunOutcome`]).
struct Probes {
    train_fit: BTreeMap<String, f64>,
    test_cv: BTreeMap<String, f64>,
    test_cv_rbf: BTreeMap<String, f64>,
}

/// Which classifier a probe fits.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// L2 logistic regression (lambda 1e-2).
    Linear,
    /// RBF-kernel SVM, C = 1, gamma = 1/d on standardised features.
    Rbf,
}

impl Probe {
    /// Fits on `(x, y)` and returns the scores of `rows`.
    fn fit_score(self, x: &[Vec<f64>], y: &[u8], rows: &[&Vec<f64>]) -> Option<Vec<f64>> {
        match self {
            Probe::Linear => {
                let m = dae_metrics::LogisticRegression::fit(x, y, 1e-2).ok()?;
                Some(rows.iter().map(|r| m.predict(r)).collect())
            }
            Probe::Rbf => {
                let m = dae_metrics::RbfSvm::fit(x, y, 1.0).ok()?;
                if !m.converged() {
                    tracing::warn!(rows = x.len(), "the RBF-SVM probe stopped before its tolerance (10,000 passes)");
                }
                Some(rows.iter().map(|r| m.decision(r)).collect())
            }
        }
    }
}

const PROBE_FOLDS: usize = 5;
/// Above this many test samples `probe_auc_test_cv_rbf` is left out: each
/// fold's kernel SVM holds an n x n matrix (2,000 rows: ~11 s, 32 MB).
const RBF_PROBE_MAX_ROWS: usize = 2500;

/// AUC of out-of-fold `probe` scores, folds by patient (the
/// views of one patient never sit on both sides of a fit, as in the split):
/// patients, ordered by their number of malignant rows then first
/// appearance, are dealt round-robin into `folds` folds, so each fold gets
/// both classes in proportion; each fold is scored by a probe fitted on the
/// others (every fold then has patients of both kinds, so every training
/// part has both classes). `None` when a class has fewer patients than
/// folds, or a fit fails.
fn cross_validated_probe(x: &[Vec<f64>], y: &[u8], patients: &[&str], folds: usize, probe: Probe) -> Option<f64> {
    let mut first: Vec<&str> = Vec::new();
    let mut malignant: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (&p, &v) in patients.iter().zip(y) {
        if !malignant.contains_key(p) {
            first.push(p);
        }
        *malignant.entry(p).or_insert(0) += (v > 0) as usize;
    }
    let with = first.iter().filter(|p| malignant[*p] > 0).count();
    if with < folds || first.len() - with < folds {
        return None;
    }
    // A stable sort: within a count, patients keep their order of appearance.
    first.sort_by_key(|p| malignant[p]);
    let fold_of: std::collections::HashMap<&str, usize> = first.iter().enumerate().map(|(rank, &p)| (p, rank % folds)).collect();
    let fold: Vec<usize> = patients.iter().map(|p| fold_of[p]).collect();
    let mut scores = vec![0.0; y.len()];
    for f in 0..folds {
        let (xf, yf): (Vec<Vec<f64>>, Vec<u8>) = (0..y.len()).filter(|&i| fold[i] != f).map(|i| (x[i].clone(), y[i])).unzip();
        let held: Vec<usize> = (0..y.len()).filter(|&i| fold[i] == f).collect();
        let s = probe.fit_score(&xf, &yf, &held.iter().map(|&i| &x[i]).collect::<Vec<_>>())?;
        for (i, v) in held.into_iter().zip(s) {
            scores[i] = v;
        }
    }
    Some(auc_or_half(&scores, y))
}

/// Refits DAE-GCN's h_i eraser (`model.h_i_erase`) on the training split in
/// evaluation mode, unaugmented: the features validation, test and the
/// probes see. No-op for other models.
fn fit_eraser(model: &Network, samples: &[Sample], idx: &[usize], spec: &BatchSpec, dev: &Device) -> Result<(), RunError> {
    let Network::DaeGcn(m) = model else { return Ok(()) };
    if !m.has_eraser() {
        return Ok(());
    }
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for b in batches(samples, idx, spec, dev)? {
        let b = b?;
        if let Some(h) = m.h_i_before_erasure(&b.images, false)? {
            rows.extend(h.to_vec2::<f32>()?);
        }
        labels.extend(b.labels.to_vec1::<f32>()?.into_iter().map(|v| (v > 0.5) as u8));
    }
    if !m.fit_eraser(&rows, &labels)? {
        tracing::warn!("h_i_erase: the training split has one class only (or h_i has no variance); h_i is left as it is");
    }
    Ok(())
}

fn write_scores(out: &Path, samples: &[Sample], e: &Eval, vocab: &Vocabulary) -> Result<(), RunError> {
    let clusters = vocab.clusters();
    let mut text = String::from("sample_id,patient,label,score");
    for (c, _) in &clusters {
        text.push_str(&format!(",pred_{}", c.name()));
    }
    text.push('\n');
    for (k, &i) in e.indices.iter().enumerate() {
        let s = &samples[i];
        text.push_str(&format!("{},{},{},{:.8}", csv_field(&s.id), csv_field(&s.patient), e.labels[k], e.scores[k]));
        for (_, r) in &clusters {
            let pred = e.attr_scores.get(k).map(|row| {
                let best = r.clone().max_by(|&a, &b| row[a].total_cmp(&row[b])).expect("cluster not empty");
                vocab.attributes()[best].name()
            });
            text.push_str(&format!(",{}", pred.unwrap_or("")));
        }
        text.push('\n');
    }
    write_file(out, "scores.csv", text.as_bytes())
}

/// Figure 3: for a few fixed test samples, the input and its reconstructions
/// from h, [h_ma, h_mi], h_i, h_ma and h_mi (the other blocks zeroed).
#[allow(clippy::too_many_arguments)]
fn figure3(
    out: &Path,
    model: &Network,
    samples: &[Sample],
    test: &Eval,
    vocab: &Vocabulary,
    norm: Normalize,
    n: usize,
    dev: &Device,
) -> Result<(), RunError> {
    if n == 0 || !model.has_decoder() || test.indices.is_empty() {
        return Ok(());
    }
    // Fixed picks: evenly spaced through the test split in sample order.
    let mut order: Vec<usize> = (0..test.indices.len()).collect();
    order.sort_by_key(|&k| test.indices[k]);
    let picks: Vec<usize> = (0..n.min(order.len())).map(|j| order[j * order.len() / n.min(order.len())]).collect();
    let panels = model.figure3_panels();
    let mut meta = Vec::new();
    for &k in &picks {
        let s = &samples[test.indices[k]];
        let img = s.image.as_ref().expect("test samples have images");
        let (h, w) = (img.height, img.width);
        let x = Tensor::from_vec(img.data.iter().map(|v| (v - norm.mean) / norm.std).collect::<Vec<_>>(), (1, 1, h, w), dev)?;
        let latent = model.encode(&x, false)?;
        let mut tiles: Vec<Vec<f32>> = vec![img.data.clone()];
        let mut names = vec!["input"];
        for (name, keep) in &panels {
            if let Some(r) = model.decode_from(&latent, keep)? {
                let v: Vec<f32> = r.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|v| v * norm.std + norm.mean).collect();
                tiles.push(v);
                names.push(name);
            }
        }
        let mut buf = vec![0u8; h * w * tiles.len()];
        for (t, tile) in tiles.iter().enumerate() {
            for y in 0..h {
                for xx in 0..w {
                    buf[y * w * tiles.len() + t * w + xx] = (tile[y * w + xx].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        let name = format!("figure3-{}.png", s.id.replace(['/', '\\', ' '], "_"));
        let tmp = out.join(format!(".{name}.tmp"));
        image::GrayImage::from_raw((w * tiles.len()) as u32, h as u32, buf)
            .expect("buffer matches")
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| RunError::Io { path: tmp.clone(), action: "cannot write PNG", source: std::io::Error::other(e.to_string()) })?;
        move_into_place(&tmp, &out.join(&name))?;
        let predicted: Vec<&str> = test
            .attr_scores
            .get(k)
            .map(|row| {
                vocab
                    .clusters()
                    .into_iter()
                    .map(|(_, r)| vocab.attributes()[r.clone().max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap()].name())
                    .collect()
            })
            .unwrap_or_default();
        meta.push(serde_json::json!({
            "file": name, "sample_id": s.id, "label": s.label, "score": test.scores[k],
            "panels": names, "true_attributes": s.attributes.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "predicted_attributes": predicted,
        }));
    }
    write_file(out, "figure3.json", serde_json::to_string_pretty(&meta).expect("json").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 patients with two identical views each, a random label per patient
    /// and 40 features of pure patient identity: nothing generalises to a new
    /// patient. Folds by patient give about chance; folds that split a
    /// patient's views let the probe recognise the twin (checked: dealing by
    /// row instead gives an AUC near 1).
    #[test]
    fn cross_validated_probe_keeps_a_patients_views_in_one_fold() {
        let mut rng = dae_data::rng::Rng::new(11);
        let (mut x, mut y, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..60 {
            let f: Vec<f64> = (0..40).map(|_| rng.normal()).collect();
            let label = rng.bernoulli(0.4) as u8;
            for _ in 0..2 {
                x.push(f.clone());
                y.push(label);
                ids.push(format!("P{p}"));
            }
        }
        let patients: Vec<&str> = ids.iter().map(String::as_str).collect();
        let by_patient = cross_validated_probe(&x, &y, &patients, 5, Probe::Linear).unwrap();
        assert!((by_patient - 0.5).abs() < 0.2, "{by_patient}");
        let rows: Vec<String> = (0..y.len()).map(|i| format!("R{i}")).collect();
        let by_row = cross_validated_probe(&x, &y, &rows.iter().map(String::as_str).collect::<Vec<_>>(), 5, Probe::Linear).unwrap();
        assert!(by_row > 0.9, "{by_row}");
        // Too few patients of a class for five folds: no figure.
        assert_eq!(cross_validated_probe(&x[..8], &y[..8], &patients[..8], 5, Probe::Linear), None);
    }
}
