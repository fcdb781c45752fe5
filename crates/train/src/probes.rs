//! Probes of the frozen latent: how much of the label each block holds.
//! A linear probe fitted on the training split and scored on the test
//! split, and the paper's protocol (a classifier trained on test-time
//! features) as a 5-fold cross-validation within the test split with folds
//! by patient, with a linear and an RBF-kernel probe.

use std::collections::BTreeMap;

use dae_model::Network;

use crate::data::RunData;
use crate::evaluate::{auc_or_half, evaluate, Eval};
use crate::RunError;

/// Linear probes on frozen features: fitted on the training split and
/// scored on the test split, and cross-validated within the test split.
pub fn probes(model: &dyn Network, data: &RunData, test: &Eval) -> Result<Probes, RunError> {
    let train = evaluate(model, data, &data.split.train)?;
    let patients: Vec<&str> = test.indices.iter().map(|&i| data.samples[i].patient.as_str()).collect();
    let (mut out, mut cv, mut cv_rbf) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let with_rbf = test.labels.len() <= RBF_PROBE_MAX_ROWS;
    if !with_rbf {
        tracing::warn!(
            test_samples = test.labels.len(),
            "the RBF-SVM probe is left out above {RBF_PROBE_MAX_ROWS} test samples (its kernel matrix grows with their square)"
        );
    }
    let cols = |name: &[&str]| -> Vec<std::ops::Range<usize>> {
        model.blocks().iter().filter(|b| name.contains(&b.name)).map(|b| b.range.clone()).collect()
    };
    let groups: Vec<(&str, Vec<std::ops::Range<usize>>)> = model.probe_groups().into_iter().map(|(n, b)| (n, cols(&b))).collect();
    for (name, ranges) in groups {
        let pick = |rows: &[Vec<f32>]| -> Vec<Vec<f64>> {
            rows.iter().map(|r| ranges.iter().flat_map(|rg| r[rg.clone()].iter().map(|&v| v as f64)).collect()).collect()
        };
        let (xtr, xte) = (pick(&train.latents), pick(&test.latents));
        if let Some(s) = Probe::Linear.fit_score(&xtr, &train.labels, &xte.iter().collect::<Vec<_>>()) {
            out.insert(name.to_string(), auc_or_half(&s, &test.labels));
        }
        if let Some(a) = cross_validated_probe(&xte, &test.labels, &patients, PROBE_FOLDS, Probe::Linear) {
            cv.insert(name.to_string(), a);
        }
        if let Some(a) = with_rbf.then(|| cross_validated_probe(&xte, &test.labels, &patients, PROBE_FOLDS, Probe::Rbf)).flatten() {
            cv_rbf.insert(name.to_string(), a);
        }
    }
    Ok(Probes { train_fit: out, test_cv: cv, test_cv_rbf: cv_rbf })
}

/// The probes' AUCs per probe group (see [`dae_runfolder::Metrics`]).
pub struct Probes {
    pub train_fit: BTreeMap<String, f64>,
    pub test_cv: BTreeMap<String, f64>,
    pub test_cv_rbf: BTreeMap<String, f64>,
}

/// Which classifier a probe fits.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// L2 logistic regression (lambda 1e-2).
    Linear,
    /// RBF-kernel SVM, C = 1, gamma = 1/d on standardised features.
    Rbf,
}

impl Probe {
    /// Fits on `(x, y)` and returns the scores of `rows`.
    fn fit_score(self, x: &[Vec<f64>], y: &[u8], rows: &[&Vec<f64>]) -> Option<Vec<f64>> {
        match self {
            Probe::Linear => {
                let m = dae_metrics::LogisticRegression::fit(x, y, 1e-2).ok()?;
                Some(rows.iter().map(|r| m.predict(r)).collect())
            }
            Probe::Rbf => {
                let m = dae_metrics::RbfSvm::fit(x, y, 1.0).ok()?;
                if !m.converged() {
                    tracing::warn!(rows = x.len(), "the RBF-SVM probe stopped before its tolerance (10,000 passes)");
                }
                Some(rows.iter().map(|r| m.decision(r)).collect())
            }
        }
    }
}

