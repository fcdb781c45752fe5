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
    run_local, run_slurm, Event, Experiment, Launcher, LocalOptions, RerunPolicy, SlurmCli, SlurmOptions, SweepError, TrainerResolver,
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
        /// Print events as JSON lines on stdout instead of the progress display.
        #[arg(long)]
        json_events: bool,
    },
    /// What is done, running and failed, per experiment (default: every experiments/*.toml) and over the results folder.
    Status {
        files: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn trainer_path(c: &Common) -> PathBuf {
    dae_sweep::plan::trainer_path(c.trainer.as_deref())
}

fn policy(r: Rerun) -> RerunPolicy {
    RerunPolicy { force: r.force, rerun_failed: r.rerun_failed, rerun_stale: r.rerun_stale }
}

fn fail(e: SweepError) -> ExitCode {
    let code = match e {
        SweepError::Trainer { .. } | SweepError::Slurm(_) => 3,
        _ => 2,
    };
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(code)
}

fn load(file: &Path) -> Result<Experiment, SweepError> {
    Experiment::load(file)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Plan { files, common, rerun, json } => {
            let resolver = TrainerResolver { program: trainer_path(&common) };
            for file in &files {
                let planned = load(file)
                    .and_then(|exp| plan(&exp, common.profile.as_deref(), &resolver, &common.results, policy(rerun)))
                    .and_then(|mut p| p.select(&common.only).map(|_| p));
                match planned {
                    Ok(p) => {
                        if json {
                            print!("{}", p.to_json_lines());
                        } else {
                            print!("{}", p.render());
                        }
                    }
                    Err(e) => return fail(e),
                }
            }
            ExitCode::SUCCESS
        }
        Cmd::Run { files, common, rerun, backend, jobs, gpus, jobs_per_gpu, retries, fail_fast, dry_run, json_events } => {
            let trainer = trainer_path(&common);
            let resolver = TrainerResolver { program: trainer.clone() };
            let mut exps = Vec::new();
            let mut plans = Vec::new();
            for file in &files {
                let exp = match load(file) {
                    Ok(e) => e,
                    Err(e) => return fail(e),
                };
                match plan(&exp, common.profile.as_deref(), &resolver, &common.results, policy(rerun))
                    .and_then(|mut p| p.select(&common.only).map(|_| p))
                {
                    Ok(p) => plans.push(p),
                    Err(e) => return fail(e),
                }
                exps.push(exp);
            }
            let exp = exps[0].clone();
            // One pool for every file: a job named by several files runs once.
            let mut p = plans[0].clone();
            let mut seen: std::collections::HashSet<String> = p.jobs.iter().map(|j| j.job.id.clone()).collect();
            for other in &plans[1..] {
                p.not_implemented.extend(other.not_implemented.iter().cloned());
                for j in &other.jobs {
                    if seen.insert(j.job.id.clone()) {
                        p.jobs.push(j.clone());
                    }
                }
            }
            for (e, pl) in exps.iter().zip(&plans) {
                for v in &pl.not_implemented {
                    eprintln!("note: {}: row `{}` ({}) is not implemented yet and is not run", e.name, v.name, v.label);
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
                    eprintln!("warning: cannot handle signal {sig}: {e}");
                }
            }
            let mut term = if json_events { None } else { Some(TerminalReporter::new(false)) };
            let mut json = JsonReporter { out: std::io::stdout() };
            let mut on_event = |ev: &Event| match &mut term {
                Some(t) => t.report(ev),
                None => json.report(ev),
            };
            let result = match backend {
                Backend::Local => {
                    let opts = LocalOptions {
                        cpu_slots: jobs,
                        gpus: gpus.unwrap_or_else(inherited_gpus),
                        jobs_per_gpu,
                        retries,
                        fail_fast,
                        policy: policy(rerun),
                        ..LocalOptions::default()
                    };
                    if dry_run {
                        eprintln!("--dry-run is for the Slurm backend; for the local backend, `plan` is the dry run");
                        return ExitCode::from(2);
                    }
                    let mut launcher = Launcher::new(&trainer);
                    // Share the cores between the slots instead of oversubscribing them.
                    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                        launcher.env.push(("RAYON_NUM_THREADS".into(), (cores / jobs.max(1)).max(1).to_string()));
                    }
                    run_local(&p.jobs, &common.results, &p.code_version, &launcher, &opts, &stop, &mut on_event)
                }
                Backend::Slurm => {
                    let prof = exp.select_profile(common.profile.as_deref()).ok().flatten();
                    let config = prof.and_then(|(_, pr)| pr.slurm.clone()).or_else(|| exp.slurm.clone()).unwrap_or_default();
                    let opts = SlurmOptions {
                        config,
                        name: exp.name.clone(),
                        trainer: trainer.clone(),
                        workdir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
                        retries,
                        fail_fast,
                        policy: policy(rerun),
                        dry_run,
                    };
                    match run_slurm(&p.jobs, &common.results, &p.code_version, &opts, &SlurmCli, &stop, &mut on_event) {
                        Ok((s, scripts)) => {
                            if dry_run {
                                for (i, sc) in scripts.iter().enumerate() {
                                    println!("# ---- array {i} ({} jobs to run in all)\n{sc}", p.to_run());
                                }
                                if scripts.is_empty() {
                                    println!("# nothing to submit: every job is done or skipped");
                                }
                            }
                            Ok(s)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(s) if s.interrupted > 0 || stop.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::from(130),
                Ok(s) if s.failed > 0 => ExitCode::from(1),
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Cmd::Status { files, common } => status(files, &common),
    }
}

fn status(files: Vec<PathBuf>, common: &Common) -> ExitCode {
    let files = if files.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir("experiments")
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect())
            .unwrap_or_default();
        v.sort();
        v
    } else {
        files
    };
    let resolver = TrainerResolver { program: trainer_path(common) };
    let mut code = ExitCode::SUCCESS;
    for f in &files {
        match load(f)
            .and_then(|exp| plan(&exp, common.profile.as_deref(), &resolver, &common.results, RerunPolicy::default()))
            .and_then(|mut p| p.select(&common.only).map(|_| p))
        {
            Ok(p) => {
                let counts = p.counts().iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", ");
                println!(
                    "{:<22} profile {:<7} {:>4} jobs: {}",
                    p.experiment,
                    p.profile.as_deref().unwrap_or("-"),
                    p.jobs.len(),
                    if counts.is_empty() { "none".into() } else { counts }
                );
                for j in p.jobs.iter().filter(|j| matches!(j.status, dae_sweep::Status::Failed { .. })) {
                    println!(
                        "    failed {} {}: log {}",
                        j.job.short_id(),
                        j.job.describe(),
                        dae_sweep::RunDir::new(&common.results, &j.job.id).log().display()
                    );
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                code = ExitCode::from(2);
            }
        }
    }
    // Every run folder, whichever experiment made it.
    let runs = common.results.join("runs");
    let mut by: std::collections::BTreeMap<&'static str, usize> = Default::default();
    if let Ok(d) = std::fs::read_dir(&runs) {
        for e in d.flatten() {
            if e.path().is_dir() {
                *by.entry(dae_sweep::RunDir { path: e.path() }.status("").word()).or_default() += 1;
            }
        }
    }
    let total: usize = by.values().sum();
    println!(
        "{}: {total} run folders{}",
        runs.display(),
        if total == 0 {
            String::new()
        } else {
            format!(" ({})", by.iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", "))
        }
    );
    code
}
