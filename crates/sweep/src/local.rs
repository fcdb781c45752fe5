//! The local backend: a pool of CPU and GPU slots, one process per job.
//!
//! Each job's process gets its run folder's lock (an inherited `flock`ed
//! descriptor, so a job outliving a killed runner still holds it), its own
//! `CUDA_VISIBLE_DEVICES` when it takes a GPU slot, a log file, and
//! `PR_SET_PDEATHSIG = SIGTERM`, so killing the runner, even with SIGKILL,
//! stops its jobs cleanly (the trainer leaves them incomplete).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dae_runfolder::{ExitCode, ExitRecord};

use crate::dispatch::{dispatch, Attempt, DispatchOptions, Executor, Report};
use crate::error::SweepError;
use crate::events::{Event, Outcome, Summary};
use crate::plan::{Action, Job, PlannedJob, RerunPolicy};
use crate::runs::{RunDir, Status};

/// How to start a job: `PROGRAM PRE_ARGS... --config <run>/job.toml --out <run>`.
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    pub pre_args: Vec<OsString>,
    /// Extra environment for every job.
    pub env: Vec<(String, String)>,
}

impl Launcher {
    pub fn new(program: impl Into<PathBuf>) -> Launcher {
        Launcher { program: program.into(), pre_args: Vec::new(), env: Vec::new() }
    }
}

/// Options of a local run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Concurrent CPU jobs.
    pub cpu_slots: usize,
    /// GPU device ids (as `CUDA_VISIBLE_DEVICES` names them).
    pub gpus: Vec<String>,
    /// Concurrent jobs per GPU.
    pub jobs_per_gpu: usize,
    /// Extra attempts of a failed job.
    pub retries: u32,
    /// Stop launching after the first failure (running jobs finish).
    pub fail_fast: bool,
    pub policy: RerunPolicy,
    /// How often to look again at jobs another runner holds.
    pub wait_poll: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            cpu_slots: 1,
            gpus: Vec::new(),
            jobs_per_gpu: 1,
            retries: 0,
            fail_fast: false,
            policy: RerunPolicy::default(),
            wait_poll: Duration::from_millis(250),
        }
    }
}

/// The GPUs of `CUDA_VISIBLE_DEVICES` (empty when unset or empty).
pub fn inherited_gpus() -> Vec<String> {
    std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "-1").map(str::to_string).collect())
        .unwrap_or_default()
}

/// GPU slots: each device takes up to `per_gpu` jobs; a job gets the
/// smallest index with a free slot.
#[derive(Debug)]
pub struct GpuPool {
    used: Vec<usize>,
    per_gpu: usize,
}

impl GpuPool {
    pub fn new(n: usize, per_gpu: usize) -> GpuPool {
        GpuPool { used: vec![0; n], per_gpu: per_gpu.max(1) }
    }
    pub fn take(&mut self) -> Option<usize> {
        let i = self.used.iter().position(|&u| u < self.per_gpu)?;
        self.used[i] += 1;
        Some(i)
    }
    pub fn give(&mut self, i: usize) {
        self.used[i] -= 1;
    }
}

struct Running {
    attempt: u32,
    started: Instant,
    gpu: Option<usize>,
    pid: u32,
    _lock: File,
}

/// The local backend as an [`Executor`]: a pool of CPU and GPU slots, one
/// process per attempt.
pub struct LocalExecutor<'a> {
    planned: &'a [PlannedJob],
    results: &'a Path,
    code_version: &'a str,
    launcher: &'a Launcher,
    opts: &'a LocalOptions,
    /// Set by a signal; a job that ends after it was interrupted.
    stop: &'a AtomicBool,
    stopping: bool,
    running: HashMap<usize, Running>,
    cpu_free: usize,
    gpus: GpuPool,
    /// Attempts whose folder another runner holds, and when they were last tried.
    waiting: Vec<Attempt>,
    last_wait_check: Instant,
    waited: HashSet<usize>,
    tx: mpsc::Sender<(usize, std::io::Result<ExitStatus>)>,
    rx: mpsc::Receiver<(usize, std::io::Result<ExitStatus>)>,
}

