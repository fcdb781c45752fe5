//! Run folders (`<results>/runs/<id>/`) as the runner sees them: status,
//! per-job locks, atomic writes, the runner's own files.
//!
//! Files the runner writes: `job.toml` (the resolved config, before launch),
//! `log.txt` (the job's stdout and stderr, appended per attempt), `exit.json`
//! (how the last attempt ended, written atomically when it ends) and `.lock`
//! (held with `flock` while a runner or its job works on the folder). The
//! trainer writes the rest, `incomplete` first and `done` last.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, SweepError};

/// The status of one job's run folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Never started.
    Pending,
    /// A runner (or its job) holds the folder's lock now.
    Running,
    /// Started and never finished (killed, interrupted, or still running
    /// under a runner that did not take the lock, e.g. a Slurm task).
    Incomplete,
    Done,
    /// Done by another code version.
    Stale {
        code_version: String,
    },
    /// The last attempt failed.
    Failed {
        exit: Option<i32>,
        signal: Option<i32>,
    },
}

impl Status {
    /// One lowercase word (`done`, `failed`, ...), as `plan --json` prints it.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Incomplete => "incomplete",
            Status::Done => "done",
            Status::Stale { .. } => "stale",
            Status::Failed { .. } => "failed",
        }
    }
}

/// How an attempt ended, as `exit.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub attempt: u32,
    pub backend: String,
    pub seconds: f64,
}

/// The trainer's exit code for a config it refuses.
pub const EXIT_BAD_CONFIG: i32 = 2;
/// The trainer's exit code for a run whose loss became NaN or infinite.
pub const EXIT_DIVERGED: i32 = 4;
/// The trainer's exit code for "interrupted; the run stays incomplete".
pub const EXIT_INTERRUPTED: i32 = 5;

