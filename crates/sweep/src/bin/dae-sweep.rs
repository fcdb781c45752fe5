//! `dae-sweep plan|run|status`: the runner's command line (`cargo xtask
//! plan|run|status` builds and starts it).
//!
//! Exit codes: 0 everything asked for is done, 1 a job failed, 2 bad
//! arguments or experiment file, 3 the trainer or Slurm could not be used,
//! 130 interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dae_sweep::local::inherited_gpus;
use dae_sweep::plan::plan;
use dae_sweep::reporter::{JsonReporter, TerminalReporter};
use dae_sweep::{
    run_local, run_slurm, Event, Experiment, Launcher, LocalOptions, Manifest, Plan, RerunPolicy, SlurmCli, SlurmOptions, Summary,
    SweepError, TrainerResolver,
};

#[derive(Parser)]
#[command(name = "dae-sweep", version, about = "Plan and run experiment matrices of dae-train jobs")]
#[command(after_help = "Examples:
  dae-sweep plan experiments/table2-ablation.toml --profile quick
  dae-sweep run experiments/table2-ablation.toml --profile quick --jobs 2
  dae-sweep run experiments/sweep-tau-p.toml --profile paper --backend slurm --dry-run
  dae-sweep status

Exit codes: 0 done, 1 a job failed, 2 bad arguments or experiment file, 3 trainer or Slurm unusable, 130 interrupted.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// The results folder (run folders go to DIR/runs/<id>/).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// The trainer binary (default: `dae-train` beside this program, or $DAE_TRAINER).
    #[arg(long)]
    trainer: Option<PathBuf>,
    /// A named profile of the experiment (smoke, quick, paper, ...); default: the file's default_profile.
    #[arg(long)]
    profile: Option<String>,
    /// Only the jobs with KEY=VALUE (repeatable): `variant=row7`, `seed=0`, or a
    /// job-config key such as `model.tau=0.2` or `method=icadx`. Values of one
    /// key are alternatives; different keys must all match.
    #[arg(long, value_name = "KEY=VALUE")]
    only: Vec<dae_sweep::plan::Only>,
    #[command(flatten)]
    overrides: dae_sweep::overrides::OverrideArgs,
}

#[derive(Args, Clone, Copy)]
struct Rerun {
    /// Rerun every job from the start, finished and interrupted ones included
    /// (old and partial runs are moved to DIR/archive/; without --force an
    /// interrupted run resumes from its checkpoint).
    #[arg(long)]
    force: bool,
    /// Rerun jobs whose last attempt failed.
    #[arg(long)]
    rerun_failed: bool,
    /// Rerun jobs finished by another code version.
    #[arg(long)]
    rerun_stale: bool,
    #[command(flatten)]
    verify: Verify,
}

/// How finished runs are checked. Their sealed files' sizes always; a
/// damaged run is archived and rerun.
#[derive(Args, Clone, Copy)]
struct Verify {
    /// Also hash every finished run's sealed files against its `done` record
    /// (finds a file changed in place; reads every artefact).
    #[arg(long)]
    verify: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Local,
    Slurm,
}

#[derive(Subcommand)]
enum Cmd {
    /// The dry run: every job with its id, parameters, status, and what `run` would do and why.
    Plan {
        /// One or more experiment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rerun: Rerun,
        /// One JSON object per job (`id`, `status`, `params`, `action`, `reason`).
        #[arg(long)]
        json: bool,
    },
    /// Runs what is not done.
    Run {
        /// One or more experiment files; jobs they share run once.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rerun: Rerun,
        #[command(flatten)]
        run: RunArgs,
    },
    /// What is done, running and failed, per experiment (default: every experiments/*.toml) and over the results folder.
    Status {
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        verify: Verify,
    },
}

