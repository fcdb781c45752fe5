//! Run folders (`<results>/runs/<id>/`) as the runner sees them: status,
//! per-job locks, archiving, the runner's own files. The file names and
//! records are the contract in `dae-runfolder`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use dae_runfolder::{check_done, files, read_json, write_atomic, Check, Damage, ExitCode, ExitRecord, Metrics, ProgressRecord, RunFolder};

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
    /// Finished, but a sealed artefact or `metrics.json` is not what the
    /// trainer left: counts as missing, and is archived and rerun.
    Damaged {
        damage: Damage,
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
            Status::Damaged { .. } => "damaged",
        }
    }
}

/// A job's run folder, as the runner works on it.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
    files: RunFolder,
}

impl RunDir {
    pub fn new(results: &Path, id: &str) -> RunDir {
        RunDir::at(RunFolder::new(results, id).path)
    }
    /// The folder at `path`.
    pub fn at(path: PathBuf) -> RunDir {
        RunDir { files: RunFolder::at(path.clone()), path }
    }
    /// Its files' paths.
    pub fn files(&self) -> &RunFolder {
        &self.files
    }
    pub fn log(&self) -> PathBuf {
        self.files.log()
    }
    pub fn job_toml(&self) -> PathBuf {
        self.files.job()
    }
    /// Whether the trainer wrote its completion marker.
    pub fn is_done(&self) -> bool {
        self.files.is_done()
    }

    /// Reads the status without taking the lock for long. `code_version` is
    /// the current trainer's; a done run by another version is stale. A
    /// finished run's sealed files are checked by size
    /// ([`RunDir::status_checked`] to hash them).
    pub fn status(&self, code_version: &str) -> Status {
        self.status_checked(code_version, Check::Size)
    }

    /// [`RunDir::status`] with the given check of a finished run.
    pub fn status_checked(&self, code_version: &str, check: Check) -> Status {
        if !self.path.is_dir() {
            return Status::Pending;
        }
        if self.is_locked() {
            return Status::Running;
        }
        self.status_unlocked_checked(code_version, check)
    }

    /// The status from the files alone (the caller holds the lock or does
    /// not care whether someone is working on the folder).
    pub fn status_unlocked(&self, code_version: &str) -> Status {
        self.status_unlocked_checked(code_version, Check::Size)
    }

    /// [`RunDir::status_unlocked`] with the given check of a finished run.
    pub fn status_unlocked_checked(&self, code_version: &str, check: Check) -> Status {
        if self.is_done() {
            return self.finished_status(code_version, check);
        }
        if let Some(rec) = self.exit_record() {
            let interrupted = rec.exit_code == Some(ExitCode::Interrupted.code() as i32);
            if !interrupted && rec.exit_code != Some(0) {
                return Status::Failed { exit: rec.exit_code, signal: rec.signal };
            }
            if rec.exit_code == Some(0) {
                // Exited 0 without the done marker: a broken job, not a finished one.
                return Status::Failed { exit: Some(0), signal: None };
            }
        }
        if self.files.incomplete().exists() || self.job_toml().exists() {
            return Status::Incomplete;
        }
        Status::Pending
    }

    /// A finished run: damaged, stale or done.
    fn finished_status(&self, code_version: &str, check: Check) -> Status {
        if let Err(damage) = check_done(&self.files, check) {
            return Status::Damaged { damage };
        }
        let metrics = std::fs::read(self.files.metrics())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Metrics>(&b).map_err(|e| e.to_string()));
        match metrics {
            Err(e) => Status::Damaged { damage: Damage::new(files::METRICS, format!("cannot be read: {e}")) },
            Ok(m) if !code_version.is_empty() && m.code_version != code_version => Status::Stale { code_version: m.code_version },
            Ok(_) => Status::Done,
        }
    }

    /// Where the trainer left the run: its progress record, if readable.
    pub fn progress(&self) -> Option<ProgressRecord> {
        read_json(&self.files.progress()).ok()
    }

    pub fn exit_record(&self) -> Option<ExitRecord> {
        read_json(&self.files.exit()).ok()
    }

    /// True when another process holds the folder's lock.
    pub fn is_locked(&self) -> bool {
        let p = self.files.lock();
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
        let p = self.files.lock();
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
        let dst = results.join("archive").join(format!("{id}-{}", unix_millis()));
        std::fs::create_dir_all(dst.parent().expect("has a parent")).map_err(io_err(results.join("archive"), "cannot create"))?;
        std::fs::create_dir_all(&dst).map_err(io_err(&dst, "cannot create"))?;
        for entry in std::fs::read_dir(&self.path).map_err(io_err(&self.path, "cannot list"))? {
            let entry = entry.map_err(io_err(&self.path, "cannot list"))?;
            if entry.path() == self.files.lock() {
                continue; // we hold it
            }
            std::fs::rename(entry.path(), dst.join(entry.file_name())).map_err(io_err(entry.path(), "cannot move into the archive"))?;
        }
        Ok(dst)
    }

    /// Gets the folder ready for an attempt: the config written, the last
    /// attempt's exit record and markers removed. Logs are kept and appended.
    pub fn prepare(&self, config: &str) -> Result<(), SweepError> {
        write_atomic(&self.job_toml(), config.as_bytes()).map_err(io_err(self.job_toml(), "cannot write"))?;
        for p in [self.files.exit(), self.files.failed()] {
            if p.exists() {
                std::fs::remove_file(&p).map_err(io_err(&p, "cannot remove"))?;
            }
        }
        Ok(())
    }

    pub fn write_exit(&self, rec: &ExitRecord) -> Result<(), SweepError> {
        let p = self.files.exit();
        write_atomic(&p, serde_json::to_string_pretty(rec).expect("serialises").as_bytes()).map_err(io_err(p, "cannot write"))
    }

    /// Opens the log for appending, with a header line for this attempt.
    pub fn open_log(&self, header: &str) -> Result<File, SweepError> {
        let p = self.log();
        let mut f = File::options().create(true).append(true).open(&p).map_err(io_err(&p, "cannot open the job log"))?;
        writeln!(f, "==== {header}").map_err(io_err(&p, "cannot write the job log"))?;
        Ok(f)
    }
}

/// Milliseconds since the Unix epoch (folder stamps, log headers).
pub fn unix_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
