//! The trainer's integration tests, one binary: [`basics`] (losses,
//! gradients, the run folder, reproducibility, bad configs), [`baselines`]
//! (Guided-VAE, ICADx, Li et al.) and [`resume`] (checkpoints).

mod baselines;
mod basics;
mod common;
mod resume;
