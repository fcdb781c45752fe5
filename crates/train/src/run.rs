//! The training loop: one job, one run folder.
//!
//! [`train_with`] opens the folder, loads the data, builds the method,
//! resumes from the folder's checkpoint where it holds one of this job, runs
//! the remaining epochs and writes the artefacts. A [`Session`] carries
//! what every step of that reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use candle_nn::VarMap;
use dae_data::batch::{batches, BatchSpec};
use dae_data::rng::derive_seed;
use dae_runfolder::{ExitCode, Metrics, RunFolder};

use crate::artefacts::{self, write_file};
use crate::checkpoint;
use crate::data::RunData;
use crate::evaluate::evaluate;
use crate::job::Job;
use crate::methods::{Step, StepLosses, Trainer};
use crate::progress::{EpochRecord, EpochRow, History, Identity, Progress};

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
    #[error("{}: {action}", path.display())]
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
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_) => ExitCode::BadConfig,
            RunError::Data(_) => ExitCode::DataError,
            RunError::Diverged { .. } => ExitCode::Diverged,
            RunError::Interrupted => ExitCode::Interrupted,
            _ => ExitCode::Other,
        }
    }
}

impl From<dae_model::ModelError> for RunError {
    fn from(e: dae_model::ModelError) -> Self {
        match e {
            dae_model::ModelError::Candle(c) => RunError::Candle(c),
            other => RunError::Config(other.to_string()),
        }
    }
}

/// How [`train_with`] treats an earlier attempt, where it caches data, and
/// when it stops.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Start from epoch 1 even where `out` holds a checkpoint of this job.
    pub fresh: bool,
    /// Stop as if interrupted right after this epoch's checkpoint is written
    /// (for tests; not a command-line option).
    pub interrupt_after_epoch: Option<usize>,
    /// Where synthetic data sets are cached.
    pub cache_dir: PathBuf,
}

impl TrainOptions {
    /// The defaults, with the cache in `$DAE_CACHE` where set, else
    /// `datasets/cache` under the working folder.
    pub fn from_env() -> TrainOptions {
        let cache_dir = std::env::var_os("DAE_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("datasets/cache"));
        TrainOptions { fresh: false, interrupt_after_epoch: None, cache_dir }
    }
}

/// Trains the job and writes the run folder `out`, resuming from the
/// folder's checkpoint where it holds one of this job ([`crate::checkpoint`]).
/// `stop` is polled between batches (set by SIGINT/SIGTERM).
pub fn train(job: &Job, out: &Path, stop: &AtomicBool) -> Result<Metrics, RunError> {
    train_with(job, out, stop, &TrainOptions::from_env())
}

/// [`train`] with options.
pub fn train_with(job: &Job, out: &Path, stop: &AtomicBool, opts: &TrainOptions) -> Result<Metrics, RunError> {
    let t0 = Instant::now();
    // Hashed before anything slow: a rebuild while the data load runs must
    // not lend this process the new executable's identity.
    let binary = crate::binary_sha256();
    let run = RunFolder::at(out);
    open_folder(&run, job)?;
    let data = RunData::load(job, &opts.cache_dir)?;
    let varmap = VarMap::new();
    let trainer = Trainer::new(job, &data, &varmap)?;
    let id = Identity {
        code_version: crate::CODE_VERSION.to_string(),
        binary_sha256: binary.map(str::to_string),
        data_fingerprint: data.fingerprint.clone(),
        config: job.canonical().to_string(),
    };
    let mut s = Session::resume_or_start(job, run, data, varmap, trainer, id, opts)?;
    while let Some(epoch) = s.progress.next_epoch(job.optim.epochs) {
        s.epoch(epoch, stop, t0)?;
        if opts.interrupt_after_epoch == Some(epoch) {
            return Err(RunError::Interrupted);
        }
    }
    s.finish(t0)
}

/// Refuses a finished run, marks the folder incomplete and writes the
/// resolved config before anything else.
fn open_folder(run: &RunFolder, job: &Job) -> Result<(), RunError> {
    if run.is_done() {
        return Err(RunError::Config(format!("{}: already holds a finished run (remove it or choose another --out)", run.path.display())));
    }
    std::fs::create_dir_all(&run.path).map_err(|source| RunError::Io {
        path: run.path.clone(),
        action: "cannot create the output folder",
        source,
    })?;
    let _ = std::fs::remove_file(run.failed());
    write_file(&run.incomplete(), b"")?;
    write_file(&run.config(), job.canonical().as_bytes())
}

/// A run in progress.
struct Session<'a> {
    job: &'a Job,
    run: RunFolder,
    data: RunData,
    varmap: VarMap,
    trainer: Trainer,
    progress: Progress,
    /// The variables of the best validation epoch so far.
    best: Option<BTreeMap<String, Tensor>>,
    /// Wall seconds of earlier attempts.
    wall_before: f64,
    /// The epoch of the checkpoint this attempt resumed from (0: none).
    resumed_from: usize,
}

