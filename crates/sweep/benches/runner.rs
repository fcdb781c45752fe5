//! Runner benchmarks (`cargo bench -p dae-sweep`; build the trainer first
//! with `cargo build --release -p dae-train` for the planning figure):
//!
//! 1. planning a 10,000-job matrix (expand, resolve by `dae-train --resolve`,
//!    hash, status of each run folder), target under 1 s;
//! 2. runner overhead per job: launch to result recorded, with a no-op job
//!    (`sh` touching `done`), target under 50 ms;
//! 3. throughput of CPU-bound one-thread jobs with 2 local slots against 1,
//!    measured side by side in this run, target at least 1.8x on 2 cores.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use dae_runfolder::resolve::Resolved;
use dae_sweep::plan::{plan, RerunPolicy, Resolution, Resolver, TrainerResolver};
use dae_sweep::{run_local, Experiment, Launcher, LocalOptions};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

fn trainer() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let p = target.join("release").join("dae-train");
    p.exists().then_some(p)
}

/// A resolver that accepts any config as it is (the runner's own share of planning).
struct Identity;
impl Resolver for Identity {
    fn resolve(&self, configs: &[String]) -> Result<Resolution, dae_sweep::SweepError> {
        Ok(Resolution {
            code_version: "bench".into(),
            results: configs.iter().map(|c| Ok(Resolved { config: c.clone(), data: "bench".into(), gpu: None })).collect(),
        })
    }
}

fn bench_plan() {
    let values: Vec<String> = (1..=100).map(|i| format!("{:.4}", i as f64 / 101.0)).collect();
    let text = format!(
        "[experiment]\nname = \"bench\"\n\n[base]\ndataset = {{ kind = \"synthetic\", patients = 100, image_size = 32 }}\n\n[matrix]\nmodel.tau = [{}]\nmodel.p = [{}]\n",
        values.join(", "),
        values.join(", ")
    );
    let exp = Experiment::parse(Path::new("bench.toml"), &text).unwrap();
    let results = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let p = plan(&exp, None, &Identity, results.path(), RerunPolicy::default()).unwrap();
    let runner_only = t.elapsed().as_secs_f64();
    assert_eq!(p.jobs.len(), 10_000);
    println!("plan 10,000 jobs, runner only (expand + hash + status): {runner_only:.3} s");
    match trainer() {
        Some(tr) => {
            let resolver = TrainerResolver { program: tr.clone() };
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = Instant::now();
                let p = plan(&exp, None, &resolver, results.path(), RerunPolicy::default()).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                assert_eq!(p.jobs.len(), 10_000);
            }
            println!("plan 10,000 jobs with `{} --resolve`: best of 3 {best:.3} s (target < 1 s)", tr.display());
        }
        None => println!("plan with the real trainer: skipped (build it: cargo build --release -p dae-train)"),
    }
}

fn experiment(n: usize) -> Experiment {
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let text = format!("[experiment]\nname = \"b\"\n\n[matrix]\nvalue = [{}]\n", values.join(", "));
    Experiment::parse(Path::new("b.toml"), &text).unwrap()
}

/// Runs `n` jobs of `script` (sh; `$4` is the run folder) with `slots` slots; seconds.
fn run_jobs(n: usize, slots: usize, script: &str) -> f64 {
    let exp = experiment(n);
    let results = tempfile::tempdir().unwrap();
    let p = plan(&exp, None, &Identity, results.path(), RerunPolicy::default()).unwrap();
    let mut launcher = Launcher::new("/bin/sh");
    launcher.pre_args = vec!["-c".into(), script.into(), "job".into()];
    let opts = LocalOptions { cpu_slots: slots, ..LocalOptions::default() };
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let s = run_local(&p.jobs, results.path(), &p.code_version, &launcher, &opts, &stop, &mut |_| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(s.passed, n, "{s:?}");
    secs
}

/// The same jobs without the runner: `n` bare `sh` processes, `par` at a time (the machine's ceiling).
fn bare(n: usize, par: usize, script: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = par.min(left);
        let kids: Vec<_> = (0..k)
            .map(|i| {
                let d = dir.path().join(format!("{left}-{i}"));
                std::fs::create_dir_all(&d).unwrap();
                std::process::Command::new("/bin/sh").args(["-c", script, "job", "--config", "x", "--out"]).arg(&d).spawn().unwrap()
            })
            .collect();
        for mut c in kids {
            c.wait().unwrap();
        }
        left -= k;
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    bench_plan();

    let noop = "touch \"$4/done\"";
    let n = 200;
    let secs = (0..3).map(|_| run_jobs(n, 1, noop)).fold(f64::INFINITY, f64::min);
    println!("runner overhead per no-op job (1 slot, {n} jobs, best of 3): {:.1} ms (target < 50 ms)", secs / n as f64 * 1e3);

    // About 1.4 s of one core each.
    let busy = "i=0; while [ $i -lt 600000 ]; do i=$((i+1)); done; touch \"$4/done\"";
    for round in 0..2 {
        let one = run_jobs(12, 1, busy);
        let two = run_jobs(12, 2, busy);
        let (b1, b2) = (bare(12, 1, busy), bare(12, 2, busy));
        println!(
            "12 CPU-bound jobs: 1 slot {one:.2} s, 2 slots {two:.2} s: throughput ratio {:.2}x (target >= 1.8x); \
             the same jobs without the runner, 2 at a time vs 1: {:.2}x [round {}]",
            one / two,
            b1 / b2,
            round + 1
        );
    }
}
