//! A stand-in for `dae-train` in the runner's tests: the same command line
//! (`--resolve`, `--config C --out D`), and the same run-folder contract
//! (`dae-runfolder`: file names, exit codes, records, resolve wire types),
//! with behaviour set by config keys: `sleep` (seconds), `fail` (exit 3),
//! `diverge` (exit 4), `gate` (a path: waits until that file exists),
//! `crash` (abort), `value` (written as `test_auc`), `artefact` (bytes of a
//! `model.safetensors` to write, as dae-train does: a failed write is an
//! error naming the file, exit 1, and no completion marker). Every start and finish
//! is appended to the file `$FAKE_LEDGER` (`start <id> <pid> <gpus>`,
//! `done <id>`). `$FAKE_VERSION` is its code version.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dae_runfolder::resolve::{Answer, Refusal, Resolved, Response};
use dae_runfolder::{ExitCode, Metrics, RunFolder};

const KEYS: &[&str] = &["seed", "device", "sleep", "fail", "diverge", "crash", "value", "model", "artefact", "gate"];
const MODEL_KEYS: &[&str] = &["tau", "p"];

fn version() -> String {
    std::env::var("FAKE_VERSION").unwrap_or_else(|_| "fake-1".into())
}

fn check(t: &toml::Table) -> Result<(), String> {
    for k in t.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(format!("unknown field `{k}`, expected one of {}", KEYS.join(", ")));
        }
    }
    if let Some(m) = t.get("model").and_then(|m| m.as_table()) {
        for k in m.keys() {
            if !MODEL_KEYS.contains(&k.as_str()) {
                return Err(format!("unknown field `{k}`, expected one of {}", MODEL_KEYS.join(", ")));
            }
        }
        if let Some(tau) = m.get("tau").and_then(|v| v.as_float()) {
            if !(tau > 0.0 && tau < 1.0) {
                return Err(format!("model.tau: {tau} must be in (0, 1)"));
            }
        }
    }
    Ok(())
}

fn ledger(line: &str) {
    if let Ok(p) = std::env::var("FAKE_LEDGER") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(p).expect("ledger");
        f.write_all(format!("{line}\n").as_bytes()).expect("ledger write");
    }
}

fn resolve() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let texts: Vec<String> = serde_json::from_str(&input).unwrap();
    let refuse = |message: String| Answer::Error(Refusal { key: None, message });
    let results = texts
        .iter()
        .map(|t| {
            let mut table: toml::Table = match toml::from_str(t) {
                Ok(x) => x,
                Err(e) => return refuse(e.to_string()),
            };
            if let Err(e) = check(&table) {
                return refuse(e);
            }
            let device = table.entry("device").or_insert_with(|| "cpu".into()).as_str().unwrap_or("cpu").to_string();
            let gpu = device.strip_prefix("cuda").map(|n| n.trim_start_matches(':').parse().unwrap_or(0));
            Answer::Ok(Resolved { config: toml::to_string(&table).unwrap(), data: "fake-data".into(), gpu })
        })
        .collect();
    println!("{}", serde_json::to_string(&Response { code_version: version(), results }).unwrap());
}

fn metrics(value: f64) -> Metrics {
    Metrics {
        test_auc: value,
        method: "fake".into(),
        val_auc: value,
        test_auc_ci95: [0.0, 1.0],
        attr_acc: Default::default(),
        probe_auc: Default::default(),
        probe_auc_test_cv: Default::default(),
        probe_auc_test_cv_rbf: Default::default(),
        best_epoch: 1,
        epochs_run: 1,
        resumed_from_epoch: 0,
        wall_seconds: 0.0,
        train_samples_per_second: 0.0,
        peak_memory_mb: 0.0,
        device: "cpu".into(),
        code_version: version(),
        status: "done".into(),
        n_train: 0,
        n_val: 0,
        n_test: 0,
        data_fingerprint: "fake-data".into(),
        graph: None,
        skipped: Default::default(),
        machine: Default::default(),
    }
}

fn exit(code: ExitCode) -> ! {
    std::process::exit(code.code() as i32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--resolve") {
        return resolve();
    }
    let (config, run) = (&args[2], RunFolder::at(&args[4]));
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let id = run.id();
    ledger(&format!("start {id} {} {}", std::process::id(), std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "-".into())));
    if run.is_done() {
        eprintln!("error: {}: already holds a finished run", run.path.display());
        exit(ExitCode::BadConfig);
    }
    std::fs::write(run.incomplete(), b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop)).unwrap();
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop)).unwrap();
    let secs = cfg.get("sleep").and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))).unwrap_or(0.0);
    let gate = cfg.get("gate").and_then(|v| v.as_str()).map(std::path::PathBuf::from);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs_f64(secs) || gate.as_ref().is_some_and(|g| !g.exists()) {
        if stop.load(Ordering::SeqCst) {
            eprintln!("interrupted");
            exit(ExitCode::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if cfg.get("crash").and_then(|v| v.as_bool()) == Some(true) {
        std::process::abort();
    }
    if cfg.get("diverge").and_then(|v| v.as_bool()) == Some(true) {
        eprintln!("error: training diverged (as the config asks)");
        exit(ExitCode::Diverged);
    }
    if cfg.get("fail").and_then(|v| v.as_bool()) == Some(true) {
        eprintln!("error: failing as the config asks");
        exit(ExitCode::DataError);
    }
    let value = cfg.get("value").and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))).unwrap_or(0.5);
    let bytes = cfg.get("artefact").and_then(|v| v.as_integer()).unwrap_or(0) as usize;
    let writes = [(run.model(), vec![7u8; bytes]), (run.metrics(), serde_json::to_vec(&metrics(value)).unwrap())];
    for (path, data) in writes.iter().filter(|(_, d)| !d.is_empty()) {
        if let Err(e) = dae_runfolder::write_atomic(path, data) {
            eprintln!("error: {}: cannot write: {e}", path.display());
            exit(ExitCode::Other);
        }
    }
    std::fs::remove_file(run.incomplete()).unwrap();
    let sealed = dae_runfolder::DoneRecord::seal(&run, &version()).unwrap();
    std::fs::write(run.done(), serde_json::to_string(&sealed).unwrap()).unwrap();
    ledger(&format!("done {id}"));
    println!("done");
}
