//! Li et al. (MICCAI 2019): one step per batch on the BCE of the originals
//! and both adversarial neighbours (all with the original's label) plus the
//! signed-Laplacian regulariser over their features.

use candle_core::{Tensor, Var};
use candle_nn::VarBuilder;
use dae_data::batch::Batch;
use dae_data::rng::Rng;
use dae_losses::{bce_with_logits, signed_laplacian};
use dae_model::{LiDiagnet, LiDiagnetConfig, Network};

use super::{finite, scalar, Build, Method, Step, StepLosses};
use crate::adam::Adam;
use crate::job::LossWeights;
use crate::RunError;

pub struct LiDiagnetMethod {
    net: LiDiagnet,
    cfg: LiDiagnetConfig,
    opt: Adam,
    weights: LossWeights,
}

impl LiDiagnetMethod {
    pub fn new(b: &Build, cfg: &LiDiagnetConfig, vb: VarBuilder) -> Result<Self, RunError> {
        let net = LiDiagnet::new(&b.job.model, b.job.optim.precision, vb)?;
        Ok(Self { net, cfg: cfg.clone(), opt: b.adam(|_| true)?, weights: b.job.loss.clone() })
    }
}

impl Method for LiDiagnetMethod {
    fn network(&self) -> &dyn Network {
        &self.net
    }

    fn step(&mut self, b: &Batch, _rng: &mut Rng) -> candle_core::Result<Step> {
        let Self { net: m, cfg, opt, weights: w } = self;
        let x = &b.images;
        let y: Vec<u8> = b.labels.to_vec1::<f32>()?.iter().map(|v| (*v > 0.5) as u8).collect();
        let flipped = (1.0 - &b.labels)?;
        let towards = |target: &Tensor| -> candle_core::Result<Tensor> {
            let mut xc = x.detach();
            for _ in 0..cfg.steps {
                let xv = Var::from_tensor(&xc)?;
                let l = bce_with_logits(&m.classify(&m.features(xv.as_tensor(), false)?)?, target)?;
                let g = l.backward()?.get(xv.as_tensor()).cloned().ok_or_else(|| candle_core::Error::Msg("no input gradient".into()))?;
                xc = (xc - (g.sign()? * cfg.epsilon)?)?.detach();
            }
            Ok(xc)
        };
        // Own-class neighbours descend the loss of the true label;
        // other-class neighbours descend that of the flipped label
        // (hard examples near the boundary). Both keep their
        // original's label: they are augmentation, and the signed
        // graph pulls them into their class.
        let pos = towards(&b.labels)?;
        let neg = towards(&flipped)?;
        let all = Tensor::cat(&[x, &pos, &neg], 0)?;
        let h = m.features(&all, true)?;
        let n = y.len();
        let logits = m.classify(&h)?;
        let l_cls = bce_with_logits(&logits, &Tensor::cat(&[&b.labels, &b.labels, &b.labels], 0)?)?;
        let classes: Vec<u8> = y.iter().chain(&y).chain(&y).copied().collect();
        let l_lap = signed_laplacian(&h, &classes)?;
        let total = ((&l_cls * w.cls)? + (&l_lap * cfg.laplacian)?)?;
        let total_v = finite!("loss", total);
        opt.backward_step(&total)?;
        let spread = within_class_spread(&h.narrow(0, 0, n)?.to_vec2::<f32>()?, &y);
        Ok(Step::Done(StepLosses {
            total: total_v as f64,
            cls: scalar(&l_cls)? as f64,
            attr: 0.0,
            rec: 0.0,
            extra: vec![scalar(&l_lap)? as f64, spread],
        }))
    }

    fn optimisers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }

    fn extra_columns(&self) -> &'static [&'static str] {
        &["loss_laplacian", "within_class_spread"]
    }
}

/// Within-class spread of L2-normalised feature rows relative to their total
/// spread: sum over rows of |u - centroid of its class|^2 over sum of
/// |u - centroid of all|^2 (0 = each class a point, 1 = no class structure).
pub fn within_class_spread(rows: &[Vec<f32>], classes: &[u8]) -> f64 {
    let unit: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let n = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(|v| *v as f64 / n).collect()
        })
        .collect();
    let d = unit.first().map_or(0, |r| r.len());
    let centroid = |pick: &dyn Fn(usize) -> bool| -> Vec<f64> {
        let mut c = vec![0.0; d];
        let mut n = 0.0;
        for (i, u) in unit.iter().enumerate().filter(|(i, _)| pick(*i)) {
            let _ = i;
            n += 1.0;
            for (a, b) in c.iter_mut().zip(u) {
                *a += b;
            }
        }
        c.iter().map(|v| v / f64::max(n, 1.0)).collect()
    };
    let all = centroid(&|_| true);
    let by: Vec<Vec<f64>> = (0..2u8).map(|k| centroid(&|i| classes[i] == k)).collect();
    let sq = |u: &[f64], c: &[f64]| u.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
    let within: f64 = unit.iter().zip(classes).map(|(u, &k)| sq(u, &by[k.min(1) as usize])).sum();
    let total: f64 = unit.iter().map(|u| sq(u, &all)).sum();
    if total > 0.0 {
        within / total
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::within_class_spread;

    #[test]
    fn within_class_spread_is_zero_for_class_points_and_one_without_structure() {
        // Each class one direction: no spread within classes.
        let rows = vec![vec![1.0, 0.0], vec![2.0, 0.0], vec![0.0, 1.0], vec![0.0, 3.0]];
        assert!(within_class_spread(&rows, &[0, 0, 1, 1]).abs() < 1e-12);
        // Unit vectors (1,0), (0,1) in each class: class centroids equal the
        // global one (0.5, 0.5), so within = total: ratio 1.
        let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!((within_class_spread(&rows, &[0, 0, 1, 1]) - 1.0).abs() < 1e-12);
    }
}