const PROBE_FOLDS: usize = 5;
/// Above this many test samples `probe_auc_test_cv_rbf` is left out: each
/// fold's kernel SVM holds an n x n matrix (2,000 rows: ~11 s, 32 MB).
const RBF_PROBE_MAX_ROWS: usize = 2500;

/// AUC of out-of-fold `probe` scores, folds by patient (the
/// views of one patient never sit on both sides of a fit, as in the split):
/// patients, ordered by their number of malignant rows then first
/// appearance, are dealt round-robin into `folds` folds, so each fold gets
/// both classes in proportion; each fold is scored by a probe fitted on the
/// others (every fold then has patients of both kinds, so every training
/// part has both classes). `None` when a class has fewer patients than
/// folds, or a fit fails.
fn cross_validated_probe(x: &[Vec<f64>], y: &[u8], patients: &[&str], folds: usize, probe: Probe) -> Option<f64> {
    let mut first: Vec<&str> = Vec::new();
    let mut malignant: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (&p, &v) in patients.iter().zip(y) {
        if !malignant.contains_key(p) {
            first.push(p);
        }
        *malignant.entry(p).or_insert(0) += (v > 0) as usize;
    }
    let with = first.iter().filter(|p| malignant[*p] > 0).count();
    if with < folds || first.len() - with < folds {
        return None;
    }
    // A stable sort: within a count, patients keep their order of appearance.
    first.sort_by_key(|p| malignant[p]);
    let fold_of: std::collections::HashMap<&str, usize> = first.iter().enumerate().map(|(rank, &p)| (p, rank % folds)).collect();
    let fold: Vec<usize> = patients.iter().map(|p| fold_of[p]).collect();
    let mut scores = vec![0.0; y.len()];
    for f in 0..folds {
        let (xf, yf): (Vec<Vec<f64>>, Vec<u8>) = (0..y.len()).filter(|&i| fold[i] != f).map(|i| (x[i].clone(), y[i])).unzip();
        let held: Vec<usize> = (0..y.len()).filter(|&i| fold[i] == f).collect();
        let s = probe.fit_score(&xf, &yf, &held.iter().map(|&i| &x[i]).collect::<Vec<_>>())?;
        for (i, v) in held.into_iter().zip(s) {
            scores[i] = v;
        }
    }
    Some(auc_or_half(&scores, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 patients with two identical views each, a random label per patient
    /// and 40 features of pure patient identity: nothing generalises to a new
    /// patient. Folds by patient give about chance; folds that split a
    /// patient's views let the probe recognise the twin (checked: dealing by
    /// row instead gives an AUC near 1).
    #[test]
    fn cross_validated_probe_keeps_a_patients_views_in_one_fold() {
        let mut rng = dae_data::rng::Rng::new(11);
        let (mut x, mut y, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..60 {
            let f: Vec<f64> = (0..40).map(|_| rng.normal()).collect();
            let label = rng.bernoulli(0.4) as u8;
            for _ in 0..2 {
                x.push(f.clone());
                y.push(label);
                ids.push(format!("P{p}"));
            }
        }
        let patients: Vec<&str> = ids.iter().map(String::as_str).collect();
        let by_patient = cross_validated_probe(&x, &y, &patients, 5, Probe::Linear).unwrap();
        assert!((by_patient - 0.5).abs() < 0.2, "{by_patient}");
        let rows: Vec<String> = (0..y.len()).map(|i| format!("R{i}")).collect();
        let by_row = cross_validated_probe(&x, &y, &rows.iter().map(String::as_str).collect::<Vec<_>>(), 5, Probe::Linear).unwrap();
        assert!(by_row > 0.9, "{by_row}");
        // Too few patients of a class for five folds: no figure.
        assert_eq!(cross_validated_probe(&x[..8], &y[..8], &patients[..8], 5, Probe::Linear), None);
    }
}
