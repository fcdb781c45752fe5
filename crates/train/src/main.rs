//! `dae-train --config JOB.toml --out DIR`: trains one job and writes its run folder.
//!
//! Exit codes ([`dae_runfolder::ExitCode`]): 0 success, 1 other error, 2 bad
//! config, 3 data error, 4 diverged (NaN or infinite loss), 5 interrupted
//! (SIGINT/SIGTERM; the run stays marked `incomplete`, and a later start on
//! the same folder resumes after its last finished epoch unless `--fresh`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use dae_runfolder::ExitCode as Exit;
use dae_train::{train_with, Job, TrainOptions};

#[derive(Parser)]
#[command(name = "dae-train", version = dae_train::CODE_VERSION, about = "Train one DAE-GCN job from a config file")]
#[command(after_help = format!(
    "Example:\n  dae-train --config experiments/jobs/dae-gcn-smoke.toml --out results/runs/smoke\n\nExit codes: {}.\n\nAn interrupted run (exit 5, or killed) resumes after its last finished epoch when started again on the same --out with the same config, data and dae-train executable; --fresh starts it over.",
    Exit::SUMMARY
))]
struct Cli {
    /// The job config (TOML).
    #[arg(long, required_unless_present = "resolve")]
    config: Option<PathBuf>,
    /// The run folder to write.
    #[arg(long, required_unless_present = "resolve")]
    out: Option<PathBuf>,
    /// For the sweep runner: read a JSON array of job configs (TOML texts) on
    /// stdin, check and resolve each without training, and print one
    /// `dae_runfolder::resolve::Response` as JSON.
    #[arg(long, conflicts_with_all = ["config", "out"])]
    resolve: bool,
    /// Start from epoch 1 even where --out holds a checkpoint of this job
    /// (by default an interrupted run resumes after its last finished epoch).
    #[arg(long)]
    fresh: bool,
    /// Sets a key of the job config (repeatable; dotted keys, TOML values:
    /// `--set optim.epochs=4 --set model.encoder=resnet18`).
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "resolve")]
    set: Vec<dae_runfolder::settings::SetArg>,
}

fn resolve_stdin() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
        eprintln!("error: cannot read stdin: {e}");
        return Exit::Other.into();
    }
    let texts: Vec<String> = match serde_json::from_str(&input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: stdin: expected a JSON array of TOML texts: {e}");
            return Exit::BadConfig.into();
        }
    };
    let response = dae_runfolder::resolve::Response {
        code_version: dae_train::CODE_VERSION.to_string(),
        results: dae_train::job::resolve_batch(&texts),
    };
    println!("{}", serde_json::to_string(&response).expect("serialises"));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    dae_train::tune_process();
    dae_train::conv_backward_from_env();
    // This executable's identity for checkpoints, taken before anything can replace the file.
    let _ = dae_train::binary_sha256();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    if cli.resolve {
        return resolve_stdin();
    }
    let (config, out) = (cli.config.expect("clap requires --config"), cli.out.expect("clap requires --out"));
    let job = match Job::load_with(&config, &cli.set) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadConfig.into();
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("warning: cannot handle signal {sig}: {e}");
        }
    }
    let opts = TrainOptions { fresh: cli.fresh, ..TrainOptions::from_env() };
    match train_with(&job, &out, &stop, &opts) {
        Ok(m) => {
            println!(
                "done: test AUC {:.4} (val {:.4}, best epoch {} of {}), {:.1} s; results in {}",
                m.test_auc,
                m.val_auc,
                m.best_epoch,
                m.epochs_run,
                m.wall_seconds,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            eprintln!("error: {:#}", anyhow::Error::new(e));
            code.into()
        }
    }
}
