//! The data crate's error type: every variant names the file (and line or
//! field where there is one) and says what was expected.

use std::path::PathBuf;

/// Errors from loading, generating, splitting or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Image files a table names are absent (counted, with the first few).
    #[error(
        "{root}: {missing} of {total} image files the tables name are missing (first: {}); \
         set `dataset.missing = \"skip\"` to train without those rows",
        first.join(", ")
    )]
    MissingImages { root: PathBuf, missing: usize, total: usize, first: Vec<String> },
    /// A required file or folder is absent.
    #[error("{path}: not found ({what})")]
    Missing { path: PathBuf, what: String },
    /// A CSV file could not be parsed at the CSV level.
    #[error("{path}: malformed CSV")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// A CSV header has a column the loader does not know, or lacks one it needs.
    #[error("{path}: {problem}; valid columns: {valid}")]
    Columns { path: PathBuf, problem: String, valid: String },
    /// A value in a text file (CSV, Info.txt, split file) is not valid.
    #[error("{path}:{line}: field `{field}`: {problem}")]
    Value { path: PathBuf, line: u64, field: String, problem: String },
    /// An image file could not be decoded.
    #[error("{path}: {problem}")]
    Image { path: PathBuf, problem: String },
    /// A DICOM file could not be read or decoded.
    #[error("{path}: {problem}")]
    Dicom {
        path: PathBuf,
        problem: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A dataset holds no usable sample.
    #[error("{what}: the dataset is empty ({detail})")]
    Empty { what: String, detail: String },
    /// Invalid generator or loader options.
    #[error("option `{key}`: {problem}")]
    Config { key: String, problem: String },
    /// A split file or split request is inconsistent with the dataset.
    #[error("{path}: {problem}")]
    Split { path: PathBuf, problem: String },
    /// The dataset was loaded without pixel data (labels only).
    #[error("{what}: loaded without images (labels only); cannot {action}")]
    NoImages { what: String, action: &'static str },
    /// A tensor operation failed while batching.
    #[error("building a batch")]
    Tensor(#[from] candle_core::Error),
}

/// Result with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, action, source }
}
