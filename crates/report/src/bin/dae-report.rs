//! `dae-report collect|tables|figures|all`: finished runs into tables and
//! figures (`cargo xtask tables|figures|reproduce` builds and starts it).
//!
//! The experiments' jobs come from the plan manifests the runner writes
//! (`cargo xtask plan` or `run` first); no trainer is started.
//!
//! Exit codes: 0 ok, 2 bad arguments, experiment file or missing plan, 4 a
//! table or figure could not be written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dae_report::aggregate::analyse;
use dae_report::collect::{collect, collect_folder, to_dataframe, write_frames};
use dae_report::{figures, tables, Collection, ReportError};
use dae_sweep::{Experiment, SweepError};

#[derive(Parser)]
#[command(name = "dae-report", version, about = "Finished runs into the paper's tables and figures")]
#[command(after_help = "Examples:
  dae-report tables experiments/table2-ablation.toml --profile quick
  dae-report figures experiments/sweep-tau-p.toml
  dae-report all experiments/table1-methods.toml experiments/table2-ablation.toml
  dae-report collect                       # every run folder into results/tables/all-runs.{parquet,csv}

Exit codes: 0 ok, 2 bad arguments, experiment file or missing plan, 4 cannot write.")]
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
    /// The experiments' profile (default: each file's default_profile).
    #[arg(long)]
    profile: Option<String>,
    /// The overrides the runs were planned with (`--set`, `--seeds`: the same as given to `run`).
    #[command(flatten)]
    overrides: dae_sweep::overrides::OverrideArgs,
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
    /// Two runs side by side: the config keys that differ, every metric with
    /// B - A, and DeLong's paired test of the test AUCs.
    Diff {
        /// A run folder, a run id, or a unique prefix of one.
        a: String,
        /// The other run.
        b: String,
        /// The results folder whose runs/ ids and prefixes are looked up in.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
}

fn sweep_fail(e: SweepError) -> ExitCode {
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(2)
}

fn report_fail(e: ReportError) -> ExitCode {
    eprintln!("error: {:#}", anyhow::Error::new(e));
    ExitCode::from(4)
}

fn counts(c: &Collection) -> String {
    let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &c.runs {
        *by.entry(r.status.as_str()).or_default() += 1;
    }
    by.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

/// What a command writes.
#[derive(Clone, Copy)]
struct Outputs {
    tables: bool,
    figures: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let (common, what) = match cli.cmd {
        Cmd::Collect(c) if c.files.is_empty() => return collect_all(&c.results),
        Cmd::Collect(c) => (c, Outputs { tables: false, figures: false }),
        Cmd::Tables(c) => (c, Outputs { tables: true, figures: false }),
        Cmd::Figures(c) => (c, Outputs { tables: false, figures: true }),
        Cmd::All(c) => (c, Outputs { tables: true, figures: true }),
        Cmd::Diff { a, b, results } => return diff(&results, &a, &b),
    };
    if common.files.is_empty() {
        eprintln!("error: give one or more experiment files, e.g. experiments/table2-ablation.toml");
        return ExitCode::from(2);
    }
    let mut written: Vec<PathBuf> = Vec::new();
    for file in &common.files {
        let loaded = Experiment::load(file).and_then(|exp| exp.with_overrides(common.overrides.overrides()));
        let mut c = match loaded.and_then(|exp| collect(&exp, common.profile.as_deref(), &common.results)) {
            Ok(c) => c,
            Err(e) => return sweep_fail(e),
        };
        if let Some(tag) = c.experiment.overrides.tag() {
            // Reports of overridden plans get their own file names and say how they were made.
            c.experiment.notes.push(format!("Planned with overrides: `{}`.", c.experiment.overrides.describe()));
            c.experiment.name = format!("{}+{tag}", c.experiment.name);
        }
        eprintln!("{}: {} runs ({})", c.experiment.name, c.runs.len(), counts(&c));
        for r in c.runs.iter().filter_map(|r| r.damage.as_ref().map(|d| (r, d))) {
            eprintln!("  damaged, counted as missing: {} ({})", r.0.dir.display(), r.1);
        }
        match report(&c, &common.results, what) {
            Ok(p) => written.extend(p),
            Err(e) => return report_fail(e),
        }
    }
    eprintln!("wrote {} files:", written.len());
    for p in &written {
        eprintln!("  {}", p.display());
    }
    ExitCode::SUCCESS
}

/// Prints `diff A B` (exit 2 when a run cannot be found or read).
fn diff(results: &Path, a: &str, b: &str) -> ExitCode {
    use dae_report::diff;
    match diff::find_run(results, a).and_then(|a| Ok((a, diff::find_run(results, b)?))).and_then(|(a, b)| diff::diff(&a, &b)) {
        Ok(d) => {
            print!("{}", d.markdown());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// One experiment's run table, then its tables and figures as asked.
fn report(c: &Collection, results: &Path, what: Outputs) -> Result<Vec<PathBuf>, ReportError> {
    let (tables_dir, figures_dir) = (results.join("tables"), results.join("figures"));
    let mut df = to_dataframe(&c.runs).map_err(|e| ReportError::Polars { what: "building the run table".into(), source: e })?;
    let mut written = write_frames(&mut df, &tables_dir, &format!("{}-runs", c.experiment.name))?;
    if !(what.tables || what.figures) {
        return Ok(written);
    }
    let analysis = analyse(c)?;
    if what.tables {
        let t = tables::build(c, &analysis);
        println!("{}", t.to_markdown());
        written.extend(t.write(&tables_dir)?);
        if !analysis.contrasts.is_empty() {
            written.extend(tables::contrast_table(c, &analysis.contrasts).write_md_csv(&tables_dir)?);
        }
    }
    if what.figures {
        written.extend(figures::render_all(c, &analysis, &figures_dir)?);
    }
    Ok(written)
}

/// Every run folder into `tables/all-runs.{parquet,csv}`.
fn collect_all(results: &Path) -> ExitCode {
    let written = collect_folder(results).and_then(|runs| {
        let mut df = to_dataframe(&runs).map_err(|e| ReportError::Polars { what: "building the run table".into(), source: e })?;
        let paths = write_frames(&mut df, &results.join("tables"), "all-runs")?;
        Ok((df.height(), df.width(), paths))
    });
    match written {
        Ok((rows, cols, paths)) => {
            let list = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            println!("{rows} run folders ({cols} columns) -> {list}");
            ExitCode::SUCCESS
        }
        Err(e) => report_fail(e),
    }
}
