//! A stand-in for `dae-train` in the runner's tests: the same command line
//! (`--resolve`, `--config C --out D`), exit codes and run-folder markers,
//! with behaviour set by config keys: `sleep` (seconds), `fail` (exit 3),
//! `diverge` (exit 4),
//! `crash` (abort), `value` (written as `test_auc`). Every start and finish
//! is appended to the file `$FAKE_LEDGER` (`start <id> <pid> <gpus>`,
//! `done <id>`). `$FAKE_VERSION` is its code version.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: &[&str] = &["seed", "device", "sleep", "fail", "diverge", "crash", "value", "model"];
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--resolve") {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).unwrap();
        let texts: Vec<String> = serde_json::from_str(&input).unwrap();
        let results: Vec<serde_json::Value> = texts
            .iter()
            .map(|t| {
                let mut table: toml::Table = match toml::from_str(t) {
                    Ok(x) => x,
                    Err(e) => return serde_json::json!({ "error": e.to_string() }),
                };
                if let Err(e) = check(&table) {
                    return serde_json::json!({ "error": e });
                }
                table.entry("device").or_insert_with(|| "cpu".into());
                serde_json::json!({ "ok": { "config": toml::to_string(&table).unwrap(), "data": "fake-data" } })
            })
            .collect();
        println!("{}", serde_json::json!({ "code_version": version(), "results": results }));
        return;
    }
    let (config, out) = (&args[2], std::path::PathBuf::from(&args[4]));
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let id = std::env::var("DAE_JOB_ID").unwrap_or_default();
    ledger(&format!("start {id} {} {}", std::process::id(), std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "-".into())));
    if out.join("done").exists() {
        eprintln!("error: {}: already holds a finished run", out.display());
        std::process::exit(2);
    }
    std::fs::write(out.join("incomplete"), b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop)).unwrap();
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop)).unwrap();
    let secs = cfg.get("sleep").and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))).unwrap_or(0.0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        if stop.load(Ordering::SeqCst) {
            eprintln!("interrupted");
            std::process::exit(5);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if cfg.get("crash").and_then(|v| v.as_bool()) == Some(true) {
        std::process::abort();
    }
    if cfg.get("diverge").and_then(|v| v.as_bool()) == Some(true) {
        eprintln!("error: training diverged (as the config asks)");
        std::process::exit(4);
    }
    if cfg.get("fail").and_then(|v| v.as_bool()) == Some(true) {
        eprintln!("error: failing as the config asks");
        std::process::exit(3);
    }
    let value = cfg.get("value").and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64))).unwrap_or(0.5);
    std::fs::write(out.join("metrics.json"), serde_json::json!({ "test_auc": value, "code_version": version() }).to_string()).unwrap();
    std::fs::remove_file(out.join("incomplete")).unwrap();
    std::fs::write(out.join("done"), b"").unwrap();
    ledger(&format!("done {id}"));
    println!("done");
}
