//! The trainer: losses fall, gradients reach exactly the enabled parameter
//! groups, a run folder is complete and consistent, runs are reproducible,
//! and bad configs fail before training.

use super::common;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use dae_data::batch::{batches, BatchSpec, Normalize};
use dae_data::{AttrStats, DatasetConfig, SplitSpec, SynthParams, Vocabulary};
use dae_model::{init_weights, AttributeMode, DaeGcn, ModelConfig, Precision};
use dae_runfolder::ExitCode;
use dae_train::{train, Job, JobConfig};

fn tiny_job(dir: &Path) -> JobConfig {
    let text = r#"
        seed = 1
        [dataset]
        kind = "synthetic"
        patients = 80
        image_size = 32
        [split]
        ratios = [0.6, 0.2, 0.2]
        [model]
        width = 4
        h_ma_dim = 8
        h_mi_dim = 8
        h_i_dim = 8
        gcn_hidden = 8
        [optim]
        batch_size = 16
        epochs = 2
        [output]
        figure3_samples = 2
    "#;
    // One cache for every test of this binary (tests run in parallel; the
    // generator's cache tolerates concurrent writers of the same entry).
    let _ = dir;
    std::env::set_var("DAE_CACHE", std::env::temp_dir().join("dae-train-test-cache"));
    toml::from_str(text).unwrap()
}

fn model_for(cfg: &ModelConfig, seed: u64) -> (VarMap, DaeGcn, Vec<dae_data::batch::Batch>) {
    model_in(cfg, seed, Precision::F32)
}

/// A DAE-GCN of `precision` with its weights from `seed`, and one batch of 16.
pub(crate) fn model_in(cfg: &ModelConfig, seed: u64, precision: Precision) -> (VarMap, DaeGcn, Vec<dae_data::batch::Batch>) {
    let spec = SplitSpec::default();
    let samples = dae_data::synth::generate(&SynthParams { patients: 40, image_size: 32, ..Default::default() }, &spec).unwrap();
    let idx: Vec<usize> = (0..samples.len()).collect();
    let vocab = Vocabulary::default();
    let stats = AttrStats::from_samples(&samples, &vocab);
    let norm = Normalize::fit(&samples, &idx).unwrap();
    let bspec = BatchSpec { batch_size: 16, vocab: &vocab, normalize: norm, shuffle_seed: None, augment: None, keep_last: false };
    let b: Vec<_> = batches(&samples, &idx, &bspec, &Device::Cpu).unwrap().map(|b| b.unwrap()).take(1).collect();
    let vm = VarMap::new();
    let m = DaeGcn::new(cfg, 32, &vocab, &stats, precision, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    init_weights(&vm, seed).unwrap();
    (vm, m, b)
}

pub(crate) fn losses(m: &DaeGcn, b: &dae_data::batch::Batch) -> (candle_core::Tensor, [Option<f32>; 3]) {
    let o = m.forward_t(&b.images, true).unwrap();
    let cls = dae_losses::bce_with_logits(&o.logits, &b.labels).unwrap();
    let mut total = cls.clone();
    let mut vals = [Some(cls.to_scalar::<f32>().unwrap()), None, None];
    if let Some(s) = &o.attr_scores {
        let l = dae_losses::cluster_softmax_ce(s, &b.attributes, &[0..4, 4..9]).unwrap();
        vals[1] = Some(l.to_scalar().unwrap());
        total = (total + l).unwrap();
    }
    if let Some(r) = &o.recon {
        let l = dae_losses::l1_reconstruction(&b.images, r).unwrap();
        vals[2] = Some(l.to_scalar().unwrap());
        total = (total + l).unwrap();
    }
    (total, vals)
}

/// Parameter groups by name prefix (`encoder` is the trunk, `encoder.branch.<block>`
/// a block's branch), and whether any gradient in the group is non-zero.
pub(crate) fn groups_with_gradient(vm: &VarMap, grads: &candle_core::backprop::GradStore) -> BTreeMap<String, bool> {
    let data = vm.data().lock().unwrap();
    let mut out = BTreeMap::new();
    for (name, var) in data.iter() {
        if name.contains("running_") {
            continue;
        }
        let parts = if name.starts_with("encoder.branch") {
            3
        } else if name.starts_with("heads") || name.starts_with("attr") {
            2
        } else {
            1
        };
        let group = name.split('.').take(parts).collect::<Vec<_>>().join(".");
        let has =
            grads.get(var.as_tensor()).map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0).unwrap_or(false);
        *out.entry(group).or_insert(false) |= has;
    }
    out
}

