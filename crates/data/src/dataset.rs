//! A loaded data set from any source, its configuration and its summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbis::CbisOptions;
use crate::error::{DataError, Result};
use crate::manifest::ManifestOptions;
use crate::mias::MiasOptions;
use crate::sample::Sample;
use crate::split::{Split, SplitIndices, SplitSpec};
use crate::synth::{CacheStatus, SynthParams};
use crate::vocab::Attribute;

/// Which data set to load (the `[dataset]` table of a job, tagged by `kind`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DatasetConfig {
    Synthetic(SynthParams),
    CbisDdsm(CbisOptions),
    MiniMias(MiasOptions),
    Manifest(ManifestOptions),
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig::Synthetic(SynthParams::default())
    }
}

impl DatasetConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DatasetConfig::Synthetic(_) => "synthetic",
            DatasetConfig::CbisDdsm(_) => "cbis-ddsm",
            DatasetConfig::MiniMias(_) => "mini-mias",
            DatasetConfig::Manifest(_) => "manifest",
        }
    }
    /// Checks the options that need no file: the synthetic generator's
    /// ranges (the loaders check their folders when they load).
    pub fn validate(&self) -> Result<()> {
        match self {
            DatasetConfig::Synthetic(p) => p.validate(),
            _ => Ok(()),
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            DatasetConfig::Synthetic(p) => p.image_size,
            DatasetConfig::CbisDdsm(o) => o.image_size,
            DatasetConfig::MiniMias(o) => o.image_size,
            DatasetConfig::Manifest(o) => o.image_size,
        }
    }
}

impl DatasetConfig {
    /// A cheap SHA-256 of what the data set will be, without loading it, for
    /// job identities: the data options and split, plus the synthetic
    /// generator's version, or the content of the label tables (CBIS-DDSM
    /// CSVs, mini-MIAS `Info.txt`, the manifest CSV) and of a split file.
    /// Image files are not read: changing pixels under unchanged tables keeps
    /// the fingerprint (the trainer's `data_fingerprint` covers pixels).
    pub fn source_fingerprint(&self, split: &SplitSpec) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"dae-data source fingerprint v1\0");
        h.update(serde_json::to_vec(self).expect("dataset options serialise"));
        h.update(serde_json::to_vec(split).expect("split options serialise"));
        let mut files: Vec<PathBuf> = Vec::new();
        match self {
            DatasetConfig::Synthetic(_) => h.update(crate::synth::GENERATOR_VERSION.to_le_bytes()),
            DatasetConfig::CbisDdsm(o) => {
                if !o.root.is_dir() {
                    return Err(DataError::Missing {
                        path: o.root.clone(),
                        what: "CBIS-DDSM folder with the case-description CSVs".into(),
                    });
                }
                files.extend(crate::cbis::TABLES.iter().map(|(name, _)| o.root.join(name)).filter(|p| p.exists()));
            }
            DatasetConfig::MiniMias(o) => files.push(o.root.join("Info.txt")),
            DatasetConfig::Manifest(o) => files.push(if o.root.is_dir() { o.root.join("manifest.csv") } else { o.root.clone() }),
        }
        files.extend(split.file.iter().cloned());
        for f in files {
            let bytes = std::fs::read(&f).map_err(crate::error::io_err(&f, "cannot read for the data fingerprint"))?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Samples plus what was skipped while loading them.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// A short description (`synthetic`, or the source and its folder).
    pub name: String,
    pub samples: Vec<Sample>,
    /// Rows not loaded, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Where a synthetic set came from (cache hit, generated, no cache).
    pub cache: Option<CacheStatus>,
}

/// Counts a user (and `xtask data inspect --json`) sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub samples: usize,
    pub malignant: usize,
    pub benign: usize,
    pub patients: usize,
    pub attributes: BTreeMap<String, usize>,
    pub skipped: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splits: Option<BTreeMap<String, usize>>,
}

impl Dataset {
    /// Loads (or generates) the data set. `split` matters only to the
    /// synthetic confound; `cache_dir` caches synthetic data (None: no cache).
    pub fn load(cfg: &DatasetConfig, split: &SplitSpec, cache_dir: Option<&Path>) -> Result<Dataset> {
        let (name, samples, skipped, cache) = match cfg {
            DatasetConfig::Synthetic(p) => {
                let (s, status) = crate::synth::load_or_generate(p, split, cache_dir)?;
                ("synthetic".to_string(), s, BTreeMap::new(), Some(status))
            }
            DatasetConfig::CbisDdsm(o) => {
                let (s, k) = crate::cbis::load(o)?;
                (format!("cbis-ddsm ({})", o.root.display()), s, k, None)
            }
            DatasetConfig::MiniMias(o) => {
                let (s, k) = crate::mias::load(o)?;
                (format!("mini-mias ({})", o.root.display()), s, k, None)
            }
            DatasetConfig::Manifest(o) => {
                let (s, k) = crate::manifest::load(o)?;
                (format!("manifest ({})", o.root.display()), s, k, None)
            }
        };
        if samples.is_empty() {
            let detail = if skipped.is_empty() {
                "no rows".to_string()
            } else {
                format!("skipped: {}", skipped.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
            };
            return Err(DataError::Empty { what: name, detail });
        }
        Ok(Dataset { name, samples, skipped, cache })
    }

    /// Counts over the whole set, and per split when given.
    pub fn summary(&self, split: Option<&SplitIndices>) -> Summary {
        let malignant = self.samples.iter().filter(|s| s.label == 1).count();
        let patients = self.samples.iter().map(|s| s.patient.as_str()).collect::<std::collections::HashSet<_>>().len();
        let mut attributes = BTreeMap::new();
        for a in Attribute::ALL {
            let n = self.samples.iter().filter(|s| s.attributes.contains(*a)).count();
            if n > 0 {
                attributes.insert(a.name().to_string(), n);
            }
        }
        let splits = split.map(|ix| Split::ALL.iter().map(|s| (s.name().to_string(), ix.get(*s).len())).collect());
        Summary {
            samples: self.samples.len(),
            malignant,
            benign: self.samples.len() - malignant,
            patients,
            attributes,
            skipped: self.skipped.clone(),
            splits,
        }
    }

    /// A SHA-256 over every sample's id, patient, label, attributes and
    /// pixels: two data sets with the same fingerprint are the same data.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.samples {
            h.update(s.id.as_bytes());
            h.update([0]);
            h.update(s.patient.as_bytes());
            h.update([0, s.label]);
            h.update(s.attributes.0.to_le_bytes());
            if let Some(img) = &s.image {
                h.update((img.height as u64).to_le_bytes());
                h.update((img.width as u64).to_le_bytes());
                for v in &img.data {
                    h.update(v.to_le_bytes());
                }
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
