//! Hostile input: bounded mutation campaigns (`dae-mutate`) against the
//! trainer's parsers of a user's files: job TOML (the committed job files
//! as seeds) and the checkpoint (its safetensors header and metadata, then
//! its tensors). Never a panic, a hang, or an allocation out of proportion
//! to the file. And a full disk while the trainer writes its results.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use dae_mutate::Campaign;
use dae_train::{checkpoint, train_with, Job, TrainOptions};

use crate::common::tiny_job;

#[test]
fn job_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments/jobs");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    corpus.sort();
    assert!(corpus.len() >= 4);
    let stats = Campaign::new("job toml", corpus)
        .cases(3_000)
        .tokens(&[
            "[",
            "]",
            "=",
            "\"",
            "'",
            "#",
            "method",
            "\"dae-gcn\"",
            "\"li-diagnet\"",
            "epochs",
            "1e999",
            "nan",
            "-1",
            "9223372036854775808",
        ])
        .alloc_cap(|len| 256 * len + (4 << 20))
        .run(|b| {
            let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
            Job::parse(text).map_err(|e| e.to_string())
        });
    assert!(stats.accepted > 200 && stats.rejected > 1_000, "{stats:?}");
}

#[test]
fn checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = tiny_job("dae-gcn", "", "epochs = 2\npatience = 0");
    let opts = TrainOptions { interrupt_after_epoch: Some(1), ..TrainOptions::from_env() };
    train_with(&cfg, &run, &AtomicBool::new(false), &opts).unwrap_err();
    let file = run.join(dae_runfolder::files::CHECKPOINT);
    let good = std::fs::read(&file).unwrap();
    // The header (its 8-byte length, then JSON with the tensors' offsets and
    // the trainer's metadata) is what a mutation should reach: mutate it
    // and keep the tensor bytes as they were.
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let (head, tensors) = (good[..header_end].to_vec(), good[header_end..].to_vec());
    let load = |b: &[u8]| -> Result<(), String> {
        std::fs::write(&file, b).unwrap();
        match checkpoint::load(&file).map_err(|e| e.to_string())? {
            Some(c) => c.tensors(&Device::Cpu).map(drop).map_err(|e| e.to_string()),
            None => Err("the checkpoint vanished".into()),
        }
    };
    load(&good).unwrap();
    let names_it = |m: &str| if m.contains("checkpoint.safetensors") { Ok(()) } else { Err("does not name the file".to_string()) };
    let cap = |len: usize| 8 * len + (8 << 20);
    let headers = Campaign::new("checkpoint header", vec![head])
        .cases(1_500)
        .tokens(&["{", "}", "\"", ":", ",", "\"dtype\":\"F64\"", "\"shape\":[4294967296]", "\"data_offsets\":[0,18446744073709551615]"])
        .alloc_cap(move |len| cap(len + tensors.len()))
        .error_check(names_it)
        .run(|h| load(&[h, &good[header_end..]].concat()));
    let whole = Campaign::new("checkpoint file", vec![good.clone()]).cases(300).seed(9).alloc_cap(cap).error_check(names_it).run(load);
    assert!(headers.rejected > 1_000 && whole.accepted > 10, "{headers:?} {whole:?}");
}

/// A full disk while `dae-train` writes its results (`ulimit -f`, with
/// SIGXFSZ ignored as a full file system gives ENOSPC, not a signal): the
/// run ends with an error naming the file, exit 1, no completion marker,
/// and nothing written earlier is touched; run again with room, it
/// finishes as if nothing had happened.
#[test]
fn a_full_disk_ends_the_run_with_a_clear_error_and_loses_nothing() {
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_job("dae-gcn", "", "epochs = 2\npatience = 0");
    let config = dir.path().join("job.toml");
    std::fs::write(&config, cfg.canonical()).unwrap();
    let train = |out: &str, limit: Option<u64>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dae-train"));
        c.arg("--config").arg(&config).arg("--out").arg(dir.path().join(out));
        if let Some(bytes) = limit {
            dae_mutate::limit_file_size(&mut c, bytes);
        }
        c.output().unwrap()
    };
    let files = |out: &str| -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        std::fs::read_dir(dir.path().join(out)).unwrap().flatten().map(|e| (e.path(), std::fs::read(e.path()).unwrap())).collect()
    };
    let earlier = train("earlier", None);
    assert!(earlier.status.success(), "{}", String::from_utf8_lossy(&earlier.stderr));
    let before = files("earlier");

    // 8 kB per file: the scores, metrics and history fit, the model does not.
    let full = train("full", Some(8_000));
    let err = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{err}");
    assert!(err.contains("model.safetensors: cannot write") && err.contains("File too large"), "{err}");
    let run = dae_runfolder::RunFolder::at(dir.path().join("full"));
    assert!(!run.is_done() && run.incomplete().exists(), "no completion marker: the run counts as incomplete");
    assert!(!run.model().exists(), "no half-written model file");
    assert_eq!(files("earlier"), before, "an earlier run changed");

    // With room again, the same folder finishes like the earlier run.
    let again = train("full", None);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(run.scores()).unwrap(), before[&dae_runfolder::RunFolder::at(dir.path().join("earlier")).scores()]);
}
