//! Attribute statistics of a set of samples (the training split): occurrence
//! counts T_i and co-occurrence counts M_ij, from which the GCN's adjacency
//! is built (paper eq. (2)).

use serde::{Deserialize, Serialize};

use crate::sample::Sample;
use crate::vocab::Vocabulary;

/// T_i and M_ij over a vocabulary. `m[i][i] == t[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrStats {
    pub names: Vec<String>,
    /// Number of samples counted.
    pub n: usize,
    pub t: Vec<u32>,
    pub m: Vec<Vec<u32>>,
}

impl AttrStats {
    /// Counts over `samples` (pass the training split only: validation and
    /// test statistics must never reach the model).
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a Sample>, vocab: &Vocabulary) -> AttrStats {
        let k = vocab.len();
        let mut t = vec![0u32; k];
        let mut m = vec![vec![0u32; k]; k];
        let mut n = 0;
        for s in samples {
            n += 1;
            let present: Vec<usize> =
                vocab.attributes().iter().enumerate().filter(|(_, a)| s.attributes.contains(**a)).map(|(i, _)| i).collect();
            for &i in &present {
                t[i] += 1;
                for &j in &present {
                    m[i][j] += 1;
                }
            }
        }
        AttrStats { names: vocab.names().iter().map(|s| s.to_string()).collect(), n, t, m }
    }

    /// Conditional co-occurrence P(j | i) = M_ij / T_i (0 where T_i = 0).
    pub fn conditional(&self, i: usize, j: usize) -> f64 {
        if self.t[i] == 0 {
            0.0
        } else {
            self.m[i][j] as f64 / self.t[i] as f64
        }
    }
}
