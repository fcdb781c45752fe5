//! `cargo xtask`: the workspace's task runner (a thin front; the work lives
//! in library crates and their binaries, which this starts as processes).
//!
//! ```text
//! cargo xtask data preview                 # PNG grid of the synthetic data set
//! cargo xtask data synth --size 128        # generate and cache a data set
//! cargo xtask data inspect --kind mini-mias --root ../shared/data/mini-mias --split --json
//! cargo xtask data difficulty              # logistic-regression AUCs on the ground truth
//! cargo xtask plan experiments/table2-ablation.toml --profile quick   # the dry run
//! cargo xtask run experiments/table2-ablation.toml --profile quick --jobs 2
//! cargo xtask status                       # done / failed / pending per experiment
//! cargo xtask tables experiments/table2-ablation.toml    # Markdown / LaTeX / CSV tables
//! cargo xtask figures experiments/sweep-tau-p.toml       # PNG / SVG figures
//! cargo xtask diff 3fa2 9c1e               # two runs: config, metrics, DeLong's test
//! cargo xtask reproduce --profile quick    # all tables and the sweep: run, then tables and figures
//! ```
//!
//! Every command but `data` builds the trainer (`dae-train`), the runner
//! (`dae-sweep`) and the reporter (`dae-report`) in release mode (naming
//! all three to cargo: one feature set, see `tool_build`) and starts one of
//! them from the workspace root, so relative paths in arguments are
//! relative to the root.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "DAE-GCN workspace tasks", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Data sets: `synth`, `preview`, `inspect`, `split`, `derive-prior`, `decode` (a DICOM file to .npy/PNG),
    /// `conformance` (our DICOM decoding against reference arrays; see `cargo xtask data --help`),
    /// and `difficulty` (how much label signal the generator's factors carry).
    #[command(disable_help_flag = true)]
    Data {
        /// Arguments for the `dae-data` tool, e.g. `preview --out results/data-preview.png`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The dry run of an experiment: every job, its id, status, and what `run` would do and why.
    #[command(disable_help_flag = true)]
    Plan {
        /// e.g. `experiments/table2-ablation.toml --profile quick [--json]` (`cargo xtask plan --help` for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs what is not done of an experiment (local pool or Slurm arrays).
    #[command(disable_help_flag = true)]
    Run {
        /// e.g. `experiments/table2-ablation.toml --profile quick --jobs 2` (`cargo xtask run --help` for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What is done, running and failed, per experiment.
    #[command(disable_help_flag = true)]
    Status {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Tables (Markdown, LaTeX, CSV) of experiments into results/tables.
    #[command(disable_help_flag = true)]
    Tables {
        /// e.g. `experiments/table2-ablation.toml --profile quick` (`cargo xtask tables --help` for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Figures (PNG, SVG) of experiments into results/figures.
    #[command(disable_help_flag = true)]
    Figures {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Two runs side by side: config keys that differ, metrics with B - A, DeLong's test of the test AUCs.
    #[command(disable_help_flag = true)]
    Diff {
        /// Two run folders, run ids or unique id prefixes, e.g. `3fa2 9c1e` (`cargo xtask diff --help` for all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs Tables 1-3 and the tau x p sweep, then renders every table and figure.
    Reproduce(Reproduce),
}

/// The experiment files `reproduce` runs and reports, in report order.
const REPRODUCE: [&str; 4] = [
    "experiments/table2-ablation.toml",
    "experiments/table1-methods.toml",
    "experiments/table3-attributes.toml",
    "experiments/sweep-tau-p.toml",
];

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  cargo xtask reproduce --profile quick           # about 10 minutes on 2 cores (about 18 the first time: builds)\n  cargo xtask reproduce --profile smoke           # seconds per job: checks the pipeline\n  cargo xtask reproduce --profile paper --gpus 0,1          # builds the cuda trainer into target/cuda first\n  cargo xtask reproduce --profile paper --gpus 0 --trainer /path/to/cuda/dae-train\n  cargo xtask reproduce --profile paper --backend slurm"
)]
struct Reproduce {
    /// smoke (CI), quick (a laptop CPU) or paper (a GPU).
    #[arg(long, default_value = "quick")]
    profile: String,
    /// local or slurm.
    #[arg(long, default_value = "local")]
    backend: String,
    /// Concurrent CPU jobs (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// GPU ids for the paper profile (default: $CUDA_VISIBLE_DEVICES).
    #[arg(long)]
    gpus: Option<String>,
    /// The results folder.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// A prebuilt trainer (e.g. the cuda build); default: build `dae-train` (CPU, or with `--gpus` the cuda build into target/cuda).
    #[arg(long)]
    trainer: Option<PathBuf>,
    /// An override applied to every job after the profile (repeatable), e.g. `--set optim.lr=3e-4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Seeds replacing the profile's, e.g. `0-4` or `0,3,7`.
    #[arg(long)]
    seeds: Option<String>,
    /// Use dev-profile builds (what `cargo test` already built; CI's smoke run) instead of release.
    #[arg(long)]
    dev: bool,
    /// More options for `run` (e.g. --retries 1 --rerun-failed).
    #[arg(last = true)]
    run_args: Vec<String>,
}

impl Reproduce {
    /// `--set` and `--seeds` as the runner and the reporter take them.
    fn set_args(&self) -> Vec<String> {
        let mut a: Vec<String> = self.set.iter().flat_map(|s| ["--set".to_string(), s.clone()]).collect();
        if let Some(s) = &self.seeds {
            a.extend(["--seeds".to_string(), s.clone()]);
        }
        a
    }
}

fn reproduce(r: &Reproduce) -> std::io::Result<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    let profile_dir = if r.dev { "debug" } else { "release" };
    // The jobs start as soon as the trainer and the runner are built; the
    // reporter builds beside them, sharing their dependencies
    // ([`tool_build`], docs/performance.md).
    let mut reporter = None;
    if r.dev {
        eprintln!("building dae-train, dae-sweep and dae-report (debug: what `cargo test` builds)...");
        let built = build_dev_like_tests()?;
        if !built.success() {
            return Ok(built);
        }
    } else {
        eprintln!("building dae-train and dae-sweep (release; the first build takes about 6 minutes on 2 cores)...");
        let built = tool_build(&["dae-train", "dae-sweep"]).status()?;
        if !built.success() {
            return Ok(built);
        }
        reporter = Some(ReporterBuild::start()?);
    }
    let bin = |name: &str| target_dir().join(profile_dir).join(name);
    let results = project_root().join(&r.results);
    let common: Vec<String> = vec!["--profile".into(), r.profile.clone(), "--results".into(), results.display().to_string()];
    let trainer = match (&r.trainer, &r.gpus) {
        (Some(t), _) => project_root().join(t),
        (None, Some(_)) if !r.dev => {
            let built = build_cuda_trainer()?;
            if !built.success() {
                return Ok(built);
            }
            target_dir().join("cuda").join("release").join("dae-train")
        }
        (None, _) => target_dir().join(profile_dir).join("dae-train"),
    };
    let ran = run_all(r, &bin("dae-sweep"), &trainer, &common)?;
    if ran.code() == Some(130) || ran.code().is_some_and(|c| c >= 2) {
        eprintln!("the run stopped (exit {}); tables not rendered", ran.code().unwrap_or(-1));
        return Ok(ran);
    }
    if let Some(b) = reporter {
        let built = b.wait()?;
        if !built.success() {
            return Ok(built);
        }
    }
    let reported = Command::new(bin("dae-report"))
        .current_dir(project_root())
        .arg("all")
        .args(REPRODUCE)
        .args(&common)
        .args(&r.set_args())
        .status()?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "reproduce --profile {} finished in {:.0} s ({:.1} min): tables in {}, figures in {}",
        r.profile,
        secs,
        secs / 60.0,
        results.join("tables").display(),
        results.join("figures").display()
    );
    if !ran.success() {
        list_failures(r, &bin("dae-sweep"), &common);
        return Ok(ran);
    }
    Ok(reported)
}

/// The failures last, with their logs, where the user's eye lands.
fn list_failures(r: &Reproduce, sweep: &std::path::Path, common: &[String]) {
    eprintln!("some jobs failed (the tables count them as missing); their logs:");
    let listed = Command::new(sweep).current_dir(project_root()).arg("status").args(REPRODUCE).args(common).args(r.set_args()).status();
    if let Err(e) = listed {
        eprintln!("(cannot run `dae-sweep status`: {e}; `cargo xtask status` lists them)");
    }
}

/// `dae-sweep run` over the `REPRODUCE` files with `reproduce`'s options.
fn run_all(
    r: &Reproduce,
    sweep: &std::path::Path,
    trainer: &std::path::Path,
    common: &[String],
) -> std::io::Result<std::process::ExitStatus> {
    let jobs = r.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut run = Command::new(sweep);
    run.current_dir(project_root()).arg("run").args(REPRODUCE).args(common).arg("--trainer").arg(trainer);
    run.args(["--backend", &r.backend, "--jobs", &jobs.to_string()]).args(r.set_args());
    if let Some(g) = &r.gpus {
        run.args(["--gpus", g]);
    }
    run.args(&r.run_args);
    eprintln!("running {} (profile {}, {jobs} CPU slots)...", REPRODUCE.join(", "), r.profile);
    run.status()
}

/// The release build of the three binaries `cargo xtask` starts: trainer,
/// runner and reporter. cargo resolves features over the packages named
/// with `-p`, so every build here names all three: the dependencies they
/// share are compiled once, in one feature set (built one package at a
/// time, many are compiled twice, since their features differ), whichever
/// of the binaries a build asks for (`--bin`). The trainer is built without
/// its default `candle-datasets` feature: it batches the same tensors
/// itself, and candle-datasets' Hugging Face hub, parquet and tokenizer
/// stack would double the first build (docs/performance.md).
fn tool_build(bins: &[&str]) -> Command {
    let mut c = cargo();
    c.args(["build", "--release", "--quiet", "--no-default-features"]);
    c.args(["-p", "dae-train", "-p", "dae-sweep", "-p", "dae-report"]);
    for b in bins {
        c.args(["--bin", b]);
    }
    c
}

/// Builds the three binaries ([`tool_build`]), saying so when that takes
/// more than a moment (a first build, or a wait for another build of this
/// target folder).
fn build_tools() -> std::io::Result<std::process::ExitStatus> {
    let mut child = tool_build(&[]).spawn()?;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(2) {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!(
        "building dae-train, dae-sweep and dae-report (release; the first build takes about 9 minutes on 2 cores, \
         and a build already running in this target folder, such as the reporter's that `reproduce` starts beside its jobs, \
         is waited for)..."
    );
    child.wait()
}

/// The reporter's release build, started in the background with its
/// output in a log file (shown if it fails).
struct ReporterBuild {
    child: std::process::Child,
    log: PathBuf,
}

impl ReporterBuild {
    fn start() -> std::io::Result<ReporterBuild> {
        std::fs::create_dir_all(target_dir())?;
        let log = target_dir().join("xtask-dae-report-build.log");
        let out = std::fs::File::create(&log)?;
        let child = tool_build(&["dae-report"]).stdout(out.try_clone()?).stderr(out).spawn()?;
        Ok(ReporterBuild { child, log })
    }

    fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("waiting for the build of dae-report...");
        }
        let status = self.child.wait()?;
        if !status.success() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("{text}error: building dae-report failed (log: {})", self.log.display());
        }
        Ok(status)
    }
}

