//! `dae-metrics`: evaluation metrics on plain slices, independent of any
//! tensor library.
//!
//! - [`roc_auc`]: the area under the ROC curve with ties counted by average
//!   rank (the Mann-Whitney U statistic), and [`roc_curve`] points.
//! - [`delong_ci`], [`delong_test`]: DeLong's AUC standard error and the
//!   test of two correlated AUCs (one run against one run on one test set);
//!   [`bootstrap_auc_ci`]: a stratified percentile bootstrap CI over samples.
//! - [`two_level`]: the bootstrap of a seed-mean statistic with seeds and
//!   test patients (clusters of views) resampled, for per-row CIs and paired
//!   contrasts ([`RankedScores::weighted_auc`] makes each resample one
//!   pass); [`holm`] adjusts a family of p-values; [`Draws::tost`] tests
//!   equivalence within a margin.
//! - [`cluster_accuracy`]: attribute accuracy within one cluster (the
//!   paper's Table 3 figure is the mean over the shape and margin clusters).
//! - [`LogisticRegression`]: an L2-regularised logistic regression fitted by
//!   Newton's method (IRLS), used as the linear probe of frozen features and
//!   to measure how much label signal a set of ground-truth factors carries.
//! - [`RbfSvm`]: an RBF-kernel SVM (C = 1, gamma = 1/d on standardised
//!   features, the usual toolkits' default SVM), the nonlinear probe.
//!
//! ```
//! let auc = dae_metrics::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]).unwrap();
//! assert!((auc - 0.75).abs() < 1e-12);
//! ```
//!
//! This crate knows nothing of candle, data sets or training.

mod attributes;
mod bootstrap;
mod delong;
mod logistic;
mod rng_lite;
mod roc;
mod svm;

pub use attributes::cluster_accuracy;
pub use bootstrap::{holm, two_level, Draws, RankedScores, Resampling, TestSet};
pub use delong::{bootstrap_auc_ci, bootstrap_mean_auc_ci, delong_ci, delong_test, normal_cdf, AucCi, DelongTest};
pub use logistic::{solve_spd, LogisticRegression, Standardizer};
pub use roc::{roc_auc, roc_curve, RocPoint};
pub use svm::RbfSvm;

/// Errors of metric computations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("scores and labels differ in length ({scores} vs {labels})")]
    Length { scores: usize, labels: usize },
    #[error("AUC needs both classes; got {positives} positives and {negatives} negatives")]
    OneClass { positives: usize, negatives: usize },
    #[error("a score is not finite (index {index})")]
    NotFinite { index: usize },
    #[error("labels must be 0 or 1; found {value} at index {index}")]
    BadLabel { index: usize, value: u8 },
    #[error("feature rows differ in width (row {row} has {got}, expected {expected})")]
    Ragged { row: usize, got: usize, expected: usize },
    #[error("no score sets given")]
    Empty,
}
