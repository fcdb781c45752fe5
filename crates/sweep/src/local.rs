//! The local backend: a pool of CPU and GPU slots, one process per job.
//!
//! Each job's process gets its run folder's lock (an inherited `flock`ed
//! descriptor, so a job outliving a killed runner still holds it), its own
//! `CUDA_VISIBLE_DEVICES` when it takes a GPU slot, a log file, and
//! `PR_SET_PDEATHSIG = SIGTERM`, so killing the runner, even with SIGKILL,
//! stops its jobs cleanly (the trainer leaves them incomplete).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::SweepError;
use crate::events::{Event, JobRef, Outcome, Summary};
use crate::plan::{Action, Job, PlannedJob, RerunPolicy};
use crate::runs::{ExitRecord, RunDir, Status, EXIT_INTERRUPTED};

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
    log: PathBuf,
    _lock: File,
}

/// Runs the planned jobs marked [`Action::Run`]; the others are reported as
/// skipped. Returns when every job has finished, or after a stop request
/// (`stop` set, e.g. by SIGINT/SIGTERM) once the running jobs have exited.
pub fn run_local(
    planned: &[PlannedJob],
    results: &Path,
    code_version: &str,
    launcher: &Launcher,
    opts: &LocalOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, SweepError> {
    let t0 = Instant::now();
    let jobs: Vec<&Job> = planned.iter().map(|p| &p.job).collect();
    if opts.cpu_slots == 0 && planned.iter().any(|p| p.action == Action::Run && !p.job.gpu) {
        return Err(SweepError::Usage("--jobs 0 leaves no slot for the CPU jobs of this plan".into()));
    }
    if let Some(p) = planned.iter().find(|p| p.action == Action::Run && p.job.gpu && p.job.device != "cuda" && p.job.device != "cuda:0") {
        return Err(SweepError::Usage(format!(
            "job {} ({}) has device = \"{}\": under the runner use device = \"cuda\"; each job sees only its own GPU through CUDA_VISIBLE_DEVICES",
            p.job.short_id(),
            p.job.describe(),
            p.job.device
        )));
    }
    if opts.gpus.is_empty() {
        if let Some(p) = planned.iter().find(|p| p.action == Action::Run && p.job.gpu) {
            return Err(SweepError::Usage(format!(
                "job {} ({}) asks for a GPU (device = cuda) but no GPUs were given: pass --gpus 0,1 or set CUDA_VISIBLE_DEVICES",
                p.job.short_id(),
                p.job.describe()
            )));
        }
    }
    let mut summary = Summary { planned: planned.len(), ..Summary::default() };
    let mut queue: VecDeque<(usize, u32)> = VecDeque::new();
    for (i, p) in planned.iter().enumerate() {
        if p.action == Action::Run {
            queue.push_back((i, 1));
        } else {
            summary.skipped += 1;
        }
    }
    on_event(&Event::RunStarted { total: planned.len(), to_run: queue.len(), skipped: summary.skipped });
    for p in planned.iter().filter(|p| p.action == Action::Skip) {
        on_event(&Event::JobSkipped { job: JobRef::of(&p.job), reason: p.reason.clone() });
    }

    let (tx, rx) = mpsc::channel::<(usize, std::io::Result<ExitStatus>)>();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut cpu_free = opts.cpu_slots;
    let mut gpus = GpuPool::new(opts.gpus.len(), opts.jobs_per_gpu);
    let mut waiting: Vec<(usize, u32)> = Vec::new();
    let mut waiting_announced = std::collections::HashSet::new();
    let mut last_wait_check = Instant::now();
    let mut stopping = false;
    let mut halted = false;

    loop {
        if !stopping && stop.load(Ordering::SeqCst) {
            stopping = true;
            on_event(&Event::Stopping { reason: "signal received: stopping the running jobs (they stay incomplete)".into() });
            for r in running.values() {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe {
                    libc::kill(r.pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        if !stopping && !halted {
            if !waiting.is_empty() && (queue.is_empty() || last_wait_check.elapsed() >= opts.wait_poll) {
                if queue.is_empty() && last_wait_check.elapsed() < opts.wait_poll {
                    std::thread::sleep(opts.wait_poll.saturating_sub(last_wait_check.elapsed()).min(Duration::from_millis(50)));
                } else {
                    queue.extend(waiting.drain(..));
                    last_wait_check = Instant::now();
                }
            }
            let mut i = 0;
            while i < queue.len() {
                let (ix, attempt) = queue[i];
                let job = jobs[ix];
                let slot = if job.gpu {
                    match gpus.take() {
                        Some(g) => Some(Some(g)),
                        None => None,
                    }
                } else if cpu_free > 0 {
                    cpu_free -= 1;
                    Some(None)
                } else {
                    None
                };
                let Some(gpu) = slot else {
                    i += 1;
                    continue;
                };
                queue.remove(i);
                let release = |cpu_free: &mut usize, gpus: &mut GpuPool| match gpu {
                    Some(g) => gpus.give(g),
                    None => *cpu_free += 1,
                };
                let rd = RunDir::new(results, &job.id);
                let lock = match rd.try_lock() {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        release(&mut cpu_free, &mut gpus);
                        if waiting_announced.insert(ix) {
                            on_event(&Event::JobWaiting { job: JobRef::of(job) });
                        }
                        waiting.push((ix, attempt));
                        continue;
                    }
                    Err(e) => {
                        release(&mut cpu_free, &mut gpus);
                        finish_failed_launch(job, attempt, &rd, e.to_string(), &mut summary, on_event);
                        continue;
                    }
                };
                if attempt > 1 && matches!(rd.status_unlocked(code_version), Status::Done | Status::Stale { .. }) {
                    // Between attempts the folder was unlocked: another runner finished the job.
                    release(&mut cpu_free, &mut gpus);
                    summary.done_elsewhere += 1;
                    on_event(&Event::JobSkipped { job: JobRef::of(job), reason: "finished by another runner".into() });
                    continue;
                }
                if attempt == 1 {
                    // Under the lock, look again: another runner may have finished it.
                    let status = rd.status_unlocked(code_version);
                    let again = matches!(status, Status::Done | Status::Stale { .. }) && waiting_announced.contains(&ix);
                    if again {
                        release(&mut cpu_free, &mut gpus);
                        summary.done_elsewhere += 1;
                        on_event(&Event::JobSkipped { job: JobRef::of(job), reason: "finished by another runner".into() });
                        continue;
                    }
                    let (action, _) = opts.policy.decide(&status, code_version);
                    if action == Action::Skip {
                        release(&mut cpu_free, &mut gpus);
                        summary.skipped += 1;
                        on_event(&Event::JobSkipped {
                            job: JobRef::of(job),
                            reason: format!("{} (changed since the plan)", status.word()),
                        });
                        continue;
                    }
                    if opts.policy.archives_first(&status) {
                        if let Err(e) = rd.archive(results) {
                            release(&mut cpu_free, &mut gpus);
                            finish_failed_launch(job, attempt, &rd, e.to_string(), &mut summary, on_event);
                            continue;
                        }
                    }
                }
                match launch(job, attempt, &rd, &lock, gpu.map(|g| opts.gpus[g].as_str()), launcher) {
                    Ok(mut child) => {
                        let pid = child.id();
                        let tx = tx.clone();
                        std::thread::spawn(move || {
                            let r = child.wait();
                            let _ = tx.send((ix, r));
                        });
                        let slot = match gpu {
                            Some(g) => format!("gpu {}", opts.gpus[g]),
                            None => "cpu".into(),
                        };
                        on_event(&Event::JobStarted { job: JobRef::of(job), attempt, slot, log: rd.log() });
                        running.insert(ix, Running { attempt, started: Instant::now(), gpu, pid, log: rd.log(), _lock: lock });
                    }
                    Err(e) => {
                        release(&mut cpu_free, &mut gpus);
                        finish_failed_launch(job, attempt, &rd, e.to_string(), &mut summary, on_event);
                        if opts.fail_fast {
                            halted = true;
                        }
                    }
                }
            }
        }
        if running.is_empty() && (queue.is_empty() && waiting.is_empty() || stopping || halted) {
            break;
        }
        let Ok((ix, status)) = rx.recv_timeout(Duration::from_millis(50)) else { continue };
        let r = running.remove(&ix).expect("a job we started");
        match r.gpu {
            Some(g) => gpus.give(g),
            None => cpu_free += 1,
        }
        let job = jobs[ix];
        let rd = RunDir::new(results, &job.id);
        let seconds = r.started.elapsed().as_secs_f64();
        // A Ctrl-C reaches the jobs (same process group) before this loop may have seen the flag.
        let stopping_now = stopping || stop.load(Ordering::SeqCst);
        let passed = matches!(&status, Ok(s) if s.code() == Some(0)) && rd.path.join("done").exists();
        let outcome = match &status {
            Err(e) => Outcome::LaunchError { message: format!("cannot wait for the job: {e}") },
            Ok(_) if passed => Outcome::Pass,
            Ok(_) if stopping_now => Outcome::Interrupted,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(EXIT_INTERRUPTED), _) => Outcome::Interrupted,
                (Some(c), _) => Outcome::Fail { exit: c },
                (None, Some(sig)) => Outcome::Crashed { signal: sig },
                (None, None) => Outcome::Crashed { signal: 0 },
            },
        };
        // A job the runner stopped leaves no exit record: its run stays incomplete.
        if let Ok(s) = &status {
            if passed || !stopping_now {
                let rec = ExitRecord { exit_code: s.code(), signal: s.signal(), attempt: r.attempt, backend: "local".into(), seconds };
                if let Err(e) = rd.write_exit(&rec) {
                    tracing::warn!("{e}");
                }
            }
        }
        drop(r._lock);
        if outcome.is_retryable() && r.attempt <= opts.retries && !stopping_now {
            summary.retries += 1;
            on_event(&Event::JobRetrying { job: JobRef::of(job), attempt: r.attempt, outcome, log: r.log });
            queue.push_front((ix, r.attempt + 1));
            continue;
        }
        match &outcome {
            Outcome::Pass => summary.passed += 1,
            Outcome::Interrupted => summary.interrupted += 1,
            _ => summary.failed += 1,
        }
        let failed = outcome.is_failure();
        on_event(&Event::JobFinished { job: JobRef::of(job), attempt: r.attempt, outcome, seconds, log: r.log });
        if failed && opts.fail_fast && !halted {
            halted = true;
            on_event(&Event::Stopping { reason: "--fail-fast: a job failed; letting the running jobs finish, starting no more".into() });
        }
    }
    summary.not_started = queue.len() + waiting.len();
    summary.seconds = t0.elapsed().as_secs_f64();
    on_event(&Event::RunFinished { summary: summary.clone() });
    Ok(summary)
}

fn finish_failed_launch(job: &Job, attempt: u32, rd: &RunDir, message: String, summary: &mut Summary, on_event: &mut dyn FnMut(&Event)) {
    summary.failed += 1;
    on_event(&Event::JobFinished { job: JobRef::of(job), attempt, outcome: Outcome::LaunchError { message }, seconds: 0.0, log: rd.log() });
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
    let header = format!("attempt {attempt} of job {} ({}) at unix time {}", job.id, job.describe(), unix_now());
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
                libc::_exit(EXIT_INTERRUPTED);
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

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