/// `--gpus` without `--trainer`: the trainer with the `cuda` feature, in its
/// own target folder (`target/cuda`) so the CPU build stays as it is. Needs
/// the CUDA toolkit (`docs/gpu-build.md`).
fn build_cuda_trainer() -> std::io::Result<std::process::ExitStatus> {
    eprintln!("--gpus without --trainer: building dae-train with the cuda feature into target/cuda (needs nvcc; docs/gpu-build.md)...");
    let dir = target_dir().join("cuda");
    cargo()
        .args(["build", "--release", "--quiet", "--no-default-features", "--features", "cuda", "-p", "dae-train", "--target-dir"])
        .arg(dir)
        .status()
}

/// The dev binaries exactly as `cargo test --workspace` builds them (a no-op
/// right after the tests; CI's smoke run).
fn build_dev_like_tests() -> std::io::Result<std::process::ExitStatus> {
    cargo().args(["test", "--workspace", "--no-run", "--quiet"]).status()
}

/// Builds the three binaries (the trainer too, so that the shared
/// dependencies keep one variant: [`tool_build`]) and starts the reporter.
fn report(cmd: &str, args: &[String]) -> std::io::Result<std::process::ExitStatus> {
    let built = build_tools()?;
    if !built.success() {
        return Ok(built);
    }
    Command::new(target_dir().join("release").join("dae-report")).current_dir(project_root()).arg(cmd).args(args).status()
}

