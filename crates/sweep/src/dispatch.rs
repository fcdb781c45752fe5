//! The runner's state machine, written once for every backend: the queue of
//! attempts, retries, fail-fast, stop requests, the summary and the events.
//! An [`Executor`] (the local process pool, Slurm arrays) only starts
//! attempts and says what became of them.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::SweepError;
use crate::events::{Event, JobRef, Outcome, Summary};
use crate::plan::{Action, PlannedJob};
use crate::runs::RunDir;

/// One attempt of a planned job (an index into the plan's jobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attempt {
    pub job: usize,
    pub attempt: u32,
}

/// What an executor tells the dispatcher.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Started {
        at: Attempt,
        slot: String,
    },
    /// Another runner holds the job's lock; the executor tries again later.
    Waiting {
        at: Attempt,
    },
    /// Not run after all: finished by another runner (`elsewhere`), or its
    /// status changed since the plan.
    Skipped {
        at: Attempt,
        reason: String,
        elsewhere: bool,
    },
    Ended {
        at: Attempt,
        outcome: Outcome,
        seconds: f64,
    },
}

/// A backend: starts attempts and reports what becomes of them.
pub trait Executor {
    /// Starts what it can of `queue` (removing what it takes; it may also put
    /// back attempts it held, such as those that waited for a lock) and reports.
    fn start(&mut self, queue: &mut VecDeque<Attempt>, out: &mut Vec<Report>) -> Result<(), SweepError>;
    /// Waits a little for attempts in flight, and reports.
    fn poll(&mut self, out: &mut Vec<Report>) -> Result<(), SweepError>;
    /// Attempts it holds that have not ended (running, submitted, waiting).
    fn in_flight(&self) -> usize;
    /// A stop request: stops what runs (those end as interrupted, reported
    /// now or by `poll`).
    fn stop(&mut self, out: &mut Vec<Report>);
    /// Gives up the attempts it holds that have not started (fail-fast, or
    /// after a stop); returns how many.
    fn abandon(&mut self) -> usize;
}

/// How the dispatcher treats failures.
#[derive(Clone, Copy, Debug, Default)]
pub struct DispatchOptions {
    /// Extra attempts of a failed job (not of one that repeats exactly).
    pub retries: u32,
    /// Start nothing new after the first failure.
    pub fail_fast: bool,
    /// Return once everything is started (submitted), leaving it running:
    /// after one look at what is in flight (an adopted task may have ended,
    /// and its retry is started too).
    pub detach: bool,
}

/// Runs the planned jobs marked [`Action::Run`] on `exec`; the others are
/// reported as skipped. Returns when every attempt has ended, or after a
/// stop request (`stop` set, e.g. by SIGINT/SIGTERM) once what ran has ended.
pub fn dispatch(
    planned: &[PlannedJob],
    results: &Path,
    opts: DispatchOptions,
    exec: &mut dyn Executor,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, SweepError> {
    let t0 = Instant::now();
    let mut d = Dispatcher {
        planned,
        results,
        opts,
        summary: Summary::default(),
        queue: VecDeque::new(),
        halted: false,
        stopping: false,
        announced: HashSet::new(),
    };
    d.begin(on_event);
    let mut reports = Vec::new();
    let mut polled = false;
    loop {
        if !d.stopping && stop.load(Ordering::SeqCst) {
            d.stopping = true;
            on_event(&Event::Stopping { reason: "signal received: stopping the running jobs (they stay incomplete)".into() });
            exec.stop(&mut reports);
            d.summary.not_started += exec.abandon();
        }
        if !d.stopping && !d.halted {
            exec.start(&mut d.queue, &mut reports)?;
        }
        d.handle(&mut reports, exec, on_event);
        let nothing_to_start = d.queue.is_empty() || d.stopping || d.halted;
        if exec.in_flight() == 0 && nothing_to_start {
            break;
        }
        if opts.detach && polled && nothing_to_start {
            d.summary.detached = exec.in_flight();
            break;
        }
        exec.poll(&mut reports)?;
        polled = true;
        d.handle(&mut reports, exec, on_event);
    }
    d.summary.not_started += d.queue.len();
    d.summary.seconds = t0.elapsed().as_secs_f64();
    on_event(&Event::RunFinished { summary: d.summary.clone() });
    Ok(d.summary)
}

struct Dispatcher<'a> {
    planned: &'a [PlannedJob],
    results: &'a Path,
    opts: DispatchOptions,
    summary: Summary,
    queue: VecDeque<Attempt>,
    /// Fail-fast struck: nothing new starts.
    halted: bool,
    /// A stop was requested.
    stopping: bool,
    /// Jobs whose wait for another runner was announced.
    announced: HashSet<usize>,
}

