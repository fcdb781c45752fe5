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
//! ```
//!
//! `plan`, `run` and `status` build the trainer (`dae-train`) and the runner
//! (`dae-sweep`) in release mode and start the runner from the workspace
//! root, so relative paths in arguments are relative to the root.

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
    /// Data sets: `synth`, `preview`, `inspect`, `split`, `derive-prior` (see `cargo xtask data --help`),
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
}

/// The target folder cargo builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { project_root().join(p) })
        .unwrap_or_else(|| project_root().join("target"))
}

/// Builds the trainer and the runner (release), then starts the runner.
fn sweep(cmd: &str, args: &[String]) -> std::io::Result<std::process::ExitStatus> {
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    if !help {
        eprintln!("building dae-train and dae-sweep (release)...");
    }
    let built = cargo().args(["build", "--release", "--quiet", "-p", "dae-train", "-p", "dae-sweep"]).status()?;
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
