//! `dae-sweep`: experiment matrices into training jobs, plans, and the
//! backends that run them. Never links candle: a job is a `dae-train`
//! process, locally or as a Slurm array task.
//!
//! - [`experiment`]: the TOML experiment file (base, matrix, zip, search,
//!   variants, include/exclude, seeds, profiles) and its expansion;
//!   [`search`]: random and Sobol points as one axis; [`overrides`]: the
//!   command line's `--set` and `--seeds`.
//! - [`plan`]: jobs with content-hash ids (resolved by the trainer), their
//!   status, and what a run would do ([`Plan`]).
//! - [`manifest`]: the plan as the reporter reads it
//!   (`<results>/plans/<experiment>.<profile>.json`).
//! - [`runs`]: a run folder's status, lock and the runner's files (names
//!   and records from `dae-runfolder`).
//! - [`dispatch`]: the runner's state machine (queue, retries, fail-fast,
//!   stop, summary), written once; [`local`] and [`slurm`] are its
//!   [`dispatch::Executor`]s. It emits [`Event`]s that [`reporter`]s consume.
//!   [`detach`]: Slurm runs that outlive their runner (`--detach`) and the
//!   later runner that follows them.
//!
//! ```no_run
//! use dae_sweep::{plan, Experiment, RerunPolicy, TrainerResolver};
//! let exp = Experiment::load("experiments/table2-ablation.toml".as_ref())?;
//! let resolver = TrainerResolver { program: "target/release/dae-train".into() };
//! let p = plan::plan(&exp, Some("quick"), &resolver, "results".as_ref(), RerunPolicy::default())?;
//! print!("{}", p.render());
//! # Ok::<(), dae_sweep::SweepError>(())
//! ```

pub mod detach;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod experiment;
pub mod local;
pub mod manifest;
pub mod overrides;
pub mod plan;
pub mod reporter;
pub mod runs;
pub mod search;
pub mod slurm;

pub use error::SweepError;
pub use events::{Event, Outcome, Summary};
pub use experiment::Experiment;
pub use local::{run_local, Launcher, LocalOptions};
pub use manifest::Manifest;
pub use overrides::{Overrides, SetArg};
pub use plan::{job_id, Action, Job, Plan, PlannedJob, RerunPolicy, Resolver, TrainerResolver};
pub use runs::{RunDir, Status};
pub use slurm::{run_slurm, SlurmCli, SlurmConfig, SlurmOptions};