impl<'a> LocalExecutor<'a> {
    /// Checks that the plan's jobs fit the pool (CPU slots for CPU jobs,
    /// GPUs for CUDA jobs, each job on its own `CUDA_VISIBLE_DEVICES`).
    pub fn new(
        planned: &'a [PlannedJob],
        results: &'a Path,
        code_version: &'a str,
        launcher: &'a Launcher,
        opts: &'a LocalOptions,
        stop: &'a AtomicBool,
    ) -> Result<Self, SweepError> {
        let to_run = || planned.iter().filter(|p| p.action == Action::Run);
        if opts.cpu_slots == 0 && to_run().any(|p| p.job.gpu.is_none()) {
            return Err(SweepError::Usage("--jobs 0 leaves no slot for the CPU jobs of this plan".into()));
        }
        if let Some(p) = to_run().find(|p| p.job.gpu.is_some_and(|g| g > 0)) {
            return Err(SweepError::Usage(format!(
                "job {} ({}) asks for CUDA device {}: under the runner use device = \"cuda\"; each job sees only its own GPU through CUDA_VISIBLE_DEVICES",
                p.job.short_id(),
                p.job.describe(),
                p.job.gpu.unwrap_or(0)
            )));
        }
        if opts.gpus.is_empty() {
            if let Some(p) = to_run().find(|p| p.job.gpu.is_some()) {
                return Err(SweepError::Usage(format!(
                    "job {} ({}) asks for a GPU (device = cuda) but no GPUs were given: pass --gpus 0,1 or set CUDA_VISIBLE_DEVICES",
                    p.job.short_id(),
                    p.job.describe()
                )));
            }
        }
        let (tx, rx) = mpsc::channel();
        Ok(LocalExecutor {
            planned,
            results,
            code_version,
            launcher,
            opts,
            stop,
            stopping: false,
            running: HashMap::new(),
            cpu_free: opts.cpu_slots,
            gpus: GpuPool::new(opts.gpus.len(), opts.jobs_per_gpu),
            waiting: Vec::new(),
            last_wait_check: Instant::now(),
            waited: HashSet::new(),
            tx,
            rx,
        })
    }

    /// A free slot for the job: `Some(None)` a CPU slot, `Some(Some(g))` GPU `g`.
    fn take_slot(&mut self, job: &Job) -> Option<Option<usize>> {
        if job.gpu.is_some() {
            return self.gpus.take().map(Some);
        }
        (self.cpu_free > 0).then(|| {
            self.cpu_free -= 1;
            None
        })
    }

    fn release(&mut self, gpu: Option<usize>) {
        match gpu {
            Some(g) => self.gpus.give(g),
            None => self.cpu_free += 1,
        }
    }

    /// Puts the waiting attempts back in the queue once the wait is over.
    fn requeue_waiting(&mut self, queue: &mut VecDeque<Attempt>) {
        if !self.waiting.is_empty() && self.last_wait_check.elapsed() >= self.opts.wait_poll {
            queue.extend(self.waiting.drain(..));
            self.last_wait_check = Instant::now();
        }
    }

    /// Takes the folder's lock, looks again at its status under it, then
    /// launches; reports what happened.
    fn try_start(&mut self, at: Attempt, gpu: Option<usize>, out: &mut Vec<Report>) {
        let job = &self.planned[at.job].job;
        let rd = RunDir::new(self.results, &job.id);
        let lock = match rd.try_lock() {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.release(gpu);
                self.waited.insert(at.job);
                self.waiting.push(at);
                return out.push(Report::Waiting { at });
            }
            Err(e) => {
                self.release(gpu);
                return out.push(launch_error(at, e));
            }
        };
        if let Some(r) = self.recheck(at, &rd) {
            self.release(gpu);
            return out.push(r);
        }
        match launch(job, at.attempt, &rd, &lock, gpu.map(|g| self.opts.gpus[g].as_str()), self.launcher) {
            Ok(child) => {
                let pid = child.id();
                let tx = self.tx.clone();
                std::thread::spawn(move || {
                    let mut child = child;
                    let r = child.wait();
                    let _ = tx.send((at.job, r));
                });
                let slot = gpu.map_or_else(|| "cpu".into(), |g| format!("gpu {}", self.opts.gpus[g]));
                out.push(Report::Started { at, slot });
                self.running.insert(at.job, Running { attempt: at.attempt, started: Instant::now(), gpu, pid, _lock: lock });
            }
            Err(e) => {
                self.release(gpu);
                out.push(launch_error(at, e));
            }
        }
    }

    /// Under the lock: whether another runner finished the job meanwhile, or
    /// its status no longer asks for a run; archives a run that is redone.
    fn recheck(&self, at: Attempt, rd: &RunDir) -> Option<Report> {
        let status = rd.status_unlocked_checked(self.code_version, self.opts.policy.check());
        let finished = matches!(status, Status::Done | Status::Stale { .. });
        if finished && (at.attempt > 1 || self.waited.contains(&at.job)) {
            return Some(Report::Skipped { at, reason: "finished by another runner".into(), elsewhere: true });
        }
        if at.attempt > 1 {
            return None;
        }
        let (action, _) = self.opts.policy.decide(&status, self.code_version);
        if action == Action::Skip {
            return Some(Report::Skipped { at, reason: format!("{} (changed since the plan)", status.word()), elsewhere: false });
        }
        if self.opts.policy.archives_first(&status) {
            if let Err(e) = rd.archive(self.results) {
                return Some(launch_error(at, e));
            }
        }
        None
    }

    /// How an attempt that exited ended; writes its exit record unless the
    /// runner stopped it (it stays incomplete).
    fn conclude(&mut self, job: usize, status: std::io::Result<ExitStatus>) -> Report {
        let r = self.running.remove(&job).expect("a job we started");
        self.release(r.gpu);
        let rd = RunDir::new(self.results, &self.planned[job].job.id);
        let seconds = r.started.elapsed().as_secs_f64();
        // A Ctrl-C reaches the jobs (same process group) before the dispatcher may have seen the flag.
        let stopping_now = self.stopping || self.stop.load(Ordering::SeqCst);
        let passed = matches!(&status, Ok(s) if s.code() == Some(0)) && rd.is_done();
        let outcome = match &status {
            Err(e) => Outcome::LaunchError { message: format!("cannot wait for the job: {e}") },
            Ok(_) if passed => Outcome::Pass,
            Ok(_) if stopping_now => Outcome::Interrupted,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) if ExitCode::from_code(c) == Some(ExitCode::Interrupted) => Outcome::Interrupted,
                (Some(c), _) => Outcome::Fail { exit: c },
                (None, sig) => Outcome::Crashed { signal: sig.unwrap_or(0) },
            },
        };
        if let Ok(s) = &status {
            if passed || !stopping_now {
                let rec = ExitRecord {
                    exit_code: s.code(),
                    signal: s.signal(),
                    attempt: r.attempt,
                    backend: "local".into(),
                    seconds,
                    slurm_task: None,
                };
                if let Err(e) = rd.write_exit(&rec) {
                    tracing::warn!("{e}");
                }
            }
        }
        Report::Ended { at: Attempt { job, attempt: r.attempt }, outcome, seconds }
    }
}

