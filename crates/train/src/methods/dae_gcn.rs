//! DAE-GCN and its ablation rows: one Adam step per batch on
//! w_cls L_cls + w_attr L_attr + w_rec L_rec; with `model.h_i_erase`, the
//! h_i eraser is refitted on the training split after every epoch.

use std::ops::Range;

use candle_nn::VarBuilder;
use dae_data::batch::{batches, Batch};
use dae_data::rng::Rng;
use dae_losses::{bce_with_logits, cluster_softmax_ce, l1_reconstruction};
use dae_model::{DaeGcn, Network};

use super::{finite, scalar, Build, Method, Step, StepLosses};
use crate::adam::Adam;
use crate::data::RunData;
use crate::job::LossWeights;
use crate::RunError;

pub struct DaeGcnMethod {
    net: DaeGcn,
    opt: Adam,
    weights: LossWeights,
    clusters: Vec<Range<usize>>,
}

impl DaeGcnMethod {
    pub fn new(b: &Build, vb: VarBuilder) -> Result<Self, RunError> {
        let d = b.data;
        let net = DaeGcn::new(&b.job.model, b.job.dataset.image_size(), &d.vocab, &d.stats, b.job.optim.precision, vb)?;
        Ok(Self { net, opt: b.adam(|_| true)?, weights: b.job.loss.clone(), clusters: d.clusters() })
    }
}

impl Method for DaeGcnMethod {
    fn network(&self) -> &dyn Network {
        &self.net
    }

    fn step(&mut self, b: &Batch, _rng: &mut Rng) -> candle_core::Result<Step> {
        let w = &self.weights;
        let o = self.net.forward_t(&b.images, true)?;
        let l_cls = bce_with_logits(&o.logits, &b.labels)?;
        let mut total = (&l_cls * w.cls)?;
        let mut out = StepLosses::default();
        if let Some(s) = &o.attr_scores {
            let l = cluster_softmax_ce(s, &b.attributes, &self.clusters)?;
            out.attr = scalar(&l)? as f64;
            total = (total + (l * w.attr)?)?;
        }
        if let Some(r) = &o.recon {
            let l = l1_reconstruction(&b.images, r)?;
            out.rec = scalar(&l)? as f64;
            total = (total + (l * w.rec)?)?;
        }
        out.total = finite!("loss", total) as f64;
        out.cls = scalar(&l_cls)? as f64;
        self.opt.backward_step(&total)?;
        Ok(Step::Done(out))
    }

    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }

    /// Refits the h_i eraser (`model.h_i_erase`) on the training split in
    /// evaluation mode, unaugmented: the features validation, test and the
    /// probes see.
    fn after_epoch(&self, data: &RunData) -> Result<(), RunError> {
        if !self.net.has_eraser() {
            return Ok(());
        }
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for b in batches(&data.samples, &data.split.train, &data.eval_spec(), &data.dev)? {
            let b = b?;
            if let Some(h) = self.net.h_i_before_erasure(&b.images, false)? {
                rows.extend(h.to_vec2::<f32>()?);
            }
            labels.extend(b.labels.to_vec1::<f32>()?.into_iter().map(|v| (v > 0.5) as u8));
        }
        if !self.net.fit_eraser(&rows, &labels)? {
            tracing::warn!("h_i_erase: the training split has one class only (or h_i has no variance); h_i is left as it is");
        }
        Ok(())
    }
}