/// How `run` runs.
#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "local")]
    backend: Backend,
    /// Concurrent CPU jobs (local backend).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// GPU ids for jobs with device = "cuda" (default: $CUDA_VISIBLE_DEVICES).
    #[arg(long, value_delimiter = ',')]
    gpus: Option<Vec<String>>,
    /// Concurrent jobs per GPU.
    #[arg(long, default_value_t = 1)]
    jobs_per_gpu: usize,
    /// Extra attempts for a failed job (not for a bad config, exit 2, or a
    /// diverged run, exit 4: those repeat exactly).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Start no more jobs after the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Slurm: print the job-array scripts instead of submitting them.
    #[arg(long)]
    dry_run: bool,
    /// Slurm: submit and exit; a later `run --backend slurm` follows the
    /// jobs to their end (and retries the failed ones), `status` shows them.
    #[arg(long)]
    detach: bool,
    /// Print events as JSON lines on stdout instead of the progress display.
    #[arg(long)]
    json_events: bool,
}

fn trainer_path(c: &Common) -> PathBuf {
    dae_sweep::plan::trainer_path(c.trainer.as_deref())
}

fn policy(r: Rerun) -> RerunPolicy {
    RerunPolicy { force: r.force, rerun_failed: r.rerun_failed, rerun_stale: r.rerun_stale, verify: r.verify.verify }
}

fn fail(e: SweepError) -> ExitCode {
    let code = match e {
        SweepError::Trainer { .. } | SweepError::Slurm(_) => 3,
        _ => 2,
    };
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(code)
}

/// Plans one experiment file, records the whole plan as the results
/// folder's manifest for the reporter, then applies `--only`.
fn planned(file: &Path, common: &Common, rerun: RerunPolicy) -> Result<(Experiment, Plan), SweepError> {
    let exp = Experiment::load(file)?.with_overrides(common.overrides.overrides())?;
    let resolver = TrainerResolver { program: trainer_path(common) };
    let mut p = plan(&exp, common.profile.as_deref(), &resolver, &common.results, rerun)?;
    Manifest::of(&p).write(&common.results)?;
    p.select(&common.only)?;
    Ok((exp, p))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Plan { files, common, rerun, json } => cmd_plan(&files, &common, rerun, json),
        Cmd::Run { files, common, rerun, run } => cmd_run(&files, &common, rerun, &run),
        Cmd::Status { files, common, verify } => return status(files, &common, verify),
    };
    result.unwrap_or_else(fail)
}