impl Dispatcher<'_> {
    fn job(&self, at: Attempt) -> JobRef {
        JobRef::of(&self.planned[at.job].job)
    }

    fn log(&self, at: Attempt) -> std::path::PathBuf {
        RunDir::new(self.results, &self.planned[at.job].job.id).log()
    }

    /// The first events, and the queue of first attempts.
    fn begin(&mut self, on_event: &mut dyn FnMut(&Event)) {
        self.summary.planned = self.planned.len();
        for (i, p) in self.planned.iter().enumerate() {
            match p.action {
                Action::Run => self.queue.push_back(Attempt { job: i, attempt: 1 }),
                Action::Skip => self.summary.skipped += 1,
            }
        }
        on_event(&Event::RunStarted { total: self.planned.len(), to_run: self.queue.len(), skipped: self.summary.skipped });
        for p in self.planned.iter().filter(|p| p.action == Action::Skip) {
            on_event(&Event::JobSkipped { job: JobRef::of(&p.job), reason: p.reason.clone() });
        }
    }

    fn handle(&mut self, reports: &mut Vec<Report>, exec: &mut dyn Executor, on_event: &mut dyn FnMut(&Event)) {
        for r in reports.drain(..) {
            match r {
                Report::Started { at, slot } => {
                    on_event(&Event::JobStarted { job: self.job(at), attempt: at.attempt, slot, log: self.log(at) })
                }
                Report::Waiting { at } => {
                    if self.announced.insert(at.job) {
                        on_event(&Event::JobWaiting { job: self.job(at) });
                    }
                }
                Report::Skipped { at, reason, elsewhere } => {
                    if elsewhere {
                        self.summary.done_elsewhere += 1;
                    } else {
                        self.summary.skipped += 1;
                    }
                    on_event(&Event::JobSkipped { job: self.job(at), reason });
                }
                Report::Ended { at, outcome, seconds } => self.ended(at, outcome, seconds, exec, on_event),
            }
        }
    }

    /// An attempt ended: retry it, or count it and maybe halt.
    fn ended(&mut self, at: Attempt, outcome: Outcome, seconds: f64, exec: &mut dyn Executor, on_event: &mut dyn FnMut(&Event)) {
        let (job, log) = (self.job(at), self.log(at));
        if outcome.is_retryable() && at.attempt <= self.opts.retries && !self.stopping && !self.halted {
            self.summary.retries += 1;
            on_event(&Event::JobRetrying { job, attempt: at.attempt, outcome, log });
            self.queue.push_front(Attempt { job: at.job, attempt: at.attempt + 1 });
            return;
        }
        match &outcome {
            Outcome::Pass => self.summary.passed += 1,
            Outcome::Interrupted => self.summary.interrupted += 1,
            _ => self.summary.failed += 1,
        }
        let failed = outcome.is_failure();
        on_event(&Event::JobFinished { job, attempt: at.attempt, outcome, seconds, log });
        if failed && self.opts.fail_fast && !self.halted {
            self.halted = true;
            on_event(&Event::Stopping { reason: "--fail-fast: a job failed; letting the running jobs finish, starting no more".into() });
            self.summary.not_started += exec.abandon();
        }
    }
}