impl<'a> Session<'a> {
    /// A fresh start, or the state of the folder's checkpoint where it is of
    /// this job (a checkpoint of anything else is set aside with a warning).
    fn resume_or_start(
        job: &'a Job,
        run: RunFolder,
        data: RunData,
        varmap: VarMap,
        mut trainer: Trainer,
        id: Identity,
        opts: &TrainOptions,
    ) -> Result<Session<'a>, RunError> {
        run.clear_temporaries();
        let history = History::new(trainer.extra_columns());
        let progress = Progress::start(id, history, trainer.save_state(&mut BTreeMap::new()));
        let mut s = Session { job, run, data, varmap, trainer, progress, best: None, wall_before: 0.0, resumed_from: 0 };
        let ckpt = s.run.checkpoint();
        if opts.fresh {
            // Removed, so that an interrupt before the first epoch ends
            // cannot bring the old state back at the next start.
            match std::fs::remove_file(&ckpt) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RunError::Io { path: ckpt, action: "cannot remove (--fresh)", source: e })
                }
                _ => return Ok(s),
            }
        }
        let ckpt_error =
            |reason: String| RunError::Config(format!("{}: {reason} (delete it, or pass --fresh, to start the run over)", ckpt.display()));
        let Some(c) = checkpoint::load(&ckpt).map_err(|e| ckpt_error(e.reason))? else { return Ok(s) };
        let id = Identity {
            code_version: s.progress.code_version.clone(),
            binary_sha256: s.progress.binary_sha256.clone(),
            data_fingerprint: s.progress.data_fingerprint.clone(),
            config: s.progress.config.clone(),
        };
        if let Some(what) = c.state.mismatch(&id) {
            tracing::warn!(checkpoint = %ckpt.display(), made_by = %c.state.code_version, "the checkpoint is of {what}; starting from epoch 1");
            return Ok(s);
        }
        let tensors = c.tensors(&s.data.dev).map_err(|e| ckpt_error(e.reason))?;
        checkpoint::restore_vars(&s.varmap, &checkpoint::with_prefix(&tensors, "model"), "model").map_err(ckpt_error)?;
        let best = checkpoint::with_prefix(&tensors, "best");
        if !best.is_empty() {
            checkpoint::check_matches(&s.varmap, &best, "best").map_err(ckpt_error)?;
            s.best = Some(best);
        }
        s.trainer.load_state(&c.state.trainer, &tensors).map_err(|e| ckpt_error(e.to_string()))?;
        s.progress = c.state;
        s.wall_before = s.progress.wall_seconds;
        s.resumed_from = s.progress.epoch;
        write_file(&s.run.history(), s.progress.history.as_bytes())?;
        tracing::info!(epoch = s.progress.epoch, "resuming from the checkpoint");
        Ok(s)
    }

    /// Trains one epoch, validates, books it and writes the checkpoint.
    fn epoch(&mut self, epoch: usize, stop: &AtomicBool, t0: Instant) -> Result<(), RunError> {
        let te = Instant::now();
        let lr = self.job.optim.lr_at(epoch);
        self.trainer.set_lr(lr);
        let losses = self.train_epoch(epoch, stop)?;
        self.progress.train_seconds += te.elapsed().as_secs_f64();
        self.trainer.after_epoch(&self.data)?;
        let val = evaluate(self.trainer.network(), &self.data, &self.data.split.val)?;
        let val_auc = val.auc();
        let val_attr_acc = val.attr_accuracy(&self.data.vocab).get("mean").copied();
        let seconds = te.elapsed().as_secs_f64();
        self.progress.history.push(&EpochRow { epoch, losses: &losses, val_auc, val_attr_acc, lr, seconds });
        write_file(&self.run.history(), self.progress.history.as_bytes())?;
        self.write_tfevents(epoch);
        tracing::info!(epoch, loss = losses.total, val_auc, "epoch done");
        let o = &self.job.optim;
        if self.progress.finish_epoch(epoch, val_auc, o.patience, o.epochs) {
            self.best = Some(checkpoint::snapshot(&self.varmap)?);
        }
        self.progress.wall_seconds = self.wall_before + t0.elapsed().as_secs_f64();
        let saved = self.save_checkpoint(epoch);
        let record = self.progress.record(o.epochs, Some(&EpochRecord { loss: losses.total, val_auc, seconds }), saved);
        write_file(&self.run.progress(), serde_json::to_string_pretty(&record).expect("serialises").as_bytes())
    }

    /// The TensorBoard scalars: the whole history at the first epoch of an
    /// attempt (a resumed run drops what its last attempt wrote after the
    /// checkpoint), then one appended epoch. A convenience: a failure warns.
    fn write_tfevents(&self, epoch: usize) {
        let (path, history) = (self.run.tfevents(), self.progress.history.as_str());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let written = if epoch == self.resumed_from + 1 {
            dae_runfolder::write_atomic(&path, &crate::tfevents::from_history(history, now))
        } else {
            use std::io::Write;
            std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(&crate::tfevents::last_epoch(history, now)))
        };
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// The training steps of one epoch; returns the mean losses.
    fn train_epoch(&mut self, epoch: usize, stop: &AtomicBool) -> Result<StepLosses, RunError> {
        let o = &self.job.optim;
        let spec = BatchSpec {
            batch_size: o.batch_size,
            shuffle_seed: Some(derive_seed(self.job.seed, epoch as u64)),
            augment: Some(&o.augment),
            keep_last: false,
            ..self.data.eval_spec()
        };
        let (mut sums, mut n) = (StepLosses::default(), 0usize);
        for (bi, b) in batches(&self.data.samples, &self.data.split.train, &spec, &self.data.dev)?.enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(RunError::Interrupted);
            }
            let b = b?;
            match self.trainer.step(&b)? {
                Step::Done(l) => sums.add(&l),
                Step::NonFinite { term, value } => return Err(self.diverged(epoch, bi + 1, term, value)),
            }
            n += 1;
            self.progress.train_seen += b.indices.len();
        }
        Ok(sums.mean(n))
    }

    /// Records a divergence: the `failed` marker, the history so far, and no
    /// checkpoint (resuming would diverge the same way).
    fn diverged(&self, epoch: usize, batch: usize, term: &str, value: f32) -> RunError {
        let why = format!("diverged at epoch {epoch}, batch {batch}: {term} is {value}\n");
        if let Err(e) =
            write_file(&self.run.failed(), why.as_bytes()).and_then(|()| write_file(&self.run.history(), self.progress.history.as_bytes()))
        {
            return e;
        }
        let _ = std::fs::remove_file(self.run.checkpoint());
        RunError::Diverged { epoch, batch, value }
    }

    /// Writes the checkpoint; a failure only warns (the previous checkpoint
    /// is still a valid place to resume from: a full disk costs
    /// resumability, not the run). Returns whether it was written.
    fn save_checkpoint(&mut self, epoch: usize) -> bool {
        let mut optim = BTreeMap::new();
        self.progress.trainer = self.trainer.save_state(&mut optim);
        let tensors = checkpoint::Tensors { model: checkpoint::current(&self.varmap), best: self.best.as_ref(), optim };
        let tc = Instant::now();
        match checkpoint::save(&self.run.checkpoint(), &self.progress, tensors) {
            Ok(()) => {
                tracing::debug!(epoch, seconds = tc.elapsed().as_secs_f64(), "checkpoint written");
                true
            }
            Err(e) => {
                tracing::warn!(epoch, "cannot write the checkpoint, training goes on without it: {e}");
                false
            }
        }
    }

    /// Test metrics from the selected epoch only, the artefacts, and `done` last.
    fn finish(self, t0: Instant) -> Result<Metrics, RunError> {
        if let Some(s) = &self.best {
            checkpoint::restore_vars(&self.varmap, s, "best").map_err(|e| RunError::Internal(format!("restoring the best epoch: {e}")))?;
        }
        let (net, data, run) = (self.trainer.network(), &self.data, &self.run);
        let test = evaluate(net, data, &data.split.test)?;
        let probes = crate::probes::probes(net, data, &test)?;
        artefacts::write_scores(run, data, &test)?;
        artefacts::figure3(run, net, data, &test, self.job.output.figure3_samples)?;
        if self.job.output.save_model {
            artefacts::save_model(run, &self.varmap)?;
        }
        let p = &self.progress;
        let metrics = Metrics {
            test_auc: test.auc(),
            method: self.job.method_kind().name().to_string(),
            val_auc: p.best_auc,
            test_auc_ci95: dae_metrics::delong_ci(&test.scores, &test.labels).map_or([0.0, 1.0], |c| [c.lo, c.hi]),
            attr_acc: test.attr_accuracy(&data.vocab),
            probe_auc: probes.train_fit,
            probe_auc_test_cv: probes.test_cv,
            probe_auc_test_cv_rbf: probes.test_cv_rbf,
            best_epoch: p.best_epoch,
            epochs_run: p.epoch,
            resumed_from_epoch: self.resumed_from,
            wall_seconds: self.wall_before + t0.elapsed().as_secs_f64(),
            train_samples_per_second: p.train_seen as f64 / p.train_seconds.max(1e-9),
            peak_memory_mb: crate::peak_memory_mb(),
            device: self.job.device.to_string(),
            code_version: crate::CODE_VERSION.to_string(),
            status: "done".into(),
            n_train: data.split.train.len(),
            n_val: data.split.val.len(),
            n_test: data.split.test.len(),
            data_fingerprint: data.fingerprint.clone(),
            skipped: data.skipped.clone(),
            graph: net.graph().map(|g| dae_runfolder::GraphRecord {
                edges: g
                    .edges
                    .iter()
                    .map(|&(i, j)| [data.vocab.attributes()[i].name().into(), data.vocab.attributes()[j].name().into()])
                    .collect(),
                condition: g.condition,
            }),
            machine: crate::machine::this_machine(&self.job.device),
        };
        write_file(&run.metrics(), serde_json::to_string_pretty(&metrics).expect("metrics serialise").as_bytes())?;
        let sealed = dae_runfolder::DoneRecord::seal(run, crate::CODE_VERSION).map_err(|source| RunError::Io {
            path: run.path.clone(),
            action: "cannot seal the artefacts of",
            source,
        })?;
        write_file(&run.done(), serde_json::to_string_pretty(&sealed).expect("done record serialises").as_bytes())?;
        let _ = std::fs::remove_file(run.incomplete());
        let _ = std::fs::remove_file(run.checkpoint());
        run.clear_temporaries();
        Ok(metrics)
    }
}
