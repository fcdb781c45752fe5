//! The names of the files in a run folder (`<results>/runs/<job id>/`), and
//! [`RunFolder`], the paths of one folder.
//!
//! | file | written by | what |
//! |---|---|---|
//! | `job.toml` | runner | the job config it launches, before launch |
//! | `log.txt` | runner | the job's stdout and stderr, appended per attempt |
//! | `.lock` | runner | held with `flock` while a runner or its job works on the folder |
//! | `exit.json` | runner | [`crate::ExitRecord`]: how the last attempt ended |
//! | `incomplete` | trainer | present from the start until the run is done |
//! | `config.toml` | trainer | the resolved config, before the first step |
//! | `progress.json` | trainer | [`crate::ProgressRecord`], after every epoch |
//! | `checkpoint.safetensors` | trainer | everything the next epoch needs; removed when done |
//! | `history.csv` | trainer | one row per epoch |
//! | `events.out.tfevents.dae-train` | trainer | the history's numbers as TensorBoard scalars, after every epoch |
//! | `scores.csv` | trainer | one row per test sample |
//! | `metrics.json` | trainer | [`crate::Metrics`] |
//! | `model.safetensors` | trainer | the selected weights (when saved) |
//! | `figure3.json`, `figure3-<sample>.png` | trainer | the reconstructions of Figure 3 |
//! | `failed` | trainer | why a run diverged |
//! | `done` | trainer | the completion marker, written last: a [`crate::DoneRecord`] sealing the artefacts |

use std::path::{Path, PathBuf};

pub const JOB: &str = "job.toml";
pub const LOG: &str = "log.txt";
pub const LOCK: &str = ".lock";
pub const EXIT: &str = "exit.json";
pub const INCOMPLETE: &str = "incomplete";
pub const CONFIG: &str = "config.toml";
pub const PROGRESS: &str = "progress.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const HISTORY: &str = "history.csv";
pub const TFEVENTS: &str = "events.out.tfevents.dae-train";
pub const SCORES: &str = "scores.csv";
pub const METRICS: &str = "metrics.json";
pub const MODEL: &str = "model.safetensors";
pub const FIGURE3: &str = "figure3.json";
pub const FAILED: &str = "failed";
pub const DONE: &str = "done";

/// The folder of run folders inside a results folder.
pub const RUNS: &str = "runs";

/// The PNG of one Figure 3 sample (path-safe).
pub fn figure3_png(sample_id: &str) -> String {
    format!("figure3-{}.png", sample_id.replace(['/', '\\', ' '], "_"))
}

/// The paths of one run folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFolder {
    pub path: PathBuf,
}

macro_rules! paths {
    ($($(#[$m:meta])* $fn:ident => $name:ident),* $(,)?) => {
        impl RunFolder {
            $($(#[$m])* pub fn $fn(&self) -> PathBuf { self.path.join($name) })*
        }
    };
}

paths! {
    job => JOB, log => LOG, lock => LOCK, exit => EXIT, incomplete => INCOMPLETE, config => CONFIG,
    progress => PROGRESS, checkpoint => CHECKPOINT, history => HISTORY, tfevents => TFEVENTS, scores => SCORES,
    metrics => METRICS, model => MODEL, figure3 => FIGURE3, failed => FAILED, done => DONE,
}

impl RunFolder {
    /// `<results>/runs/<id>`.
    pub fn new(results: &Path, id: &str) -> RunFolder {
        RunFolder { path: results.join(RUNS).join(id) }
    }

    /// A folder given by its path.
    pub fn at(path: impl Into<PathBuf>) -> RunFolder {
        RunFolder { path: path.into() }
    }

    /// Whether the completion marker is there.
    pub fn is_done(&self) -> bool {
        self.done().exists()
    }

    /// Removes the temporary files a killed [`crate::write_atomic`] left
    /// (`.<name>.tmp-<pid>-<n>`).
    pub fn clear_temporaries(&self) {
        for entry in std::fs::read_dir(&self.path).into_iter().flatten().flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with('.') && n.contains(".tmp-")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The folder's name (the job id).
    pub fn id(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}
