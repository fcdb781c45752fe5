//! The sweep's error type.

use std::path::PathBuf;

/// What can go wrong while loading, planning or running an experiment.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A problem in an experiment file, at a line where known.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    File { path: PathBuf, line: Option<usize>, message: String },
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The trainer could not resolve job configs (not started, crashed, bad output).
    #[error("trainer `{}`: {message}", program.display())]
    Trainer { program: PathBuf, message: String },
    /// A Slurm command failed.
    #[error("slurm: {0}")]
    Slurm(String),
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn io_err(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(std::io::Error) -> SweepError {
    let path = path.into();
    move |source| SweepError::Io { path, action, source }
}
