//! `optim.precision = "bf16"` on the CPU (the emulation, `DAE_CPU_BF16=1`):
//! the model's outputs and gradients stay f32 and close to f32's, every
//! method trains and resumes to the same run, and the f32 job ids stand.

use std::sync::atomic::AtomicBool;

use candle_core::DType;
use dae_model::{ModelConfig, Precision};
use dae_train::{train, Job};

use crate::basics::{groups_with_gradient, losses, model_in};
use crate::common::tiny_job;
use crate::resume::resumed_equals_uninterrupted;

/// The tiny job of `method` in bf16 (the CPU emulation allowed).
fn bf16_job(method: &str, optim: &str) -> Job {
    std::env::set_var(dae_train::job::CPU_BF16, "1");
    tiny_job(method, "", &format!("precision = \"bf16\"\n{optim}"))
}

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// max |a - b| / max |b|.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    d / b.iter().map(|y| y.abs()).fold(f32::MIN_POSITIVE, f32::max)
}

#[test]
fn a_bf16_model_gives_f32_outputs_and_gradients_close_to_f32s() {
    let cfg = ModelConfig { width: 4, h_ma_dim: 8, h_mi_dim: 8, h_i_dim: 8, gcn_hidden: 8, ..ModelConfig::default() };
    let (vm32, m32, b) = model_in(&cfg, 5, Precision::F32);
    let (vm16, m16, _) = model_in(&cfg, 5, Precision::Bf16);
    let (o32, o16) = (m32.forward_t(&b[0].images, true).unwrap(), m16.forward_t(&b[0].images, true).unwrap());
    let recon = |o: &dae_model::Outputs| o.recon.clone().unwrap();
    let pairs = [("latent", &o16.latent, &o32.latent), ("logits", &o16.logits, &o32.logits), ("recon", &recon(&o16), &recon(&o32))];
    for (what, a, b) in pairs {
        assert_eq!(a.dtype(), DType::F32, "{what}");
        let r = relative(&flat(a), &flat(b));
        // bf16 keeps 8 bits of mantissa: about 0.4% per rounding, a few percent through the network.
        assert!(r > 0.0 && r < 0.08, "{what}: relative difference {r}");
    }
    let (l32, _) = losses(&m32, &b[0]);
    let (l16, _) = losses(&m16, &b[0]);
    let (g32, g16) = (l32.backward().unwrap(), l16.backward().unwrap());
    // The same groups get gradients, in f32, pointing the same way (a
    // conv bias before batch norm has a zero gradient in exact arithmetic:
    // rounding noise on both sides, left out).
    assert_eq!(groups_with_gradient(&vm32, &g32), groups_with_gradient(&vm16, &g16));
    let (d32, d16) = (vm32.data().lock().unwrap(), vm16.data().lock().unwrap());
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (mut all32, mut all16) = (Vec::new(), Vec::new());
    for (name, v) in d32.iter().filter(|(n, _)| !n.contains("running_")) {
        let (Some(a), Some(b)) = (g32.get(v.as_tensor()), g16.get(d16[name].as_tensor())) else { continue };
        assert_eq!((b.dtype(), d16[name].dtype()), (DType::F32, DType::F32), "{name}: master weight and gradient");
        let (a, b) = (flat(a), flat(b));
        let cos = cosine(&a, &b);
        assert!(cos > 0.9 || norm(&a) < 1e-6, "{name}: gradient cosine {cos}");
        all32.extend(a);
        all16.extend(b);
    }
    let cos = cosine(&all32, &all16);
    assert!(cos > 0.99, "all gradients: cosine {cos}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

#[test]
fn every_method_trains_in_bf16_and_resumes_to_the_same_run() {
    resumed_equals_uninterrupted(&bf16_job("dae-gcn", "epochs = 3\npatience = 0"), 1);
    resumed_equals_uninterrupted(&bf16_job("guided-vae", "epochs = 2\npatience = 0"), 1);
    resumed_equals_uninterrupted(&bf16_job("icadx", "epochs = 2\npatience = 0"), 1);
    resumed_equals_uninterrupted(&bf16_job("li-diagnet", "epochs = 2\npatience = 0"), 1);
}

#[test]
fn bf16_is_its_own_job_and_f32_jobs_keep_their_ids() {
    let f32_job = tiny_job("dae-gcn", "", "epochs = 2");
    let bf16 = bf16_job("dae-gcn", "epochs = 2");
    assert!(!f32_job.canonical().contains("precision"), "an f32 job's text (and id) is what it was before the key existed");
    assert!(bf16.canonical().contains("precision = \"bf16\""));
    // Different numbers, the same kind of result.
    let dir = tempfile::tempdir().unwrap();
    let a = train(&f32_job, &dir.path().join("f32"), &AtomicBool::new(false)).unwrap();
    let b = train(&bf16, &dir.path().join("bf16"), &AtomicBool::new(false)).unwrap();
    let (ha, hb) =
        (std::fs::read(dir.path().join("f32/history.csv")).unwrap(), std::fs::read(dir.path().join("bf16/history.csv")).unwrap());
    assert_ne!(ha, hb, "bf16 changed nothing");
    assert!((a.test_auc - b.test_auc).abs() < 0.25, "test AUC {} (f32) against {} (bf16)", a.test_auc, b.test_auc);
}