fn cmd_plan(files: &[PathBuf], common: &Common, rerun: Rerun, json: bool) -> Result<ExitCode, SweepError> {
    for file in files {
        let (_, p) = planned(file, common, policy(rerun))?;
        if json {
            print!("{}", p.to_json_lines());
        } else {
            print!("{}", p.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One pool for every file: a job named by several files runs once.
fn merged(plans: &[Plan]) -> Plan {
    let mut p = plans[0].clone();
    let mut seen: std::collections::HashSet<String> = p.jobs.iter().map(|j| j.job.id.clone()).collect();
    for other in &plans[1..] {
        p.not_implemented.extend(other.not_implemented.iter().cloned());
        p.jobs.extend(other.jobs.iter().filter(|j| seen.insert(j.job.id.clone())).cloned());
    }
    p
}

fn cmd_run(files: &[PathBuf], common: &Common, rerun: Rerun, run: &RunArgs) -> Result<ExitCode, SweepError> {
    if run.dry_run && matches!(run.backend, Backend::Local) {
        return Err(SweepError::Usage("--dry-run is for the Slurm backend; for the local backend, `plan` is the dry run".into()));
    }
    if run.detach && matches!(run.backend, Backend::Local) {
        return Err(SweepError::Usage(
            "--detach is for the Slurm backend (local jobs end with their runner; keep it alive with nohup or tmux)".into(),
        ));
    }
    let (mut exps, mut plans) = (Vec::new(), Vec::new());
    for file in files {
        let (exp, p) = planned(file, common, policy(rerun))?;
        for v in &p.not_implemented {
            eprintln!("note: {}: row `{}` ({}) is not implemented yet and is not run", exp.name, v.name, v.label);
        }
        exps.push(exp);
        plans.push(p);
    }
    let p = merged(&plans);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("warning: cannot handle signal {sig}: {e}");
        }
    }
    let mut term = if run.json_events { None } else { Some(TerminalReporter::new(false)) };
    let mut json = JsonReporter { out: std::io::stdout() };
    let mut on_event = |ev: &Event| match &mut term {
        Some(t) => t.report(ev),
        None => json.report(ev),
    };
    let summary = match run.backend {
        Backend::Local => run_on_pool(&p, common, rerun, run, &stop, &mut on_event)?,
        Backend::Slurm => run_on_slurm(&exps[0], &p, common, rerun, run, &stop, &mut on_event)?,
    };
    Ok(if summary.interrupted > 0 || stop.load(std::sync::atomic::Ordering::SeqCst) {
        ExitCode::from(130)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_on_pool(
    p: &Plan,
    common: &Common,
    rerun: Rerun,
    run: &RunArgs,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, SweepError> {
    let opts = LocalOptions {
        cpu_slots: run.jobs,
        gpus: run.gpus.clone().unwrap_or_else(inherited_gpus),
        jobs_per_gpu: run.jobs_per_gpu,
        retries: run.retries,
        fail_fast: run.fail_fast,
        policy: policy(rerun),
        ..LocalOptions::default()
    };
    let mut launcher = Launcher::new(trainer_path(common));
    // Share the cores between the slots instead of oversubscribing them.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        launcher.env.push(("RAYON_NUM_THREADS".into(), (cores / run.jobs.max(1)).max(1).to_string()));
    }
    run_local(&p.jobs, &common.results, &p.code_version, &launcher, &opts, stop, on_event)
}

fn run_on_slurm(
    exp: &Experiment,
    p: &Plan,
    common: &Common,
    rerun: Rerun,
    run: &RunArgs,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary, SweepError> {
    let prof = exp.select_profile(common.profile.as_deref()).ok().flatten();
    let config = prof.and_then(|(_, pr)| pr.slurm.clone()).or_else(|| exp.slurm.clone()).unwrap_or_default();
    let opts = SlurmOptions {
        config,
        name: exp.name.clone(),
        trainer: trainer_path(common),
        workdir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        retries: run.retries,
        fail_fast: run.fail_fast,
        policy: policy(rerun),
        dry_run: run.dry_run,
        detach: run.detach,
    };
    let (s, scripts) = run_slurm(&p.jobs, &common.results, &p.code_version, &opts, &SlurmCli, stop, on_event)?;
    if run.dry_run {
        for (i, sc) in scripts.iter().enumerate() {
            println!("# ---- array {i} ({} jobs to run in all)\n{sc}", p.to_run());
        }
        if scripts.is_empty() {
            println!("# nothing to submit: every job is done or skipped");
        }
    }
    Ok(s)
}

fn status(files: Vec<PathBuf>, common: &Common, verify: Verify) -> ExitCode {
    let files = if files.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir("experiments")
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect())
            .unwrap_or_default();
        v.sort();
        v
    } else {
        files
    };
    let mut code = ExitCode::SUCCESS;
    let mut slurm = DetachedView::load(&common.results);
    for f in &files {
        match planned(f, common, RerunPolicy { verify: verify.verify, ..RerunPolicy::default() }) {
            Ok((_, p)) => print_status(&p, &common.results, &mut slurm),
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                code = ExitCode::from(2);
            }
        }
    }
    print_folder_counts(&common.results, verify);
    code
}

/// The tasks detached runners left on Slurm, for `status`.
struct DetachedView {
    detached: dae_sweep::detach::Detached,
    squeue: dae_sweep::detach::Squeue,
}

impl DetachedView {
    fn load(results: &Path) -> DetachedView {
        let detached = dae_sweep::detach::load(results).unwrap_or_else(|e| {
            eprintln!("warning: the detached Slurm submissions cannot be read: {e}");
            Default::default()
        });
        DetachedView { detached, squeue: Default::default() }
    }

    /// Where job `id`'s detached task stands, if a detached runner submitted it.
    fn line(&mut self, id: &str, results: &Path) -> Option<String> {
        use dae_sweep::detach::Standing;
        let t = self.detached.tasks.get(id)?;
        let what = match self.squeue.standing(t, results, &SlurmCli) {
            Ok(Standing::Queued(state)) => state,
            Ok(Standing::Ended(Some(0))) => "ended".into(),
            Ok(Standing::Ended(code)) => format!(
                "ended ({}); `run --backend slurm` reports it and retries it",
                match code {
                    Some(c) => format!("exit {c}"),
                    None => "killed".into(),
                }
            ),
            Ok(Standing::Gone) => "gone from Slurm without an exit record; `run --backend slurm` submits it again".into(),
            Err(e) => format!("state unknown ({e})"),
        };
        Some(format!("Slurm task {} (attempt {}, detached): {what}", t.task(), t.attempt))
    }
}

/// One experiment's counts, then its failures with their logs, and the
/// jobs detached runners left on Slurm.
fn print_status(p: &Plan, results: &Path, slurm: &mut DetachedView) {
    let counts = p.counts().iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", ");
    println!(
        "{:<22} profile {:<7} {:>4} jobs: {}",
        p.experiment,
        p.profile.as_deref().unwrap_or("-"),
        p.jobs.len(),
        if counts.is_empty() { "none".into() } else { counts }
    );
    for j in &p.jobs {
        let dir = dae_sweep::RunDir::new(results, &j.job.id);
        let started = matches!(j.status, dae_sweep::Status::Running | dae_sweep::Status::Incomplete);
        let on_slurm = if j.status == dae_sweep::Status::Done { None } else { slurm.line(&j.job.id, results) };
        if let Some(line) = on_slurm {
            let progress = if started && dir.progress().is_some() { format!("; {}", progress_line(&dir)) } else { String::new() };
            println!("    slurm   {} {}: {line}{progress}", j.job.short_id(), j.job.describe());
            if started {
                continue;
            }
        }
        match &j.status {
            dae_sweep::Status::Failed { .. } => {
                println!("    failed  {} {}: log {}", j.job.short_id(), j.job.describe(), dir.log().display())
            }
            dae_sweep::Status::Damaged { damage } => {
                println!("    damaged {} {}: {} ({damage})", j.job.short_id(), j.job.describe(), dir.path.display())
            }
            dae_sweep::Status::Running | dae_sweep::Status::Incomplete => {
                println!("    {:<7} {} {}: {}", j.status.word(), j.job.short_id(), j.job.describe(), progress_line(&dir))
            }
            _ => {}
        }
    }
}

/// Where a started run is: its last epoch's progress and how old that is.
fn progress_line(dir: &dae_sweep::RunDir) -> String {
    let Some(p) = dir.progress() else { return "no epoch finished yet".into() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let age = dae_runfolder::human_duration(now.saturating_sub(p.updated_unix) as f64);
    format!("{} (updated {age} ago)", p.summary())
}

/// Every run folder, whichever experiment made it.
fn print_folder_counts(results: &Path, verify: Verify) {
    let check = RerunPolicy { verify: verify.verify, ..RerunPolicy::default() }.check();
    let runs = results.join(dae_runfolder::files::RUNS);
    let mut by: std::collections::BTreeMap<&'static str, usize> = Default::default();
    if let Ok(d) = std::fs::read_dir(&runs) {
        for e in d.flatten() {
            if e.path().is_dir() {
                *by.entry(dae_sweep::RunDir::at(e.path()).status_checked("", check).word()).or_default() += 1;
            }
        }
    }
    let total: usize = by.values().sum();
    let detail = if total == 0 {
        String::new()
    } else {
        format!(" ({})", by.iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", "))
    };
    println!("{}: {total} run folders{detail}", runs.display());
}
