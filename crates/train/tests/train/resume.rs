//! Checkpoints: a run interrupted after an epoch and started again on the
//! same folder ends with the same scores, weights, history and metrics as a
//! run that was never stopped, for every method; a checkpoint of another
//! config is not used; an unreadable one is an error that names the file.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use dae_runfolder::ExitCode;
use dae_train::{train, train_with, Job, TrainOptions};

use crate::common::tiny_job as job;

fn json(dir: &Path) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    v.as_object().unwrap().clone()
}

/// `history.csv` without its `seconds` column.
fn history(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("history.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let keep: Vec<usize> = (0..h.len()).filter(|&i| &h[i] != "seconds").collect();
    let mut rows = vec![keep.iter().map(|&i| h[i].to_string()).collect::<Vec<_>>()];
    rows.extend(r.records().map(|rec| {
        let rec = rec.unwrap();
        keep.iter().map(|&i| rec[i].to_string()).collect()
    }));
    rows
}

/// Runs `cfg` once straight through and once interrupted after epoch
/// `cut` and started again; the two run folders must agree.
pub(crate) fn resumed_equals_uninterrupted(cfg: &Job, cut: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    train(cfg, &a, &AtomicBool::new(false)).unwrap();

    let opts = TrainOptions { interrupt_after_epoch: Some(cut), ..TrainOptions::from_env() };
    let e = train_with(cfg, &b, &AtomicBool::new(false), &opts).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Interrupted);
    assert!(b.join("incomplete").exists() && b.join(dae_runfolder::files::CHECKPOINT).exists() && !b.join("done").exists());
    assert_eq!(history(&b).len(), 1 + cut);
    let m = train(cfg, &b, &AtomicBool::new(false)).unwrap();
    assert_eq!(m.resumed_from_epoch, cut);
    assert!(!b.join(dae_runfolder::files::CHECKPOINT).exists(), "a finished run keeps no checkpoint");

    let method = cfg.method_kind().name();
    for f in ["scores.csv", "model.safetensors"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{method}: {f} differs after resuming");
    }
    assert_eq!(history(&a), history(&b), "{method}: history.csv");
    let (ja, jb) = (json(&a), json(&b));
    let timing = ["wall_seconds", "train_samples_per_second", "peak_memory_mb", "resumed_from_epoch"];
    for (k, v) in &ja {
        if !timing.contains(&k.as_str()) {
            assert_eq!(Some(v), jb.get(k), "{method}: metrics.json `{k}`");
        }
    }
    assert_eq!(ja["resumed_from_epoch"], 0);
}

#[test]
fn dae_gcn_with_the_eraser_resumes_to_the_same_run() {
    resumed_equals_uninterrupted(&job("dae-gcn", "h_i_erase = true", "epochs = 3\npatience = 0"), 1);
}

#[test]
fn a_run_interrupted_after_its_last_epoch_resumes_straight_to_the_test() {
    // Early stopping ends training at epoch 2 or 3; cutting at the last
    // epoch leaves only the test evaluation to do.
    let cfg = job("dae-gcn", "", "epochs = 3\npatience = 1");
    let dir = tempfile::tempdir().unwrap();
    let straight = train(&cfg, &dir.path().join("straight"), &AtomicBool::new(false)).unwrap();
    resumed_equals_uninterrupted(&cfg, straight.epochs_run);
}

#[test]
fn early_stopping_counts_on_across_a_resume() {
    // Patience 2, cut one epoch after the best: the patience count is 1 at
    // the cut, and the resumed run must stop at the same epoch from the
    // restored best epoch and count.
    let cfg = job("dae-gcn", "", "epochs = 10\npatience = 2");
    let dir = tempfile::tempdir().unwrap();
    let straight = train(&cfg, &dir.path().join("straight"), &AtomicBool::new(false)).unwrap();
    let cut = straight.best_epoch + 1;
    assert!(
        straight.epochs_run < 10 && cut < straight.epochs_run,
        "no early stop to test: best {} of {}",
        straight.best_epoch,
        straight.epochs_run
    );
    resumed_equals_uninterrupted(&cfg, cut);
}

#[test]
fn guided_vae_resumes_with_its_three_optimisers_and_noise_stream() {
    resumed_equals_uninterrupted(&job("guided-vae", "", "epochs = 3\npatience = 0"), 2);
}

#[test]
fn icadx_and_li_resume_to_the_same_run() {
    resumed_equals_uninterrupted(&job("icadx", "", "epochs = 3\npatience = 0"), 1);
    resumed_equals_uninterrupted(&job("li-diagnet", "", "epochs = 3\npatience = 0"), 2);
}

