//! `cargo xtask`: the workspace's task runner (a thin front; the work lives
//! in library crates and their binaries, which this starts as processes).
//!
//! ```text
//! cargo xtask data preview                 # PNG grid of the synthetic data set
//! cargo xtask data synth --size 128        # generate and cache a data set
//! cargo xtask data inspect --kind mini-mias --root ../shared/data/mini-mias --split --json
//! cargo xtask data difficulty              # logistic-regression AUCs on the ground truth
//! ```

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
