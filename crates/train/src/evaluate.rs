//! The network's outputs over a split in evaluation mode, and what is
//! measured from them: AUC and attribute accuracy.

use std::collections::BTreeMap;
use std::ops::Range;

use dae_data::batch::batches;
use dae_data::Vocabulary;
use dae_model::Network;

use crate::data::RunData;
use crate::RunError;

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-z as f64).exp())
}

/// Model outputs over a split, in eval mode, in batch order.
pub struct Eval {
    /// Malignancy probabilities.
    pub scores: Vec<f64>,
    pub labels: Vec<u8>,
    /// Attribute scores per sample (empty when the method predicts none).
    pub attr_scores: Vec<Vec<f32>>,
    pub attr_targets: Vec<Vec<f32>>,
    /// The whole latent per sample.
    pub latents: Vec<Vec<f32>>,
    /// Sample indices into the data set.
    pub indices: Vec<usize>,
}

/// Runs `net` in evaluation mode over the samples `idx`.
pub fn evaluate(net: &dyn Network, data: &RunData, idx: &[usize]) -> Result<Eval, RunError> {
    let mut e = Eval { scores: vec![], labels: vec![], attr_scores: vec![], attr_targets: vec![], latents: vec![], indices: vec![] };
    for b in batches(&data.samples, idx, &data.eval_spec(), &data.dev)? {
        let b = b?;
        let out = net.evaluate(&b.images)?;
        e.scores.extend(out.logits.to_vec1::<f32>()?.into_iter().map(sigmoid));
        e.labels.extend(b.labels.to_vec1::<f32>()?.into_iter().map(|v| v as u8));
        if let Some(s) = out.attr_scores {
            e.attr_scores.extend(s.to_vec2::<f32>()?);
        }
        e.attr_targets.extend(b.attributes.to_vec2::<f32>()?);
        e.latents.extend(out.latent.to_vec2::<f32>()?);
        e.indices.extend(b.indices);
    }
    Ok(e)
}

impl Eval {
    /// The AUC of the scores (0.5 where it is undefined: one class only).
    pub fn auc(&self) -> f64 {
        auc_or_half(&self.scores, &self.labels)
    }

    /// Attribute accuracy per cluster and `mean` over clusters; empty when
    /// the method predicts no attributes.
    pub fn attr_accuracy(&self, vocab: &Vocabulary) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if self.attr_scores.is_empty() {
            return out;
        }
        let mut accs = Vec::new();
        for (c, r) in vocab.clusters() {
            if let Some(a) = dae_metrics::cluster_accuracy(&self.attr_scores, &self.attr_targets, r) {
                out.insert(c.name().to_string(), a);
                accs.push(a);
            }
        }
        if !accs.is_empty() {
            out.insert("mean".into(), accs.iter().sum::<f64>() / accs.len() as f64);
        }
        out
    }

    /// The predicted attribute of each cluster for the `k`-th sample (the
    /// highest score within the cluster); empty without attribute scores.
    pub fn predicted_attributes(&self, k: usize, vocab: &Vocabulary) -> Vec<&'static str> {
        let Some(row) = self.attr_scores.get(k) else { return Vec::new() };
        vocab.clusters().into_iter().map(|(_, r)| vocab.attributes()[argmax(row, r)].name()).collect()
    }
}

fn argmax(row: &[f32], r: Range<usize>) -> usize {
    r.max_by(|&a, &b| row[a].total_cmp(&row[b])).expect("a cluster is not empty")
}

/// The AUC, or 0.5 where it is undefined.
pub fn auc_or_half(scores: &[f64], labels: &[u8]) -> f64 {
    dae_metrics::roc_auc(scores, labels).unwrap_or(0.5)
}