fn launch_error(at: Attempt, e: SweepError) -> Report {
    Report::Ended { at, outcome: Outcome::LaunchError { message: e.to_string() }, seconds: 0.0 }
}

impl Executor for LocalExecutor<'_> {
    fn start(&mut self, queue: &mut VecDeque<Attempt>, out: &mut Vec<Report>) -> Result<(), SweepError> {
        self.requeue_waiting(queue);
        let mut i = 0;
        while i < queue.len() {
            let at = queue[i];
            let Some(gpu) = self.take_slot(&self.planned[at.job].job) else {
                i += 1;
                continue;
            };
            queue.remove(i);
            self.try_start(at, gpu, out);
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Report>) -> Result<(), SweepError> {
        if self.running.is_empty() {
            // Only waiting attempts: sleep until they may be tried again.
            let left = self.opts.wait_poll.saturating_sub(self.last_wait_check.elapsed());
            std::thread::sleep(left.min(Duration::from_millis(50)));
            return Ok(());
        }
        if let Ok((job, status)) = self.rx.recv_timeout(Duration::from_millis(50)) {
            out.push(self.conclude(job, status));
        }
        while let Ok((job, status)) = self.rx.try_recv() {
            out.push(self.conclude(job, status));
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    fn stop(&mut self, _out: &mut Vec<Report>) {
        self.stopping = true;
        for r in self.running.values() {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe {
                libc::kill(r.pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    fn abandon(&mut self) -> usize {
        let n = self.waiting.len();
        self.waiting.clear();
        n
    }
}

/// Runs the planned jobs marked [`Action::Run`] on the local pool (see
/// [`crate::dispatch::dispatch`]).
pub fn run_local(
    planned: &[PlannedJob],
    results: &Path,
    code_version: &str,
    launcher: &Launcher,
    opts: &LocalOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, SweepError> {
    let mut exec = LocalExecutor::new(planned, results, code_version, launcher, opts, stop)?;
    let d = DispatchOptions { retries: opts.retries, fail_fast: opts.fail_fast, detach: false };
    dispatch(planned, results, d, &mut exec, stop, on_event)
}

fn launch(
    job: &Job,
    attempt: u32,
    rd: &RunDir,
    lock: &File,
    gpu: Option<&str>,
    launcher: &Launcher,
) -> Result<std::process::Child, SweepError> {
    use std::os::fd::AsRawFd;
    rd.prepare(&job.config)?;
    let header = format!("attempt {attempt} of job {} ({}) at unix time {}", job.id, job.describe(), crate::runs::unix_millis() / 1000);
    let log = rd.open_log(&header)?;
    let log2 = log.try_clone().map_err(|e| SweepError::Io { path: rd.log(), action: "cannot duplicate the log handle", source: e })?;
    let mut cmd = Command::new(&launcher.program);
    cmd.args(&launcher.pre_args).arg("--config").arg(rd.job_toml()).arg("--out").arg(&rd.path);
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    for (k, v) in &launcher.env {
        cmd.env(k, v);
    }
    cmd.env("DAE_JOB_ID", &job.id).env("DAE_JOB_ATTEMPT", attempt.to_string());
    if let Some(g) = gpu {
        cmd.env("CUDA_VISIBLE_DEVICES", g).env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    }
    let lock_fd = lock.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Die with the runner (SIGTERM: the trainer stops cleanly).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(ExitCode::Interrupted.code() as i32);
            }
            // Keep the run folder's lock held while the job lives, even if the runner dies first.
            let flags = libc::fcntl(lock_fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(lock_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| SweepError::Io { path: launcher.program.clone(), action: "cannot start the job", source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_pool_gives_the_smallest_free_index_and_shares_gpus() {
        let mut p = GpuPool::new(2, 2);
        assert_eq!([p.take(), p.take(), p.take(), p.take(), p.take()], [Some(0), Some(0), Some(1), Some(1), None]);
        p.give(1);
        assert_eq!(p.take(), Some(1));
        p.give(0);
        assert_eq!(p.take(), Some(0));
    }
}