#[test]
fn every_loss_term_falls_and_gradients_reach_exactly_the_enabled_groups() {
    // Row 7: every group present and trained.
    let (vm, m, b) = model_for(&ModelConfig { width: 4, h_ma_dim: 8, h_mi_dim: 8, h_i_dim: 8, gcn_hidden: 8, ..Default::default() }, 3);
    let (total, first) = losses(&m, &b[0]);
    let g = groups_with_gradient(&vm, &total.backward().unwrap());
    let want = ["attr.gcn", "classifier", "decoder", "encoder", "encoder.branch.h_i", "encoder.branch.h_ma", "encoder.branch.h_mi"];
    assert_eq!(g.keys().map(String::as_str).collect::<Vec<_>>(), want);
    assert!(g.values().all(|&v| v), "{g:?}");
    let mut opt =
        candle_nn::AdamW::new(vm.all_vars(), candle_nn::ParamsAdamW { lr: 3e-3, weight_decay: 0.0, ..Default::default() }).unwrap();
    for _ in 0..25 {
        let (t, _) = losses(&m, &b[0]);
        opt.backward_step(&t).unwrap();
    }
    let (_, last) = losses(&m, &b[0]);
    for (k, (a, z)) in first.iter().zip(&last).enumerate() {
        let (a, z) = (a.unwrap(), z.unwrap());
        assert!(z < a, "loss term {k} did not fall: {a} -> {z}");
    }
    // The classifier reads [h_ma, h_mi] only: L_cls sends nothing to h_i's branch.
    let o = m.forward_t(&b[0].images, true).unwrap();
    let cls = dae_losses::bce_with_logits(&o.logits, &b[0].labels).unwrap();
    let g = groups_with_gradient(&vm, &cls.backward().unwrap());
    assert!(!g["encoder.branch.h_i"] && !g["decoder"] && !g["attr.gcn"] && g["encoder.branch.h_ma"] && g["encoder.branch.h_mi"], "{g:?}");

    // Row 1 (vanilla): no decoder, no attribute branch, one block h.
    let vanilla = ModelConfig {
        width: 4,
        disentangle: false,
        attributes: AttributeMode::None,
        rec: false,
        h_i: false,
        h_dim: 16,
        ..Default::default()
    };
    let (vm, m, b) = model_for(&vanilla, 3);
    let (total, vals) = losses(&m, &b[0]);
    assert!(vals[1].is_none() && vals[2].is_none());
    let g = groups_with_gradient(&vm, &total.backward().unwrap());
    assert_eq!(g.keys().map(String::as_str).collect::<Vec<_>>(), ["classifier", "encoder", "encoder.branch.h"]);
    // Row 2 (multi-task): free heads instead of the GCN.
    let mt = ModelConfig { attributes: AttributeMode::Multitask, ..vanilla };
    let (vm, m, b) = model_for(&mt, 3);
    let g = groups_with_gradient(&vm, &losses(&m, &b[0]).0.backward().unwrap());
    assert_eq!(g.keys().map(String::as_str).collect::<Vec<_>>(), ["attr.multitask", "classifier", "encoder", "encoder.branch.h"]);
}

