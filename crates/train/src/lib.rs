//! `dae-train`: trains ONE job from a config and writes its run folder.
//!
//! The sweep runner starts the `dae-train` binary once per job (locally or
//! as a Slurm array task); nothing else trains. A run folder holds, written
//! atomically with the completion marker `done` last:
//!
//! | file | what |
//! |---|---|
//! | `config.toml` | the resolved job config (all defaults filled in) |
//! | `metrics.json` | `test_auc`, `val_auc`, `test_auc_ci95` (DeLong), attribute accuracy, probe AUCs (`probe_auc`: fitted on the training split; `probe_auc_test_cv`: 5-fold by patient within the test split; `probe_auc_test_cv_rbf`: the same with an RBF-kernel SVM, left out above 2,500 test samples), epochs, timing, memory, device, code version, status |
//! | `history.csv` | per epoch: each loss term, validation AUC and attribute accuracy, learning rate, seconds |
//! | `scores.csv` | per test sample: `sample_id`, `patient`, `label`, `score`, then the predicted attribute per cluster |
//! | `model.safetensors` | the selected (best validation AUC) weights, with the fitted h_i eraser when `model.h_i_erase` is on |
//! | `figure3-*.png`, `figure3.json` | reconstructions of fixed test samples from h, [h_ma, h_mi], h_i, h_ma, h_mi (Guided-VAE: z, z_t, z_rst; methods without a decoder write none) |
//! | `incomplete` | present while the run is in progress or was interrupted |
//! | `checkpoint.safetensors` | written after every epoch while the run is in progress, removed when it is done ([`checkpoint`]): a run started again on the folder resumes from it |
//! | `done` | the completion marker, written last |
//!
//! The config's `method` picks DAE-GCN (default) or one of the baselines
//! Guided-VAE, ICADx, Li et al.; [`methods`] holds each one's training
//! step, and every method writes the same files and `metrics.json` keys
//! (attribute accuracy where the method predicts attributes, probe AUCs for
//! its latent blocks). `history.csv` has the common columns, then the
//! method's own (e.g. Guided-VAE's `adversary_acc`).
//!
//! Exit codes ([`exit`]): 0 success, 2 bad config, 3 data error, 4 diverged,
//! 5 interrupted, 1 anything else.
//!
//! This crate knows the data, model, losses and metrics crates; it knows
//! nothing of sweeps, job ids or reports.

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod methods;
pub mod run;

pub use config::JobConfig;
pub use run::{train, train_with, RunError, RunOutcome, TrainOptions};

/// The documented exit codes of `dae-train`.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const BAD_CONFIG: u8 = 2;
    pub const DATA_ERROR: u8 = 3;
    pub const DIVERGED: u8 = 4;
    pub const INTERRUPTED: u8 = 5;
}

/// The code version compiled into this binary (`0.1.0+<commit>[-dirty]`).
pub const CODE_VERSION: &str = env!("DAE_CODE_VERSION");

/// SHA-256 (hex) of this process's executable, computed once; `None` where
/// it cannot be read. Checkpoints are resumed only by the same executable.
pub fn binary_sha256() -> Option<&'static str> {
    static HASH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use sha2::Digest;
        // /proc/self/exe is the running image even if the file was replaced or removed.
        let bytes = std::fs::read("/proc/self/exe").or_else(|_| std::fs::read(std::env::current_exe()?)).ok()?;
        Some(format!("{:x}", sha2::Sha256::digest(&bytes)))
    })
    .as_deref()
}

/// Keeps large tensor buffers in glibc's heap instead of fresh `mmap`s.
///
/// candle allocates and frees a new buffer for nearly every op; past
/// glibc's mmap threshold each one is a fresh mapping whose pages the kernel
/// must zero and fault in, about 30% of the CPU time of a training step here
/// (`candle-notes.md`). This is the programmatic form of
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483648`
/// (measured +30% samples/s on the quick setting). A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before other threads allocate.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