fn out_has_checkpoint(dir: &Path) -> bool {
    dir.join(dae_runfolder::files::CHECKPOINT).exists()
}

#[test]
fn checkpoints_of_another_job_are_not_used_and_broken_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = job("dae-gcn", "", "epochs = 3\npatience = 0");
    let opts = TrainOptions { interrupt_after_epoch: Some(2), ..TrainOptions::from_env() };
    train_with(&cfg, &run, &AtomicBool::new(false), &opts).unwrap_err();

    // Another learning rate on the same folder: the checkpoint is ignored
    // and the run starts at epoch 1 (and ends like a fresh run of that job).
    let mut raw: dae_train::JobConfig = toml::from_str(cfg.canonical()).unwrap();
    raw.optim.lr = 0.001;
    let other = Job::new(raw).unwrap();
    assert!(out_has_checkpoint(&run));
    let m = train(&other, &run, &AtomicBool::new(false)).unwrap();
    assert_eq!((m.resumed_from_epoch, m.epochs_run), (0, 3));
    let fresh = train(&other, &dir.path().join("fresh"), &AtomicBool::new(false)).unwrap();
    assert_eq!((m.test_auc, m.val_auc), (fresh.test_auc, fresh.val_auc));

    // A damaged checkpoint: an error naming the file and the way out.
    let run = dir.path().join("damaged");
    train_with(&cfg, &run, &AtomicBool::new(false), &opts).unwrap_err();
    let ckpt = run.join(dae_runfolder::files::CHECKPOINT);
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let e = train(&cfg, &run, &AtomicBool::new(false)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("checkpoint.safetensors") && msg.contains("--fresh") && msg.contains("delete it"), "{msg}");
    assert_eq!(e.exit_code(), ExitCode::BadConfig);
    // --fresh removes the checkpoint at once (an interrupt before the first
    // epoch ends cannot bring it back), starts over, and ends like a run
    // that never stopped.
    let e = train_with(&cfg, &run, &AtomicBool::new(true), &TrainOptions { fresh: true, ..TrainOptions::from_env() }).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Interrupted);
    assert!(!ckpt.exists());
    let m = train_with(&cfg, &run, &AtomicBool::new(false), &TrainOptions { fresh: true, ..TrainOptions::from_env() }).unwrap();
    let straight = train(&cfg, &dir.path().join("straight"), &AtomicBool::new(false)).unwrap();
    assert_eq!(m.resumed_from_epoch, 0);
    assert_eq!((m.test_auc, m.val_auc, m.best_epoch), (straight.test_auc, straight.val_auc, straight.best_epoch));
}

/// Rewrites one field of a checkpoint's state (its safetensors metadata).
fn forge(ckpt: &Path, key: &str, value: serde_json::Value) {
    let bytes = std::fs::read(ckpt).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["dae_train_checkpoint"]).unwrap();
    state[key] = value;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    let meta = std::collections::HashMap::from([("dae_train_checkpoint".to_string(), state.to_string())]);
    safetensors::serialize_to_file(tensors.iter(), Some(meta), ckpt).unwrap();
}

#[test]
fn a_checkpoint_of_another_executable_or_other_data_is_set_aside() {
    let cfg = job("dae-gcn", "", "epochs = 3\npatience = 0");
    let opts = TrainOptions { interrupt_after_epoch: Some(1), ..TrainOptions::from_env() };
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("binary_sha256", serde_json::json!("0000")),
        ("data_fingerprint", serde_json::json!("other")),
        ("binary_sha256", serde_json::Value::Null),
    ] {
        let run = dir.path().join(format!("{key}-{value}"));
        train_with(&cfg, &run, &AtomicBool::new(false), &opts).unwrap_err();
        let ckpt = run.join(dae_runfolder::files::CHECKPOINT);
        forge(&ckpt, key, value.clone());
        let m = train(&cfg, &run, &AtomicBool::new(false)).unwrap();
        assert_eq!((m.resumed_from_epoch, m.epochs_run), (0, 3), "{key} = {value}: the checkpoint must not be used");
    }
    // The unforged control resumes.
    let run = dir.path().join("control");
    train_with(&cfg, &run, &AtomicBool::new(false), &opts).unwrap_err();
    let ckpt = run.join(dae_runfolder::files::CHECKPOINT);
    forge(&ckpt, "format", serde_json::json!(1));
    assert_eq!(train(&cfg, &run, &AtomicBool::new(false)).unwrap().resumed_from_epoch, 1);
}
