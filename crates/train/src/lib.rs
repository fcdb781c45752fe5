//! `dae-train`: trains ONE job from a config and writes its run folder.
//!
//! The sweep runner starts the `dae-train` binary once per job (locally or
//! as a Slurm array task); nothing else trains. The run folder's files,
//! records and exit codes are the contract in `dae-runfolder`; the trainer
//! writes every file atomically, `incomplete` first and `done` last.
//!
//! The path of one job:
//!
//! - [`job`]: the raw [`JobConfig`] is checked once into a [`Job`];
//! - [`data`]: the data set, its split, and the statistics fitted on the
//!   training split ([`data::RunData`]);
//! - [`methods`]: the job's method (DAE-GCN, Guided-VAE, ICADx, Li et al.),
//!   each one type behind the [`methods::Method`] trait;
//! - [`run`]: the loop, whose state ([`progress::Progress`]) is what the
//!   [`checkpoint`] saves after every epoch, with the [`progress::History`]
//!   (also as TensorBoard scalars, [`tfevents`]);
//! - [`evaluate`], [`probes`] and [`artefacts`]: the test metrics, the
//!   latent probes, and `scores.csv`, Figure 3, the model and `metrics.json`
//!   (with the [`machine`] it ran on).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! let job = dae_train::Job::load("experiments/jobs/dae-gcn-smoke.toml".as_ref())?;
//! let metrics = dae_train::train(&job, "results/runs/smoke".as_ref(), &AtomicBool::new(false))?;
//! println!("test AUC {:.3}", metrics.test_auc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate knows the data, model, losses and metrics crates and the
//! run-folder contract; it knows nothing of sweeps, job ids or reports.

pub mod adam;
pub mod artefacts;
pub mod checkpoint;
pub mod data;
pub mod evaluate;
pub mod job;
pub mod machine;
pub mod methods;
pub mod probes;
pub mod progress;
pub mod run;
pub mod tfevents;

pub use job::{Job, JobConfig, JobError};
pub use run::{train, train_with, RunError, TrainOptions};

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

/// Peak resident memory of this process in MiB (VmHWM), 0 where unknown.
pub fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Sets up the process for training on the CPU, first thing in `main`
/// (before any other thread exists): [`tune_allocator`], then
/// [`tune_threads`].
pub fn tune_process() {
    tune_allocator();
    tune_threads();
}

/// `DAE_CONV_BACKWARD=released`: candle's released conv2d backward on GPUs
/// (the input gradient by `conv_transpose2d`, a direct kernel on CUDA)
/// instead of the vendored patch's forward convolution and matrix product
/// (`vendor/README.md`), to compare the two. For this thread's backward
/// passes (the training loop's).
pub fn conv_backward_from_env() {
    use candle_core::backprop::{set_conv2d_backward, Conv2dBackward};
    if std::env::var("DAE_CONV_BACKWARD").as_deref() == Ok("released") {
        set_conv2d_backward(Conv2dBackward::Released);
    }
}

/// Keeps candle's own CPU thread pool empty unless `CANDLE_NUM_THREADS`
/// says otherwise.
///
/// candle 0.11 runs its element-wise operations on a pool of its own (a
/// worker per core beside the calling thread) whose workers spin for a
/// while after each operation before they sleep, while the convolutions and
/// batch norms here run on rayon's pool, one thread per core. The spinning
/// took cores from rayon's threads: 7% of the CPU samples of a training
/// step of Table 2's row 1. With no candle workers (candle's operations on
/// the calling thread) a step of row 1 was 8% faster, row 7 7%, ResNet-34
/// the same (`docs/performance.md`).
pub fn tune_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Before candle's pool is made (on its first operation) and before
        // any other thread exists (see `tune_process`).
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
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