/// Every gradient of a variable group, as (name, sum of |g|).
fn gradient_sums(vm: &VarMap, grads: &candle_core::backprop::GradStore, prefix: &str) -> Vec<(String, f32)> {
    let data = vm.data().lock().unwrap();
    let mut out: Vec<(String, f32)> = data
        .iter()
        .filter(|(n, _)| n.starts_with(prefix) && !n.contains("running_"))
        .map(|(n, v)| {
            (n.clone(), grads.get(v.as_tensor()).map_or(0.0, |g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn under_branches_the_classifier_and_the_gcn_send_no_gradient_into_h_i_while_projections_share_its_input() {
    let row7 = ModelConfig { width: 4, h_ma_dim: 8, h_mi_dim: 8, h_i_dim: 8, gcn_hidden: 8, ..Default::default() };
    let (vm, m, b) = model_for(&row7, 3);
    let o = m.forward_t(&b[0].images, true).unwrap();
    let cls = dae_losses::bce_with_logits(&o.logits, &b[0].labels).unwrap();
    let gcn = dae_losses::cluster_softmax_ce(o.attr_scores.as_ref().unwrap(), &b[0].attributes, &[0..4, 4..9]).unwrap();
    for (what, loss) in [("L_cls", &cls), ("L_gcn", &gcn)] {
        let grads = loss.backward().unwrap();
        let h_i = gradient_sums(&vm, &grads, "encoder.branch.h_i.");
        assert!(!h_i.is_empty() && h_i.iter().all(|(_, g)| *g == 0.0), "{what} reaches h_i's branch: {h_i:?}");
        let h_ma = gradient_sums(&vm, &grads, "encoder.branch.h_ma.");
        assert!(h_ma.iter().any(|(_, g)| *g > 0.0), "{what} must reach h_ma's branch: {h_ma:?}");
    }
    // Projections: h_i is a linear read-out of the pooled features that L_cls trains,
    // so every parameter under h_i's head (the whole last stage) receives L_cls.
    let proj = ModelConfig { latent: dae_model::LatentMode::Projections, ..row7 };
    let (vm, m, b) = model_for(&proj, 3);
    let o = m.forward_t(&b[0].images, true).unwrap();
    let grads = dae_losses::bce_with_logits(&o.logits, &b[0].labels).unwrap().backward().unwrap();
    let last = gradient_sums(&vm, &grads, "encoder.stage3.");
    assert!(!last.is_empty() && last.iter().all(|(_, g)| *g > 0.0), "{last:?}");
    assert!(gradient_sums(&vm, &grads, "heads.h_i.").iter().all(|(_, g)| *g == 0.0));
}

#[test]
fn rows_share_their_initial_trunk_for_one_seed() {
    // Common random numbers: each variable is drawn from (seed, its name).
    let row7 = ModelConfig { width: 4, h_ma_dim: 8, h_mi_dim: 8, h_i_dim: 8, gcn_hidden: 8, ..Default::default() };
    let row1 = ModelConfig { disentangle: false, attributes: AttributeMode::None, rec: false, h_i: false, h_dim: 24, ..row7.clone() };
    let trunk = |cfg: &ModelConfig, seed: u64| -> BTreeMap<String, Vec<f32>> {
        let (vm, _, _) = model_for(cfg, seed);
        let data = vm.data().lock().unwrap();
        data.iter()
            .filter(|(n, _)| n.starts_with("encoder.") && !n.starts_with("encoder.branch."))
            .map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect()
    };
    let (a, b) = (trunk(&row1, 7), trunk(&row7, 7));
    assert!(a.len() > 4 && a.keys().eq(b.keys()), "{:?} vs {:?}", a.keys(), b.keys());
    assert_eq!(a, b, "row 1 and row 7 start from the same trunk");
    assert_ne!(trunk(&row7, 8), b, "another seed, another trunk");
}

#[test]
fn h_i_erase_removes_the_class_mean_difference_from_h_i_and_leaves_the_other_blocks() {
    let cfg = ModelConfig { width: 4, h_ma_dim: 8, h_mi_dim: 8, h_i_dim: 8, gcn_hidden: 8, h_i_erase: true, ..Default::default() };
    let (_vm, m, b) = model_for(&cfg, 3);
    let b = &b[0];
    let labels: Vec<u8> = b.labels.to_vec1::<f32>().unwrap().iter().map(|&v| (v > 0.5) as u8).collect();
    assert!(labels.contains(&0) && labels.contains(&1), "the batch needs both classes");
    // Class-mean difference per latent column.
    let diff = |t: &candle_core::Tensor| -> Vec<f64> {
        let rows = t.to_vec2::<f32>().unwrap();
        let mean = |k: u8, j: usize| {
            let v: Vec<f64> = rows.iter().zip(&labels).filter(|(_, &y)| y == k).map(|(r, _)| r[j] as f64).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        (0..rows[0].len()).map(|j| mean(1, j) - mean(0, j)).collect()
    };
    let before = m.encode(&b.images, false).unwrap();
    let raw = m.h_i_before_erasure(&b.images, false).unwrap().unwrap();
    assert_eq!(
        raw.to_vec2::<f32>().unwrap(),
        m.block(&before, "h_i").unwrap().unwrap().to_vec2::<f32>().unwrap(),
        "unfitted eraser is the identity"
    );
    assert!(m.fit_eraser(&raw.to_vec2::<f32>().unwrap(), &labels).unwrap());
    let after = m.encode(&b.images, false).unwrap();
    let h_i = m.blocks().iter().find(|bl| bl.name == "h_i").unwrap().range.clone();
    let (d0, d1) = (diff(&before), diff(&after));
    assert!(d0[h_i.clone()].iter().any(|d| d.abs() > 1e-3), "{d0:?}");
    assert!(d1[h_i.clone()].iter().all(|d| d.abs() < 1e-4), "h_i still separates the classes: {d1:?}");
    let (x0, x1) = (before.to_vec2::<f32>().unwrap(), after.to_vec2::<f32>().unwrap());
    for (r0, r1) in x0.iter().zip(&x1) {
        assert_eq!(r0[..h_i.start], r1[..h_i.start], "h_ma and h_mi must not change");
    }
}

#[test]
fn a_run_folder_is_complete_consistent_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Job::new(tiny_job(dir.path())).unwrap();
    let out = dir.path().join("run");
    let m = train(&cfg, &out, &AtomicBool::new(false)).unwrap();
    for f in ["config.toml", "metrics.json", "history.csv", "scores.csv", "model.safetensors", "figure3.json", "done"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(!out.join("incomplete").exists());
    // `done` seals what the reports read, and the seal holds.
    let folder = dae_runfolder::RunFolder::at(&out);
    let sealed = dae_runfolder::DoneRecord::read(&folder).unwrap().expect("a sealed completion record");
    assert!(["metrics.json", "scores.csv", "history.csv"].iter().all(|f| sealed.files.contains_key(*f)), "{sealed:?}");
    assert_eq!(dae_runfolder::check_done(&folder, dae_runfolder::Check::Hash), Ok(()));
    // test_auc equals the AUC recomputed from scores.csv.
    let mut rdr = csv::Reader::from_path(out.join("scores.csv")).unwrap();
    let h = rdr.headers().unwrap().clone();
    assert_eq!(&h.iter().take(4).collect::<Vec<_>>(), &["sample_id", "patient", "label", "score"]);
    assert_eq!(&h.iter().skip(4).collect::<Vec<_>>(), &["pred_shape", "pred_margin", "true_shape", "true_margin"]);
    let (mut s, mut y, mut shape_hits) = (vec![], vec![], 0usize);
    for r in rdr.records() {
        let r = r.unwrap();
        y.push(r[2].parse::<u8>().unwrap());
        s.push(r[3].parse::<f64>().unwrap());
        shape_hits += (r[4] == r[6]) as usize;
    }
    assert_eq!(s.len(), m.n_test);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let recomputed = dae_metrics::roc_auc(&s, &y).unwrap();
    assert!((json["test_auc"].as_f64().unwrap() - recomputed).abs() < 1e-6);
    // The report recomputes attribute accuracy from the pred_/true_ columns.
    let shape_acc = shape_hits as f64 / s.len() as f64;
    assert!((json["attr_acc"]["shape"].as_f64().unwrap() - shape_acc).abs() < 1e-6, "{shape_acc} vs {}", json["attr_acc"]);
    assert!(json["val_auc"].is_number() && json["attr_acc"]["mean"].is_number() && json["probe_auc"]["h_i"].is_number());
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + m.epochs_run);
    // The resolved config reloads to the same job.
    let resolved = Job::parse(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    assert_eq!(resolved, cfg);
    // A finished run is never overwritten.
    let e = train(&cfg, &out, &AtomicBool::new(false)).unwrap_err();
    assert!(e.to_string().contains("already holds a finished run"), "{e}");
    assert_eq!(e.exit_code(), ExitCode::BadConfig);
}

#[test]
fn the_same_seed_gives_the_same_metrics_and_an_interrupt_leaves_the_run_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Job::new(tiny_job(dir.path())).unwrap();
    let a = train(&cfg, &dir.path().join("a"), &AtomicBool::new(false)).unwrap();
    let b = train(&cfg, &dir.path().join("b"), &AtomicBool::new(false)).unwrap();
    assert_eq!((a.test_auc, a.val_auc), (b.test_auc, b.val_auc));
    assert_eq!(std::fs::read(dir.path().join("a/scores.csv")).unwrap(), std::fs::read(dir.path().join("b/scores.csv")).unwrap());
    // TensorBoard scalars of every epoch, and the machine the run finished on.
    let events = std::fs::read(dir.path().join("a").join(dae_runfolder::files::TFEVENTS)).unwrap();
    assert_eq!(events.windows(8).filter(|w| w == b"val/auc\x15").count(), a.epochs_run);
    assert!(a.machine.threads >= 1 && a.machine.rustc.starts_with("rustc") && a.machine.gpu.is_none());
    let e = train(&cfg, &dir.path().join("c"), &AtomicBool::new(true)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Interrupted);
    assert!(dir.path().join("c/incomplete").exists() && !dir.path().join("c/done").exists());
}

#[test]
fn set_overrides_apply_to_the_file_and_a_bad_one_is_named_as_typed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("job.toml");
    std::fs::write(&p, "[model]\ntau = 0.5\n[optim]\nepochs = 3\n").unwrap();
    let set = |s: &str| s.parse::<dae_runfolder::settings::SetArg>().unwrap();
    let job = Job::load_with(&p, &[set("model.tau=0.3"), set("optim.epochs=2")]).unwrap();
    assert_eq!((job.model.tau, job.optim.epochs), (0.3, 2));
    assert_eq!(Job::load(&p).unwrap().model.tau, 0.5);
    let e = Job::load_with(&p, &[set("model.tua=0.3")]).unwrap_err().to_string();
    assert!(e.contains("--set model.tua=0.3") && e.contains("tau") && !e.contains("line"), "{e}");
    let e = Job::load_with(&p, &[set("model.tau=1.5")]).unwrap_err().to_string();
    assert!(e.contains("--set model.tau=1.5") && e.contains("(0, 1)"), "{e}");
    let e = Job::load_with(&p, &[set("optim.epochs=ten")]).unwrap_err().to_string();
    assert!(e.contains("--set optim.epochs") && e.contains("expected usize"), "{e}");
}

#[test]
fn bad_configs_fail_before_training_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let p = dir.path().join("job.toml");
        std::fs::write(&p, text).unwrap();
        Job::load(&p).unwrap_err().to_string()
    };
    let e = write("[model]\ntua = 0.3\n");
    assert!(e.contains("job.toml") && e.contains("tua") && e.contains("tau") && e.contains("line 2"), "{e}");
    let e = write("[model]\ntau = 1.5\n");
    assert!(e.contains("model.tau") && e.contains("(0, 1)"), "{e}");
    let e = write("[model]\np = 0\n");
    assert!(e.contains("model.p"), "{e}");
    let e = write("[model]\ndisentangle = false\nh_i = true\n");
    assert!(e.contains("model.h_i") && e.contains("disentangle"), "{e}");
    let e = write("[model]\nh_i = false\nh_i_erase = true\n");
    assert!(e.contains("model.h_i_erase") && e.contains("h_i = true"), "{e}");
    let e = write("[model]\nh_mi_dim = 0\n");
    assert!(e.contains("model.h_mi_dim"), "{e}");
    let e = write("[optim]\nepochs = \"ten\"\n");
    assert!(e.contains("epochs") && e.contains("line 2") && e.contains("expected usize"), "{e}");
    let e = write("device = \"tpu\"\n");
    assert!(e.contains("device") && e.contains("cuda:N"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = write("device = \"cuda\"\n");
        assert!(e.contains("device") && e.contains("--features cuda") && e.contains("--trainer"), "{e}");
    }
    // Branches share out the last encoder stage (8 x width = 64 channels here).
    let e = write("[model]\nwidth = 8\nh_ma_dim = 32\nh_mi_dim = 32\nh_i_dim = 16\n");
    assert!(e.contains("model.h_ma_dim") && e.contains("80 channels") && e.contains("64") && e.contains("projections"), "{e}");
    let e = write("[optim]\nschedule = \"linear\"\n");
    assert!(e.contains("schedule") && e.contains("constant") && e.contains("cosine") && e.contains("line 2"), "{e}");
    let e = write("[optim]\nepochs = 5\nwarmup_epochs = 5\n");
    assert!(e.contains("optim.warmup_epochs") && e.contains("shorter than the run"), "{e}");
    let e = write("[dataset]\nkind = \"synthetic\"\nlesion_scale = 3.0\n");
    assert!(e.contains("dataset.lesion_scale") && e.contains("0.5..=1.8"), "{e}");
    let e = write("[dataset]\nkind = \"synthetic\"\nsupersample = 16\n");
    assert!(e.contains("dataset.supersample") && e.contains("0..=8"), "{e}");
    // GCN on a data set without attributes: an error before any training step.
    let imgs = common::manifest_without_attributes(dir.path());
    let mut cfg = tiny_job(dir.path());
    cfg.dataset = DatasetConfig::Manifest(dae_data::manifest::ManifestOptions { root: imgs, image_size: 32 });
    let e = train(&Job::new(cfg).unwrap(), &dir.path().join("run"), &AtomicBool::new(false)).unwrap_err();
    assert!(e.to_string().contains("needs attribute labels"), "{e}");
    assert_eq!(e.exit_code(), ExitCode::BadConfig);
    assert!(!dir.path().join("run/history.csv").exists());
}

#[test]
fn a_diverging_run_stops_at_once_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_job(dir.path());
    // Adam's first step moves every weight by about lr: 1e30 overflows f32 within a batch or two.
    cfg.optim.lr = 1e30;
    let out = dir.path().join("run");
    let e = train(&Job::new(cfg).unwrap(), &out, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Diverged, "{e}");
    assert!(e.to_string().contains("diverged"), "{e}");
    let failed = std::fs::read_to_string(out.join("failed")).unwrap();
    assert!(failed.contains("diverged at epoch 1"), "{failed}");
    assert!(out.join("incomplete").exists() && !out.join("done").exists());
}
