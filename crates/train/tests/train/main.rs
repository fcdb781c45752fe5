//! The trainer's integration tests, one binary: [`basics`] (losses,
//! gradients, the run folder, reproducibility, bad configs), [`baselines`]
//! (Guided-VAE, ICADx, Li et al.), [`resume`] (checkpoints) and
//! [`hostile`] (mutated job files and checkpoints), [`precision`] (bf16).

mod baselines;
mod basics;
mod common;
mod hostile;
mod precision;
mod resume;

#[global_allocator]
static ALLOC: dae_mutate::CountingAlloc = dae_mutate::CountingAlloc;
