//! `dae-report`: finished runs into the paper's tables and figures.
//!
//! - [`collect`]: the runs of an experiment (or of a whole results folder)
//!   into [`RunRecord`]s and a polars `DataFrame` (one row per run, a column
//!   per axis and per metric), saved as Parquet and CSV.
//! - [`aggregate`]: rows of a table (every axis but the seed): mean, std
//!   (n - 1) and n of each metric via polars `group_by().agg()`, each row's
//!   seed-mean AUC and attribute accuracy with a two-level (seed x patient)
//!   bootstrap CI, the chance level of attribute accuracy; [`contrasts`]:
//!   the experiment's declared contrasts (paired, Holm-adjusted, TOST for
//!   equivalence, "below resolution" where the CI cannot tell).
//! - [`tables`]: Table 1 (methods), 2 (ablation), 3 (attributes) and sweep
//!   tables as Markdown, LaTeX (booktabs) and CSV.
//! - [`figures`]: plotters figures (PNG and SVG): the tau x p heatmaps and
//!   marginals, ROC curves, training curves, the Figure 3 grid, the
//!   disentanglement probe.
//! - [`diff`]: two named runs side by side (config, metrics, DeLong's
//!   paired test of their test AUCs).
//!
//! The only crate that links polars and plotters; it knows no candle and
//! starts no trainer. An experiment's jobs come from the runner's plan
//! manifest, their statuses from `dae-sweep`'s run-folder view, their files
//! through `dae-runfolder`'s names; [`collect`] is the only module that
//! reads an experiment's run folders ([`diff`] reads the two it is given).
//!
//! ```no_run
//! use dae_report::{aggregate::analyse, collect::collect, tables};
//! use dae_sweep::Experiment;
//! let exp = Experiment::load("experiments/table2-ablation.toml".as_ref())?;
//! let c = collect(&exp, Some("quick"), "results".as_ref())?;
//! let analysis = analyse(&c)?;
//! print!("{}", tables::build(&c, &analysis).to_markdown());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod collect;
pub mod contrasts;
pub mod diff;
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
    #[error("figure {name}: {problem}")]
    Figure { name: String, problem: String },
}
