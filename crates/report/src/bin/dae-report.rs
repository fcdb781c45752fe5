//! `dae-report collect|tables|figures|all`: finished runs into tables and
//! figures (`cargo xtask tables|figures|reproduce` builds and starts it).
//!
//! Exit codes: 0 ok, 2 bad arguments or experiment file, 3 the trainer could
//! not be used, 4 a table or figure could not be written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dae_report::aggregate::aggregate;
use dae_report::collect::{collect_folder, collect_plan, to_dataframe, write_frames};
use dae_report::{figures, tables, Collection, ReportError};
use dae_sweep::{plan, Experiment, RerunPolicy, SweepError, TrainerResolver};

#[derive(Parser)]
#[command(name = "dae-report", version, about = "Finished runs into the paper's tables and figures")]
#[command(after_help = "Examples:
  dae-report tables experiments/table2-ablation.toml --profile quick
  dae-report figures experiments/sweep-tau-p.toml
  dae-report all experiments/table1-methods.toml experiments/table2-ablation.toml
  dae-report collect                       # every run folder into results/tables/all-runs.{parquet,csv}

Exit codes: 0 ok, 2 bad arguments or experiment file, 3 trainer unusable, 4 cannot write.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Experiment files.
    files: Vec<PathBuf>,
    /// The results folder (runs in DIR/runs, output in DIR/tables and DIR/figures).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// The trainer binary, for job ids (default: `dae-train` beside this program, or $DAE_TRAINER).
    #[arg(long)]
    trainer: Option<PathBuf>,
    /// The experiments' profile (default: each file's default_profile).
    #[arg(long)]
    profile: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs into a DataFrame (Parquet and CSV): per experiment file, or every run folder when no file is given.
    Collect(Common),
    /// Tables (Markdown, LaTeX, CSV) into DIR/tables; the Markdown is printed.
    Tables(Common),
    /// Figures (PNG, SVG) into DIR/figures.
    Figures(Common),
    /// Tables and figures.
    All(Common),
}

fn trainer_path(c: &Common) -> PathBuf {
    dae_sweep::plan::trainer_path(c.trainer.as_deref())
}

fn sweep_fail(e: SweepError) -> ExitCode {
    let code = if matches!(e, SweepError::Trainer { .. }) { 3 } else { 2 };
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(code)
}

fn report_fail(e: ReportError) -> ExitCode {
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(4)
}

fn collection(file: &Path, c: &Common) -> Result<Collection, SweepError> {
    let exp = Experiment::load(file)?;
    let resolver = TrainerResolver { program: trainer_path(c) };
    let p = plan::plan(&exp, c.profile.as_deref(), &resolver, &c.results, RerunPolicy::default())?;
    Ok(collect_plan(&exp, &p, &c.results))
}

fn counts(c: &Collection) -> String {
    let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &c.runs {
        *by.entry(r.status.as_str()).or_default() += 1;
    }
    by.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let (common, do_tables, do_figures, collect_only) = match cli.cmd {
        Cmd::Collect(c) => (c, false, false, true),
        Cmd::Tables(c) => (c, true, false, false),
        Cmd::Figures(c) => (c, false, true, false),
        Cmd::All(c) => (c, true, true, false),
    };
    let tables_dir = common.results.join("tables");
    let figures_dir = common.results.join("figures");
    if collect_only && common.files.is_empty() {
        let runs = match collect_folder(&common.results) {
            Ok(r) => r,
            Err(e) => return report_fail(e),
        };
        let mut df = match to_dataframe(&runs) {
            Ok(d) => d,
            Err(e) => return report_fail(ReportError::Polars { what: "building the run table".into(), source: e }),
        };
        match write_frames(&mut df, &tables_dir, "all-runs") {
            Ok(paths) => {
                println!(
                    "{} run folders ({} columns) -> {}",
                    df.height(),
                    df.width(),
                    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => return report_fail(e),
        }
    }
    if common.files.is_empty() {
        eprintln!("error: give one or more experiment files, e.g. experiments/table2-ablation.toml");
        return ExitCode::from(2);
    }
    let mut written: Vec<PathBuf> = Vec::new();
    for file in &common.files {
        let c = match collection(file, &common) {
            Ok(c) => c,
            Err(e) => return sweep_fail(e),
        };
        eprintln!("{}: {} runs ({})", c.experiment.name, c.runs.len(), counts(&c));
        let mut df = match to_dataframe(&c.runs) {
            Ok(d) => d,
            Err(e) => return report_fail(ReportError::Polars { what: "building the run table".into(), source: e }),
        };
        match write_frames(&mut df, &tables_dir, &format!("{}-runs", c.experiment.name)) {
            Ok(p) => written.extend(p),
            Err(e) => return report_fail(e),
        }
        if collect_only {
            continue;
        }
        let rows = match aggregate(&c) {
            Ok(r) => r,
            Err(e) => return report_fail(e),
        };
        if do_tables {
            let t = tables::build(&c, &rows);
            println!("{}", t.to_markdown());
            match t.write(&tables_dir) {
                Ok(p) => written.extend(p),
                Err(e) => return report_fail(e),
            }
        }
        if do_figures {
            match figures::render_all(&c, &rows, &figures_dir) {
                Ok(p) => written.extend(p),
                Err(e) => return report_fail(e),
            }
        }
    }
    eprintln!("wrote {} files:", written.len());
    for p in &written {
        eprintln!("  {}", p.display());
    }
    ExitCode::SUCCESS
}
