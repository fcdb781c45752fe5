//! What every method's network offers the trainer's evaluation: a latent
//! with named blocks (for the probes), malignancy logits, attribute scores
//! where the method predicts attributes, and reconstructions from chosen
//! blocks where it has a decoder (the paper's Figure 3).

use std::ops::Range;

use candle_core::{Result, Tensor};

/// A named latent block and its columns in the latent vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub name: &'static str,
    pub range: Range<usize>,
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct Outputs {
    /// All blocks concatenated, `[B, L]`.
    pub latent: Tensor,
    /// Malignancy logits `[B]`.
    pub logits: Tensor,
    /// Attribute scores `[B, A]` (softmax per cluster in the loss), when the method predicts attributes.
    pub attr_scores: Option<Tensor>,
    /// Reconstruction `[B, 1, H, W]`, when computed.
    pub recon: Option<Tensor>,
}

/// A probe group: the `metrics.json` key and the blocks it reads.
pub type ProbeGroup = (&'static str, Vec<&'static str>);

/// Any method's network, as evaluation, the probes and Figure 3 see it.
pub trait Network: std::fmt::Debug {
    /// The latent blocks, in order.
    fn blocks(&self) -> &[Block];
    /// The latent of a batch of images `[B, 1, H, W]`.
    fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// Evaluation-mode outputs (no reconstruction).
    fn evaluate(&self, x: &Tensor) -> Result<Outputs>;
    /// The probes to run on the latent.
    fn probe_groups(&self) -> Vec<ProbeGroup>;
    /// Figure 3's panels after the input: `(title, blocks kept)`; empty
    /// without a decoder of the latent.
    fn figure3_panels(&self) -> Vec<ProbeGroup> {
        Vec::new()
    }
    /// Decodes from the named blocks only, the others zeroed; `None`
    /// without a decoder.
    fn decode_from(&self, _latent: &Tensor, _keep: &[&str]) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// The attribute graph, for methods that build one.
    fn graph(&self) -> Option<&crate::graph::GraphSummary> {
        None
    }
}

/// `latent` with the columns of blocks not named in `keep` zeroed.
pub fn keep_blocks(blocks: &[Block], latent: &Tensor, keep: &[&str]) -> Result<Tensor> {
    let (b, l) = latent.dims2()?;
    let mask: Vec<f32> = (0..l).map(|i| blocks.iter().any(|bl| bl.range.contains(&i) && keep.contains(&bl.name)) as u8 as f32).collect();
    let mask = Tensor::from_vec(mask, (1, l), latent.device())?.broadcast_as((b, l))?;
    latent * mask
}

/// The candidate panels whose blocks all exist.
pub fn present_panels(blocks: &[Block], candidates: Vec<ProbeGroup>) -> Vec<ProbeGroup> {
    candidates.into_iter().filter(|(_, keep)| !keep.is_empty() && keep.iter().all(|b| blocks.iter().any(|bl| bl.name == *b))).collect()
}
