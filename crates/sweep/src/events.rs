//! Events of a run (nextest's model): the dispatcher owns the state and
//! emits events; reporters (progress bar, JSON lines, tests) only consume
//! them.

use std::path::PathBuf;

use serde::Serialize;

use dae_runfolder::ExitCode;

/// How one attempt of a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    /// A non-zero exit code (or 0 without the done marker).
    Fail {
        exit: i32,
    },
    /// Killed by a signal the runner did not send.
    Crashed {
        signal: i32,
    },
    /// Stopped by SIGINT/SIGTERM (the trainer's exit code 5, or the runner
    /// stopping it); the run stays incomplete.
    Interrupted,
    /// Slurm ended the task without an exit file (TIMEOUT, CANCELLED, ...).
    Lost {
        state: String,
    },
    /// The job could not be started.
    LaunchError {
        message: String,
    },
}

impl Outcome {
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Pass | Outcome::Interrupted)
    }
    /// A failure that another attempt could mend: not a bad config (exit 2)
    /// nor a diverged run (exit 4), which the same job repeats exactly.
    pub fn is_retryable(&self) -> bool {
        let repeats = matches!(self, Outcome::Fail { exit } if ExitCode::from_code(*exit).is_some_and(ExitCode::repeats_exactly));
        self.is_failure() && !repeats
    }
    /// `passed`, `failed (exit 3)`, ...
    pub fn describe(&self) -> String {
        match self {
            Outcome::Pass => "passed".into(),
            Outcome::Fail { exit: 0 } => "failed (exited 0 without writing `done`)".into(),
            Outcome::Fail { exit } => match ExitCode::from_code(*exit) {
                Some(c) => format!("failed (exit {exit}: {})", c.meaning()),
                None => format!("failed (exit {exit})"),
            },
            Outcome::Crashed { signal } => format!("crashed (signal {signal})"),
            Outcome::Interrupted => "interrupted (left incomplete)".into(),
            Outcome::Lost { state } => format!("failed (slurm state {state}, no exit code written)"),
            Outcome::LaunchError { message } => format!("could not start: {message}"),
        }
    }
}

/// A job as events name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRef {
    pub id: String,
    /// `variant=row7 seed=1`.
    pub desc: String,
}

impl JobRef {
    pub fn of(job: &crate::plan::Job) -> JobRef {
        JobRef { id: job.id.clone(), desc: job.describe() }
    }
}

/// Counts at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub planned: usize,
    pub passed: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Skipped at plan time (done, failed, stale, running elsewhere).
    pub skipped: usize,
    /// Finished by another runner while this one waited for its lock.
    pub done_elsewhere: usize,
    /// Never started (fail-fast or a stop).
    pub not_started: usize,
    pub retries: usize,
    /// Left running on Slurm by a detached runner.
    pub detached: usize,
    pub seconds: f64,
}

/// What happens during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        total: usize,
        to_run: usize,
        skipped: usize,
    },
    JobSkipped {
        job: JobRef,
        reason: String,
    },
    JobStarted {
        job: JobRef,
        attempt: u32,
        slot: String,
        log: PathBuf,
    },
    /// Another runner holds the job's lock; this one waits and checks again.
    JobWaiting {
        job: JobRef,
    },
    JobRetrying {
        job: JobRef,
        attempt: u32,
        outcome: Outcome,
        log: PathBuf,
    },
    JobFinished {
        job: JobRef,
        attempt: u32,
        outcome: Outcome,
        seconds: f64,
        log: PathBuf,
    },
    /// The runner was asked to stop (signal) or stops launching (fail-fast).
    Stopping {
        reason: String,
    },
    RunFinished {
        summary: Summary,
    },
}
