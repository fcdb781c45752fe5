//! `dae-data`: everything the DAE-GCN workspace knows about data.
//!
//! - [`Sample`]: one mass ROI from any source (image, multi-hot attributes
//!   over the CBIS-DDSM [`vocab`], label, patient, view, stable id; synthetic
//!   samples also carry their ground-truth [`synth::SynthFactors`]).
//! - [`synth`]: the built-in synthetic mammogram-mass generator, with
//!   (shape, margin, label) drawn from the real CBIS-DDSM joint.
//! - Loaders: [`cbis`] (CBIS-DDSM CSV + DICOM/PNG), [`mias`] (mini-MIAS),
//!   [`manifest`] (a CSV over your own images); [`Dataset::load`] picks one
//!   from a [`DatasetConfig`].
//! - [`split`]: patient-wise, label-stratified, seeded splits and split files.
//! - [`stats`]: attribute occurrence and co-occurrence counts (T_i, M_ij).
//! - [`dicom_io`]: monochrome DICOM frames (native, RLE, JPEG, JPEG 2000);
//!   [`npy`]: `.npy` arrays to compare our decoding with other tools'.
//! - [`batch`]: candle tensors through `candle_datasets::Batcher`,
//!   normalisation, augmentation.
//!
//! ```
//! use dae_data::{Dataset, DatasetConfig, SplitSpec, SynthParams, split::split_samples};
//! let cfg = DatasetConfig::Synthetic(SynthParams { patients: 20, image_size: 32, ..Default::default() });
//! let spec = SplitSpec::default();
//! let ds = Dataset::load(&cfg, &spec, None).unwrap();
//! let split = split_samples(&ds.samples, &spec).unwrap();
//! assert_eq!(split.train.len() + split.val.len() + split.test.len(), ds.samples.len());
//! ```
//!
//! This crate knows candle (for batches) but nothing of models, losses,
//! training, sweeps or reports.

pub mod batch;
pub mod cbis;
mod csv_lines;
pub mod dataset;
pub mod dicom_io;
pub mod error;
mod font;
pub mod image;
pub mod manifest;
pub mod mias;
pub mod npy;
pub mod preview;
pub mod rng;
pub mod sample;
pub mod split;
pub mod stats;
pub mod synth;
pub mod vocab;

pub use dataset::{Dataset, DatasetConfig, Summary};
pub use error::{DataError, Result};
pub use image::Image;
pub use sample::{Sample, Source};
pub use split::{Split, SplitIndices, SplitSpec};
pub use stats::AttrStats;
pub use synth::SynthParams;
pub use vocab::{AttrSet, Attribute, Cluster, Vocabulary};

/// Writes `bytes` to `path` atomically ([`dae_runfolder::write_atomic`]):
/// a reader sees the old file or the new one, never a half-written one.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    dae_runfolder::write_atomic(path, bytes).map_err(|source| DataError::Io { path: path.into(), action: "cannot write", source })
}

/// Quotes a CSV field when it holds a comma, quote or newline (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A suffix unique to this process and call: temporary names must not
/// collide between processes nor between threads of one process.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