/// The target folder cargo builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { project_root().join(p) })
        .unwrap_or_else(|| project_root().join("target"))
}

/// Builds the three binaries ([`tool_build`]), then starts the runner.
fn sweep(cmd: &str, args: &[String]) -> std::io::Result<std::process::ExitStatus> {
    let built = build_tools()?;
    if !built.success() {
        return Ok(built);
    }
    Command::new(target_dir().join("release").join("dae-sweep")).current_dir(project_root()).arg(cmd).args(args).status()
}

/// The workspace root (the folder above this crate).
fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project_root());
    // `cargo run` gave this process the xtask package's variables; build
    // scripts that track them (ring tracks CARGO_MANIFEST_DIR) would see a
    // change and rebuild half the dependency tree on every switch between
    // `cargo xtask` and plain `cargo build`.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&k.as_ref())
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.cmd {
        Cmd::Data { args } => {
            let mut c = cargo();
            if args.first().map(String::as_str) == Some("difficulty") {
                c.args(["run", "--quiet", "-p", "dae-data", "--example", "difficulty", "--"]).args(&args[1..]);
            } else {
                c.args(["run", "--quiet", "-p", "dae-data", "--bin", "dae-data", "--"]).args(&args);
            }
            c.status()
        }
        Cmd::Plan { args } => sweep("plan", &args),
        Cmd::Run { args } => sweep("run", &args),
        Cmd::Status { args } => sweep("status", &args),
        Cmd::Tables { args } => report("tables", &args),
        Cmd::Figures { args } => report("figures", &args),
        Cmd::Diff { args } => report("diff", &args),
        Cmd::Reproduce(r) => reproduce(&r),
    };
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("error: cannot start cargo: {e}");
            ExitCode::from(2)
        }
    }
}
