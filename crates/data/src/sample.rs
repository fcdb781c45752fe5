//! The one sample type every source produces.

use serde::{Deserialize, Serialize};

use crate::image::Image;
use crate::synth::SynthFactors;
use crate::vocab::AttrSet;

/// Where a sample came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Synthetic,
    CbisDdsm,
    MiniMias,
    Manifest,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Synthetic => "synthetic",
            Source::CbisDdsm => "cbis-ddsm",
            Source::MiniMias => "mini-mias",
            Source::Manifest => "manifest",
        }
    }
}

/// One mass ROI: image, attributes, label and provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Stable identifier, unique within the data set (used in split files and score tables).
    pub id: String,
    /// Patient identifier: every sample of a patient lands in the same split.
    pub patient: String,
    /// View (`CC`, `MLO`, or what the source says).
    pub view: String,
    pub source: Source,
    /// Grayscale image in [0, 1]; `None` when a data set was read for its labels only.
    pub image: Option<Image>,
    /// Attributes over the full vocabulary (select a study's with [`crate::Vocabulary::multi_hot`]).
    pub attributes: AttrSet,
    /// 1 = malignant, 0 = benign.
    pub label: u8,
    /// Ground-truth generative factors (synthetic samples only).
    pub factors: Option<Box<SynthFactors>>,
}
