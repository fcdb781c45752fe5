//! `dae-runfolder`: the contract between the trainer that writes a run
//! folder, the runner that starts and watches it, and the reporter that
//! reads it (as `nextest-metadata` is nextest's).
//!
//! - [`files`]: every file name in a run folder, and [`RunFolder`], the
//!   paths of one folder. No other crate spells a run-folder file name.
//! - [`ExitCode`]: the trainer's documented exit codes.
//! - [`Metrics`] (`metrics.json`), [`ExitRecord`] (`exit.json`) and
//!   [`ProgressRecord`] (`progress.json`, rewritten after every epoch): the
//!   records, as serde structs both sides share.
//! - [`integrity`]: `done` as a [`DoneRecord`], the size and SHA-256 of each
//!   artefact the reports read, and [`check_done`], which finds damage.
//! - [`resolve`]: the wire types of `dae-train --resolve`.
//! - [`write_atomic`]: the one way files that others read are written.
//! - [`settings`]: `KEY=VALUE` overrides and dotted keys of TOML configs.
//!
//! ```
//! use dae_runfolder::{ExitCode, RunFolder};
//! let run = RunFolder::new("results".as_ref(), "0123abcd");
//! assert!(run.metrics().ends_with("runs/0123abcd/metrics.json"));
//! assert_eq!(ExitCode::from_code(4), Some(ExitCode::Diverged));
//! assert!(ExitCode::Diverged.repeats_exactly());
//! ```
//!
//! This crate depends on serde, toml and sha2 only: no tensors, no tables, no processes.

mod atomic;
mod exit;
pub mod files;
pub mod integrity;
mod records;
pub mod resolve;
pub mod settings;

pub use atomic::write_atomic;
pub use exit::ExitCode;
pub use files::RunFolder;
pub use integrity::{check_done, Check, Damage, DoneRecord};
pub use records::{human_duration, read_json, ExitRecord, GraphRecord, MachineRecord, Metrics, ProgressRecord};
