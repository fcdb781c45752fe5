//! A run's data: the samples, their split, and what is fitted on the
//! training split only (attribute counts, intensity normalisation).

use std::path::Path;

use dae_data::batch::{BatchSpec, Normalize};
use dae_data::split::split_samples;
use dae_data::{AttrStats, Dataset, Sample, SplitIndices, Vocabulary};

use crate::job::{Device, Job};
use crate::RunError;

/// What every epoch, evaluation and artefact of a run reads.
pub struct RunData {
    pub samples: Vec<Sample>,
    pub split: SplitIndices,
    pub vocab: Vocabulary,
    /// T_i and M_ij of the training split.
    pub stats: AttrStats,
    /// Fitted on the training split.
    pub norm: Normalize,
    pub dev: candle_core::Device,
    /// `Dataset::fingerprint` (pixels included).
    pub fingerprint: String,
    /// Rows the loader left out, by reason (`Dataset::skipped`).
    pub skipped: std::collections::BTreeMap<String, usize>,
    /// Batch size of evaluation passes.
    eval_batch: usize,
}

impl RunData {
    /// Loads (or generates) the data set, splits it and fits the statistics.
    pub fn load(job: &Job, cache: &Path) -> Result<RunData, RunError> {
        let dev = device(job.device)?;
        let ds = Dataset::load(&job.dataset, &job.split, Some(cache))?;
        let split = split_samples(&ds.samples, &job.split)?;
        for (name, ix) in [("train", &split.train), ("val", &split.val), ("test", &split.test)] {
            if ix.len() < 2 {
                return Err(RunError::Data(dae_data::DataError::Empty {
                    what: format!("{name} split"),
                    detail: format!("{} samples; the data set or split ratios are too small", ix.len()),
                }));
            }
        }
        let stats = AttrStats::from_samples(split.train.iter().map(|&i| &ds.samples[i]), &job.vocab);
        let norm = Normalize::fit(&ds.samples, &split.train)?;
        let fingerprint = ds.fingerprint();
        let eval_batch = job.optim.batch_size.max(64);
        let skipped = ds.skipped;
        Ok(RunData { samples: ds.samples, split, vocab: job.vocab.clone(), stats, norm, dev, fingerprint, skipped, eval_batch })
    }

    /// Batches for evaluation: in order, unaugmented, the last one kept.
    pub fn eval_spec(&self) -> BatchSpec<'_> {
        BatchSpec {
            batch_size: self.eval_batch,
            vocab: &self.vocab,
            normalize: self.norm,
            shuffle_seed: None,
            augment: None,
            keep_last: true,
        }
    }

    /// The attribute clusters' column ranges.
    pub fn clusters(&self) -> Vec<std::ops::Range<usize>> {
        self.vocab.clusters().into_iter().map(|(_, r)| r).collect()
    }

    /// Whether the training split has any attribute of the vocabulary.
    pub fn has_attributes(&self) -> bool {
        self.stats.t.iter().any(|&t| t > 0)
    }
}

/// The candle device of a job.
fn device(d: Device) -> Result<candle_core::Device, RunError> {
    match d {
        Device::Cpu => Ok(candle_core::Device::Cpu),
        Device::Cuda(idx) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(RunError::Config(format!(
                    "device = \"cuda:{idx}\", but this dae-train was built without CUDA (build with --features cuda)"
                )));
            }
            candle_core::Device::new_cuda(idx).map_err(|e| RunError::Config(format!("device = \"cuda:{idx}\": {e}")))
        }
    }
}
