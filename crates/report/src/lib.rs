//! `dae-report`: finished runs into the paper's tables and figures.
//!
//! - [`collect`]: the runs of an experiment (or of a whole results folder)
//!   into [`RunRecord`]s and a polars `DataFrame` (one row per run, a column
//!   per axis and per metric), saved as Parquet and CSV.
//! - [`aggregate`]: rows of a table (every axis but the seed): mean, std
//!   (n - 1) and n of each metric via polars `group_by().agg()`, a bootstrap
//!   CI of the test AUC from the per-sample scores, DeLong's test against
//!   the reference row.
//! - [`tables`]: Table 1 (methods), 2 (ablation), 3 (attributes) and sweep
//!   tables as Markdown, LaTeX (booktabs) and CSV.
//! - [`figures`]: plotters figures (PNG and SVG): the tau x p heatmaps and
//!   marginals, ROC curves, training curves, the Figure 3 grid, the
//!   disentanglement probe.
//!
//! The only crate that links polars and plotters; it knows no candle. Job
//! ids and statuses come from `dae-sweep`'s plan.
//!
//! ```no_run
//! use dae_report::{aggregate::aggregate, collect::collect_plan, tables};
//! use dae_sweep::{plan, Experiment, RerunPolicy, TrainerResolver};
//! let exp = Experiment::load("experiments/table2-ablation.toml".as_ref())?;
//! let resolver = TrainerResolver { program: "target/release/dae-train".into() };
//! let p = plan::plan(&exp, Some("quick"), &resolver, "results".as_ref(), RerunPolicy::default())?;
//! let c = collect_plan(&exp, &p, "results".as_ref());
//! let rows = aggregate(&c)?;
//! print!("{}", tables::build(&c, &rows).to_markdown());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod collect;
pub mod figures;
pub mod tables;

pub use collect::{Collection, RunRecord};

use std::path::PathBuf;

/// What can go wrong while reporting.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Polars {
        what: String,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("{}: {problem}", path.display())]
    Scores { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Write { path: PathBuf, problem: String },
    #[error("figure {name}: {problem}")]
    Figure { name: String, problem: String },
}