/// A job's run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(results: &Path, id: &str) -> RunDir {
        RunDir { path: results.join("runs").join(id) }
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log.txt")
    }
    pub fn job_toml(&self) -> PathBuf {
        self.path.join("job.toml")
    }
    pub fn exit_json(&self) -> PathBuf {
        self.path.join("exit.json")
    }

    /// Reads the status without taking the lock for long. `code_version` is
    /// the current trainer's; a done run by another version is stale.
    pub fn status(&self, code_version: &str) -> Status {
        if !self.path.is_dir() {
            return Status::Pending;
        }
        if self.is_locked() {
            return Status::Running;
        }
        self.status_unlocked(code_version)
    }

    /// The status from the files alone (the caller holds the lock or does
    /// not care whether someone is working on the folder).
    pub fn status_unlocked(&self, code_version: &str) -> Status {
        if self.path.join("done").exists() {
            let version = std::fs::read_to_string(self.path.join("metrics.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("code_version").and_then(|c| c.as_str()).map(str::to_string));
            return match version {
                Some(v) if !code_version.is_empty() && v != code_version => Status::Stale { code_version: v },
                _ => Status::Done,
            };
        }
        if let Some(rec) = self.exit_record() {
            let interrupted = rec.exit_code == Some(EXIT_INTERRUPTED);
            if !interrupted && rec.exit_code != Some(0) {
                return Status::Failed { exit: rec.exit_code, signal: rec.signal };
            }
            if rec.exit_code == Some(0) {
                // Exited 0 without the done marker: a broken job, not a finished one.
                return Status::Failed { exit: Some(0), signal: None };
            }
        }
        if self.path.join("incomplete").exists() || self.job_toml().exists() {
            return Status::Incomplete;
        }
        Status::Pending
    }

    /// The epoch and code version of the trainer's checkpoint in this folder, read from the
    /// safetensors header only (8-byte length, then JSON whose
    /// `__metadata__.dae_train_checkpoint` is the trainer's state as JSON).
    /// `None` without a readable checkpoint: the trainer decides at start
    /// whether it can use one; this is for the plan's reason only.
    pub fn checkpoint_epoch(&self) -> Option<(u64, String)> {
        use std::io::Read;
        let mut f = File::open(self.path.join("checkpoint.safetensors")).ok()?;
        let size = f.metadata().ok()?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len).ok()?;
        let len = u64::from_le_bytes(len);
        if len > 100 << 20 || len.saturating_add(8) > size {
            return None;
        }
        let mut header = vec![0u8; len as usize];
        f.read_exact(&mut header).ok()?;
        let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
        let state: serde_json::Value = serde_json::from_str(header["__metadata__"]["dae_train_checkpoint"].as_str()?).ok()?;
        Some((state["epoch"].as_u64()?, state["code_version"].as_str().unwrap_or_default().to_string()))
    }

    pub fn exit_record(&self) -> Option<ExitRecord> {
        std::fs::read_to_string(self.exit_json()).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// True when another process holds the folder's lock.
    pub fn is_locked(&self) -> bool {
        let p = self.path.join(".lock");
        if !p.exists() {
            return false;
        }
        match File::options().read(true).write(true).open(&p) {
            Ok(f) => match f.try_lock() {
                Ok(()) => {
                    let _ = f.unlock();
                    false
                }
                Err(_) => true,
            },
            Err(_) => false,
        }
    }

    /// Takes the folder's lock without waiting: `Ok(None)` if another
    /// process holds it. Creates the folder.
    pub fn try_lock(&self) -> Result<Option<File>, SweepError> {
        std::fs::create_dir_all(&self.path).map_err(io_err(&self.path, "cannot create the run folder"))?;
        let p = self.path.join(".lock");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(io_err(&p, "cannot open the lock file"))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(SweepError::Io { path: p, action: "cannot lock", source: e }),
        }
    }

    /// Moves a finished (or failed, or with `--force` incomplete) run aside
    /// to `<results>/archive/` before it is rerun, so no finished result is
    /// ever lost.
    pub fn archive(&self, results: &Path) -> Result<PathBuf, SweepError> {
        let id = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("run");
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let dst = results.join("archive").join(format!("{id}-{stamp}"));
        std::fs::create_dir_all(dst.parent().expect("has a parent")).map_err(io_err(results.join("archive"), "cannot create"))?;
        std::fs::create_dir_all(&dst).map_err(io_err(&dst, "cannot create"))?;
        for entry in std::fs::read_dir(&self.path).map_err(io_err(&self.path, "cannot list"))? {
            let entry = entry.map_err(io_err(&self.path, "cannot list"))?;
            if entry.file_name() == ".lock" {
                continue; // we hold it
            }
            std::fs::rename(entry.path(), dst.join(entry.file_name())).map_err(io_err(entry.path(), "cannot move into the archive"))?;
        }
        Ok(dst)
    }

    /// Gets the folder ready for an attempt: the config written, the last
    /// attempt's exit record and markers removed. Logs are kept and appended.
    pub fn prepare(&self, config: &str) -> Result<(), SweepError> {
        write_atomic(&self.job_toml(), config.as_bytes())?;
        for f in ["exit.json", "failed"] {
            let p = self.path.join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(io_err(&p, "cannot remove"))?;
            }
        }
        Ok(())
    }

    pub fn write_exit(&self, rec: &ExitRecord) -> Result<(), SweepError> {
        write_atomic(&self.exit_json(), serde_json::to_string_pretty(rec).expect("serialises").as_bytes())
    }

    /// Opens the log for appending, with a header line for this attempt.
    pub fn open_log(&self, header: &str) -> Result<File, SweepError> {
        let p = self.log();
        let mut f = File::options().create(true).append(true).open(&p).map_err(io_err(&p, "cannot open the job log"))?;
        writeln!(f, "==== {header}").map_err(io_err(&p, "cannot write the job log"))?;
        Ok(f)
    }
}

/// Writes a file atomically: a unique temp file in the same folder, fsync,
/// rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
    f.write_all(bytes).map_err(io_err(&tmp, "cannot write"))?;
    f.sync_all().map_err(io_err(&tmp, "cannot sync"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path, "cannot move into place"))
}
