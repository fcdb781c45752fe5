//! The runner end to end: the `dae-sweep` binary with a fake trainer
//! (`examples/fake_trainer.rs`, same command line and markers as dae-train).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sweep_bin() -> &'static str {
    env!("CARGO_BIN_EXE_dae-sweep")
}

/// `cargo test` builds the examples next to the test binaries.
fn fake_trainer() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join("fake_trainer");
    assert!(p.exists(), "{} missing: run through `cargo test`, which builds the examples", p.display());
    p
}

struct Study {
    dir: tempfile::TempDir,
}

impl Study {
    fn new(experiment: &str) -> Study {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exp.toml"), experiment).unwrap();
        Study { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sweep_bin());
        c.current_dir(self.dir.path()).args(args).arg("exp.toml").arg("--trainer").arg(fake_trainer());
        c.env("FAKE_LEDGER", self.path("ledger.txt")).env_remove("CUDA_VISIBLE_DEVICES");
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn plan(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["plan", "--json"];
        args.extend(extra);
        let o = self.run(&args);
        assert!(o.status.success(), "plan failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
    fn ledger(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("ledger.txt"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut it = l.split_whitespace();
                (it.next().unwrap().to_string(), it.next().unwrap_or("").to_string())
            })
            .collect()
    }
    /// The id of the one job the plan lists as failed.
    fn the_failed_job(&self) -> String {
        let plan = self.plan(&[]);
        let failed: Vec<_> = plan.iter().filter(|j| j["status"] == "failed").collect();
        assert_eq!(failed.len(), 1, "{plan:?}");
        failed[0]["id"].as_str().unwrap().to_string()
    }
    /// How often the trainer was started on job `id`.
    fn starts_of(&self, id: &str) -> usize {
        self.ledger().iter().filter(|(w, i)| w == "start" && i == id).count()
    }
    fn done_ids(&self) -> BTreeSet<String> {
        let runs = self.path("results/runs");
        std::fs::read_dir(runs)
            .map(|d| d.flatten().filter(|e| e.path().join("done").exists()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn matrix(n: usize, sleep: f64) -> String {
    let values: Vec<String> = (1..=n).map(|v| v.to_string()).collect();
    format!("[experiment]\nname = \"t\"\nseeds = [0]\n\n[base]\nsleep = {sleep}\n\n[matrix]\nvalue = [{}]\n", values.join(", "))
}

#[test]
fn run_skips_done_jobs_and_stale_runs_are_reused_unless_asked() {
    let s = Study::new(&matrix(3, 0.0).replace("seeds = [0]", "seeds = [0, 1]"));
    let plan = s.plan(&[]);
    assert_eq!(plan.len(), 6);
    assert!(plan.iter().all(|j| j["status"] == "pending" && j["id"].as_str().unwrap().len() == 64));
    assert_eq!(plan[0]["params"]["value"], 1);
    let o = s.run(&["run", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.ledger().iter().filter(|(w, _)| w == "start").count(), 6);
    assert!(s.plan(&[]).iter().all(|j| j["status"] == "done"));
    // Every run folder has the config it ran, its log and exit record.
    let id = plan[0]["id"].as_str().unwrap();
    for f in ["job.toml", "log.txt", "exit.json", "done"] {
        assert!(s.path(&format!("results/runs/{id}/{f}")).exists(), "{f}");
    }
    // Again: nothing runs.
    let o = s.run(&["run", "--jobs", "2"]);
    assert!(o.status.success());
    assert_eq!(s.ledger().len(), 12, "a second run started jobs: {}", text(&o));
    // Another code version: stale, reused by default, redone on request with the old run archived.
    let stale = s.cmd(&["plan", "--json"]).env("FAKE_VERSION", "fake-2").output().unwrap();
    assert!(String::from_utf8_lossy(&stale.stdout).lines().all(|l| l.contains("\"status\":\"stale\"")));
    let o = s.cmd(&["run"]).env("FAKE_VERSION", "fake-2").output().unwrap();
    assert!(o.status.success());
    assert_eq!(s.ledger().len(), 12);
    let o = s.cmd(&["run", "--rerun-stale", "--jobs", "2"]).env("FAKE_VERSION", "fake-2").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.ledger().len(), 24);
    let archived = std::fs::read_dir(s.path("results/archive")).unwrap().count();
    assert_eq!(archived, 6, "finished runs must be archived, not lost");
}

#[test]
fn damaged_runs_are_named_archived_and_redone_and_only_they() {
    let s = Study::new(&matrix(4, 0.0));
    let o = s.run(&["run", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let ids: Vec<String> = s.plan(&[]).iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    let metrics = s.path(&format!("results/runs/{}/metrics.json", ids[0]));
    let cut = std::fs::read(&metrics).unwrap()[..20].to_vec();
    std::fs::write(&metrics, cut).unwrap();
    // Same size, other bytes: only --verify's hash finds it.
    let other = s.path(&format!("results/runs/{}/metrics.json", ids[2]));
    let mut bytes = std::fs::read(&other).unwrap();
    let last = bytes.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(&other, bytes).unwrap();
    let plan = s.plan(&[]);
    let words: Vec<&str> = plan.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(words, ["damaged", "done", "done", "done"]);
    assert!(plan[0]["reason"].as_str().unwrap().contains("metrics.json: 20 bytes, sealed with"), "{}", plan[0]);
    let verified: Vec<String> = s.plan(&["--verify"]).iter().map(|j| j["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(verified, ["damaged", "done", "damaged", "done"]);
    let status = s.run(&["status", "--verify"]);
    let out = text(&status);
    assert!(out.contains("2 damaged") && out.contains(&format!("damaged {}", &ids[2][..12])), "{out}");
    // run --verify redoes exactly those two; the damaged runs are archived, not lost.
    let before = s.ledger().len();
    let o = s.run(&["run", "--verify", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let redone: Vec<String> = s.ledger()[before..].iter().filter(|(w, _)| w == "start").map(|(_, id)| id.clone()).collect();
    assert_eq!(redone.len(), 2, "{redone:?}");
    assert!(redone.iter().all(|id| *id == ids[0] || *id == ids[2]), "{redone:?}");
    assert_eq!(std::fs::read_dir(s.path("results/archive")).unwrap().count(), 2);
    assert!(s.plan(&["--verify"]).iter().all(|j| j["status"] == "done"));
}

#[test]
fn only_selects_jobs_by_seed_or_config_key_and_force_reruns_just_those() {
    let s = Study::new(&matrix(3, 0.0).replace("seeds = [0]", "seeds = [0, 1]"));
    assert_eq!(s.plan(&["--only", "value=2"]).len(), 2);
    // Values of one key are alternatives; keys combine.
    let picked = s.plan(&["--only", "value=2", "--only", "value=3", "--only", "seed=1"]);
    assert_eq!(picked.len(), 2);
    assert!(picked.iter().all(|j| j["params"]["seed"] == 1 && j["params"]["value"] != 1));
    let starts = |s: &Study| s.ledger().iter().filter(|(w, _)| w == "start").count();
    let o = s.run(&["run", "--only", "seed=0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(starts(&s), 3);
    let plan = s.plan(&[]);
    assert_eq!(plan.iter().filter(|j| j["status"] == "done").count(), 3);
    assert!(plan.iter().filter(|j| j["status"] == "done").all(|j| j["params"]["seed"] == 0));
    // --force with --only redoes the one selected job and archives its old run.
    let o = s.run(&["run", "--force", "--only", "value=1", "--only", "seed=0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(starts(&s), 4);
    assert_eq!(std::fs::read_dir(s.path("results/archive")).unwrap().count(), 1);
    // A key no job has, a value no job takes, no `=`: errors that say what is valid.
    let o = s.run(&["plan", "--only", "valeu=1"]);
    assert!(!o.status.success() && text(&o).contains("valeu") && text(&o).contains("variant, seed"), "{}", text(&o));
    let o = s.run(&["plan", "--only", "value=7"]);
    assert!(!o.status.success() && text(&o).contains("matches none") && text(&o).contains("1, 2, 3"), "{}", text(&o));
    let o = s.run(&["run", "--only", "value"]);
    assert!(!o.status.success() && text(&o).contains("KEY=VALUE"), "{}", text(&o));
    assert_eq!(starts(&s), 4);
}

#[test]
fn failures_are_reported_with_their_log_retried_and_rerun_only_on_request() {
    let exp = format!("{}\n[[include]]\nvalue = 99\nfail = true\n", matrix(2, 0.0));
    let s = Study::new(&exp);
    let o = s.run(&["run", "--retries", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("FAIL") && out.contains("exit 3") && out.contains("log.txt"), "{out}");
    assert!(out.contains("retry"), "{out}");
    let id = s.the_failed_job();
    // 1 attempt + 2 retries.
    assert_eq!(s.starts_of(&id), 3);
    let log = std::fs::read_to_string(s.path(&format!("results/runs/{id}/log.txt"))).unwrap();
    assert_eq!(log.matches("failing as the config asks").count(), 3, "every attempt's output is kept: {log}");
    // Not rerun by default; rerun with --rerun-failed.
    let o = s.run(&["run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(s.ledger().iter().filter(|(w, _)| w == "start").count(), 5);
    let o = s.run(&["run", "--rerun-failed"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(s.ledger().iter().filter(|(w, _)| w == "start").count(), 6);
}

#[test]
fn a_diverged_job_is_not_retried() {
    // The trainer repeats a divergence exactly (same seed, same data): retries would only burn time.
    let exp = format!("{}\n[[include]]\nvalue = 98\ndiverge = true\n", matrix(1, 0.0));
    let s = Study::new(&exp);
    let o = s.run(&["run", "--retries", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("exit 4"), "{}", text(&o));
    let id = s.the_failed_job();
    assert_eq!(s.starts_of(&id), 1, "one attempt, no retries");
}

#[test]
fn a_runner_killed_with_sigkill_resumes_to_the_same_finished_set_without_rerunning_finished_jobs() {
    let exp = matrix(8, 0.4);
    // The uninterrupted reference.
    let reference = Study::new(&exp);
    let o = reference.run(&["run", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let want = reference.done_ids();
    assert_eq!(want.len(), 8);

    let s = Study::new(&exp);
    let mut child = s.cmd(&["run", "--jobs", "2"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while s.ledger().iter().filter(|(w, _)| w == "done").count() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "runner made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = s.ledger();
    let finished_before: BTreeSet<String> = before.iter().filter(|(w, _)| w == "done").map(|(_, i)| i.clone()).collect();
    assert!(finished_before.len() >= 3 && finished_before.len() < 8, "kill came too late: {}", finished_before.len());

    let o = s.run(&["run", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.done_ids(), want, "the resumed sweep must end with the uninterrupted sweep's runs");
    let after = &s.ledger()[before.len()..];
    for (w, id) in after {
        assert!(!(w == "start" && finished_before.contains(id)), "job {id} started again after it had finished");
    }
    let all = s.ledger();
    let done_count: BTreeMap<&str, usize> = all.iter().filter(|(w, _)| w == "done").fold(BTreeMap::new(), |mut m, (_, i)| {
        *m.entry(i.as_str()).or_default() += 1;
        m
    });
    assert!(done_count.values().all(|&n| n == 1), "a job finished twice: {done_count:?}");
}

#[test]
fn two_runners_on_one_results_folder_split_the_work() {
    let s = Study::new(&matrix(10, 0.15));
    let a = s.cmd(&["run", "--jobs", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let b = s.cmd(&["run", "--jobs", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    let starts: Vec<String> = s.ledger().into_iter().filter(|(w, _)| w == "start").map(|(_, i)| i).collect();
    let unique: BTreeSet<&String> = starts.iter().collect();
    assert_eq!(starts.len(), 10, "a job ran twice: {starts:?}");
    assert_eq!(unique.len(), 10);
    assert_eq!(s.done_ids().len(), 10);
}

#[test]
fn gpu_jobs_get_their_own_device_list() {
    let exp = matrix(4, 0.2).replace("sleep = 0.2", "sleep = 0.2\ndevice = \"cuda\"");
    let s = Study::new(&exp);
    let o = s.run(&["run", "--gpus", "3,5", "--jobs-per-gpu", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let ledger = std::fs::read_to_string(s.path("ledger.txt")).unwrap();
    let gpus: Vec<&str> = ledger.lines().filter(|l| l.starts_with("start")).map(|l| l.split_whitespace().nth(3).unwrap()).collect();
    assert_eq!(gpus.len(), 4);
    assert!(gpus.iter().all(|g| *g == "3" || *g == "5"), "{gpus:?}");
    assert!(gpus.contains(&"3") && gpus.contains(&"5"), "both GPUs used: {gpus:?}");
    // Without GPUs, a cuda job is refused before anything starts.
    let s2 = Study::new(&exp);
    let o = s2.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--gpus"), "{}", text(&o));
}

#[test]
fn unknown_axis_keys_and_bad_values_name_the_file_line_and_valid_keys() {
    let exp = "[experiment]\nname = \"t\"\n\n[base]\nmodel.tau = 0.5\n\n[matrix]\nmodel.tua = [0.1, 0.2]\n";
    let s = Study::new(exp);
    let o = s.run(&["plan"]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o);
    assert!(e.contains("exp.toml:8:") && e.contains("model.tua") && e.contains("valid keys under `model`: tau"), "{e}");
    let exp = "[experiment]\nname = \"t\"\n\n[matrix]\nmodel.tau = [0.5, 1.5]\n";
    let s = Study::new(exp);
    let e = text(&s.run(&["plan"]));
    assert!(e.contains("exp.toml:5:") && e.contains("model.tau=1.5") && e.contains("(0, 1)"), "{e}");
    let s = Study::new("[experiment]\nname = \"t\"\n");
    let e = text(&s.run(&["plan", "--profile", "quick"]));
    assert!(e.contains("no profile `quick`"), "{e}");
}

#[test]
fn overrides_make_new_jobs_leave_earlier_runs_reusable_and_name_bad_keys() {
    let s = Study::new(&matrix(2, 0.0).replace("[base]\n", "[base]\nmodel.tau = 0.5\n"));
    assert!(s.run(&["run"]).status.success());
    let plain: BTreeSet<String> = s.plan(&[]).iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    // --set changes every job's config: new ids, and --seeds replaces the seeds.
    let set = s.plan(&["--set", "model.tau=0.3", "--seeds", "0-2"]);
    assert_eq!(set.len(), 6);
    assert!(set.iter().all(|j| j["status"] == "pending" && !plain.contains(j["id"].as_str().unwrap())), "{set:?}");
    let seeds: BTreeSet<u64> = set.iter().map(|j| j["params"]["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, BTreeSet::from([0, 1, 2]));
    // The same overrides give the same ids; an axis key's values are replaced.
    assert_eq!(s.plan(&["--seeds", "0,1,2", "--set", "model.tau=0.3"]), set);
    let axis = s.plan(&["--set", "value=[5, 6, 7]"]);
    let values: Vec<i64> = axis.iter().map(|j| j["params"]["value"].as_i64().unwrap()).collect();
    assert_eq!(values, vec![5, 6, 7]);
    let o = s.run(&["run", "--set", "model.tau=0.3", "--seeds", "0-2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.ledger().iter().filter(|(w, _)| w == "start").count(), 2 + 6);
    // The plain plan is still done: the overridden run did not replace it.
    assert!(s.plan(&[]).iter().all(|j| j["status"] == "done"));
    // A bad key or value names `--set KEY` and what is valid, like a file does.
    let e = text(&s.run(&["plan", "--set", "model.tua=0.2"]));
    assert!(e.contains("--set model.tua") && e.contains("tua") && e.contains("tau") && !e.contains("[base]"), "{e}");
    let e = text(&s.run(&["plan", "--set", "model.tau=1.5"]));
    assert!(e.contains("--set model.tau") && e.contains("(0, 1)"), "{e}");
    let o = s.run(&["plan", "--seeds", "4-2"]);
    assert!(o.status.code() == Some(2) && text(&o).contains("runs backwards"), "{}", text(&o));
    let o = s.run(&["plan", "--set", "model.tau"]);
    assert!(o.status.code() == Some(2) && text(&o).contains("KEY=VALUE"), "{}", text(&o));
}

/// Whether a Slurm cluster answers (`tools/slurm/cluster.sh start`; `.ci/run`
/// starts one); says the test is skipped where none does.
fn slurm_reachable() -> bool {
    let ok = Command::new("sinfo").args(["-h", "-o", "%T"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("skipped: no reachable Slurm cluster (sinfo failed or is not installed; start one with tools/slurm/cluster.sh start and export SLURM_CONF)");
    }
    ok
}

/// The Slurm backend against a real cluster (`tools/slurm/cluster.sh start`;
/// `.ci/run` starts one). Skipped, saying why, where none is reachable.
#[test]
fn slurm_arrays_run_a_matrix_and_report_a_failing_task() {
    if !slurm_reachable() {
        return;
    }
    let max = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()
        .and_then(|o| dae_sweep::slurm::parse_max_array_size(&String::from_utf8_lossy(&o.stdout)))
        .unwrap();
    let exp = format!("{}\n[[include]]\nvalue = 99\nfail = true\n\n[slurm]\npoll_seconds = 0.3\nmax_parallel = 4\n", matrix(6, 0.1));
    let s = Study::new(&exp);
    let o = s.run(&["run", "--backend", "slurm"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL"), "{}", text(&o));
    assert_eq!(s.done_ids().len(), 6);
    let plan = s.plan(&[]);
    assert_eq!(plan.iter().filter(|j| j["status"] == "failed").count(), 1);
    let sub = std::fs::read_dir(s.path("results/slurm")).unwrap().next().unwrap().unwrap().path();
    let arrays =
        std::fs::read_dir(&sub).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("array-")).count();
    assert_eq!(arrays, 7usize.div_ceil(max), "7 tasks with MaxArraySize {max}");
    // Rerun: nothing left to submit but the failed job, which is skipped.
    let o = s.run(&["run", "--backend", "slurm"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `--detach` submits and exits; `status` shows the tasks on Slurm; a later
/// `run` follows them (it submits nothing twice), resubmits the failed one
/// with the detached run's `--retries`, and settles: a third run does nothing.
#[test]
fn slurm_detach_submits_and_exits_and_a_later_run_follows_and_retries() {
    if !slurm_reachable() {
        return;
    }
    let gate = tempfile::tempdir().unwrap();
    let open = gate.path().join("open");
    let exp = format!(
        "[experiment]\nname = \"t\"\nseeds = [0]\n\n[base]\ngate = \"{}\"\n\n[matrix]\nvalue = [1, 2, 3]\n\n\
         [[include]]\nvalue = 99\nfail = true\n\n[slurm]\npoll_seconds = 0.3\n",
        open.display()
    );
    let s = Study::new(&exp);
    let o = s.run(&["run", "--backend", "slurm", "--detach", "--retries", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 left on Slurm (detached)"), "{}", text(&o));
    assert!(s.done_ids().is_empty(), "the gate is closed: nothing can have finished");
    let st = text(&s.run(&["status"]));
    assert_eq!(st.matches("detached): PENDING").count() + st.matches("detached): RUNNING").count(), 4, "{st}");
    // A second detached run submits nothing new: every job is on Slurm.
    let o = s.run(&["run", "--backend", "slurm", "--detach"]);
    assert!(o.status.success() && text(&o).contains("4 left on Slurm"), "{}", text(&o));
    std::fs::write(&open, b"").unwrap();
    let o = s.run(&["run", "--backend", "slurm"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("3 passed, 1 failed") && text(&o).contains("1 retries"), "{}", text(&o));
    let id = s.the_failed_job();
    assert_eq!(s.starts_of(&id), 2, "one attempt by the detached run, its retry by the follower");
    for done in s.done_ids() {
        assert_eq!(s.starts_of(&done), 1, "{done} was submitted twice");
    }
    assert_eq!(s.done_ids().len(), 3);
    let o = s.run(&["run", "--backend", "slurm"]);
    assert!(o.status.success() && text(&o).contains("0 passed, 0 failed"), "{}", text(&o));
    assert_eq!(s.starts_of(&id), 2);
}

#[test]
fn slurm_dry_run_prints_the_script_and_submits_nothing() {
    let s = Study::new(&format!("{}\n[slurm]\npartition = \"gpu\"\ntime = \"01:00:00\"\nmax_array_size = 2\n", matrix(3, 0.0)));
    let o = s.run(&["run", "--backend", "slurm", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("#!/bin/bash").count(), 2, "3 jobs in arrays of at most 2: {out}");
    assert!(out.contains("#SBATCH --partition=gpu") && out.contains("#SBATCH --array=0-1") && out.contains("#SBATCH --array=0-0"));
    assert!(!s.path("results/slurm").exists() && !Path::new(&s.path("results/runs")).exists());
}

#[test]
fn sigterm_stops_the_jobs_cleanly_and_leaves_them_incomplete() {
    let s = Study::new(&matrix(2, 30.0));
    let mut child = s.cmd(&["run", "--jobs", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while s.ledger().iter().filter(|(w, _)| w == "start").count() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "jobs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let t1 = Instant::now();
    let status = child.wait().unwrap();
    assert!(t1.elapsed() < Duration::from_secs(10), "the runner took {:?} to stop", t1.elapsed());
    assert_eq!(status.code(), Some(130));
    let plan = s.plan(&[]);
    assert!(!plan.is_empty() && plan.iter().all(|j| j["status"] == "incomplete"), "{plan:?}");
    for j in &plan {
        let dir = s.path(&format!("results/runs/{}", j["id"].as_str().unwrap()));
        assert!(dir.join("incomplete").exists() && !dir.join("done").exists());
    }
    assert!(plan.iter().all(|j| j["action"] == "run"), "incomplete runs start again next time");
    // ... resuming in place, unless --force starts them over (archiving the partial run).
    assert!(plan.iter().all(|j| j["reason"].as_str().unwrap().contains("resuming")), "{plan:?}");
    // The epoch of the trainer's progress record (with its checkpoint there) shows in the reason.
    let id = plan[0]["id"].clone();
    let run = dae_runfolder::RunFolder::at(s.path(&format!("results/runs/{}", id.as_str().unwrap())));
    let record = dae_runfolder::ProgressRecord {
        epoch: 4,
        epochs: 10,
        training_done: false,
        loss: 0.5,
        val_auc: 0.6,
        best_auc: 0.6,
        best_epoch: 4,
        epoch_seconds: 1.0,
        checkpoint: true,
        code_version: "fake-1".into(),
        updated_unix: 0,
    };
    std::fs::write(run.progress(), serde_json::to_string(&record).unwrap()).unwrap();
    std::fs::write(run.checkpoint(), b"a checkpoint").unwrap();
    let plan = s.plan(&[]);
    let reason = |id: &serde_json::Value| plan.iter().find(|j| j["id"] == *id).unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason(&id).contains("after epoch 4"), "{plan:?}");
    // A damaged record: no epoch, no panic.
    std::fs::write(run.progress(), b"{\"epoch\": 4").unwrap();
    assert!(s.plan(&[]).iter().all(|j| j["reason"].as_str().unwrap().contains("resuming")));
    let forced = s.plan(&["--force"]);
    assert!(forced.iter().all(|j| j["reason"].as_str().unwrap().contains("from the start because of --force")), "{forced:?}");
}

#[test]
fn a_full_disk_fails_the_job_that_hits_it_keeps_earlier_results_and_the_runner_goes_on() {
    let s = Study::new(&format!("{}\n[[include]]\nvalue = 2\nartefact = 200000\n", matrix(3, 0.0)));
    // Earlier results: value 1, finished before the disk filled up.
    let o = s.run(&["run", "--only", "value=1"]);
    assert!(o.status.success(), "{}", text(&o));
    let earlier = s.done_ids();
    assert_eq!(earlier.len(), 1);
    let snapshot = |ids: &BTreeSet<String>| -> BTreeMap<PathBuf, Vec<u8>> {
        ids.iter()
            .flat_map(|id| std::fs::read_dir(s.path(&format!("results/runs/{id}"))).unwrap().flatten())
            .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
            .collect()
    };
    let before = snapshot(&earlier);

    // Files up to 100 kB fit; the 200 kB model file of the included job does not.
    let mut c = s.cmd(&["run", "--jobs", "1"]);
    dae_mutate::limit_file_size(&mut c, 100_000);
    let o = c.output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let failed = s.the_failed_job();
    let log = std::fs::read_to_string(s.path(&format!("results/runs/{failed}/{}", dae_runfolder::files::LOG))).unwrap();
    assert!(log.contains("model.safetensors: cannot write") && log.contains("File too large"), "{log}");
    assert!(!s.path(&format!("results/runs/{failed}/done")).exists(), "no completion marker");
    assert!(!s.path(&format!("results/runs/{failed}/model.safetensors")).exists(), "no half-written file");
    // The runner went on: values 2 and 3 finished; value 1 was not rerun.
    assert_eq!(s.done_ids().len(), 3, "{out}");
    assert_eq!(s.starts_of(earlier.iter().next().unwrap()), 1);
    assert_eq!(snapshot(&earlier), before, "earlier results changed");
    // The failure is listed again, with its log, when the run ends.
    let recap = out.split("failed jobs (1), with their logs:").nth(1).unwrap_or_else(|| panic!("no recap: {out}"));
    assert!(recap.contains(&failed[..8]) && recap.contains(dae_runfolder::files::LOG), "{out}");
}

/// A local runner and a Slurm runner started together on one results
/// folder (the CI's real single-node cluster): the run folders' locks keep
/// every job to one start, and both runners end content. Skipped, saying
/// why, where no cluster is reachable.
#[test]
fn a_local_and_a_slurm_runner_on_one_results_folder_never_run_a_job_twice() {
    if !slurm_reachable() {
        return;
    }
    let s = Study::new(&format!("{}\n[slurm]\npoll_seconds = 0.3\nmax_parallel = 2\n", matrix(8, 0.4)));
    let slurm = s.cmd(&["run", "--backend", "slurm"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let local = s.cmd(&["run", "--jobs", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (slurm, local) = (slurm.wait_with_output().unwrap(), local.wait_with_output().unwrap());
    let both = format!("slurm:\n{}\nlocal:\n{}", text(&slurm), text(&local));
    assert!(slurm.status.success() && local.status.success(), "{both}");
    let starts: Vec<String> = s.ledger().into_iter().filter(|(w, _)| w == "start").map(|(_, i)| i).collect();
    let unique: BTreeSet<&String> = starts.iter().collect();
    assert_eq!((starts.len(), unique.len()), (8, 8), "a job ran twice: {starts:?}\n{both}");
    assert_eq!(s.done_ids().len(), 8);
    // Each job counted as passed by exactly one of them.
    let passed = |o: &Output| -> usize {
        let t = text(o);
        let tail = t.rsplit("run finished in").next().unwrap_or("").to_string();
        tail.split(": ").nth(1).and_then(|p| p.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no summary: {t}"))
    };
    assert_eq!(passed(&slurm) + passed(&local), 8, "{both}");
}

/// Runs `dae-sweep ARGS` in a private mount namespace whose `results` is a
/// fresh tmpfs of `size`; `setup` (shell) runs first inside it, and the
/// results are copied to `saved/` when the runner ends. `None` where no
/// mount namespace can be made here (needs root or user namespaces).
fn on_small_tmpfs(s: &Study, size: &str, setup: &str, args: &[&str]) -> Option<Output> {
    let probe = s.dir.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let ok = Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs \"$0\""])
        .arg(&probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs in a private mount namespace here (`unshare --mount` needs root or user namespaces)");
        return None;
    }
    std::fs::create_dir_all(s.path("results")).unwrap();
    std::fs::create_dir_all(s.path("saved")).unwrap();
    let script = format!("mount -t tmpfs -o size={size} tmpfs results && {setup} \"$@\"; rc=$?; cp -a results/. saved/; exit $rc");
    let mut c = Command::new("unshare");
    c.current_dir(s.dir.path()).args(["--mount", "sh", "-c", &script, "sh", sweep_bin()]).args(args);
    c.arg("exp.toml").arg("--trainer").arg(fake_trainer()).env("FAKE_LEDGER", s.path("ledger.txt"));
    Some(c.output().unwrap())
}

#[test]
fn a_full_file_system_fails_only_the_job_that_needs_the_room() {
    // 256 kB: each job's small files fit; the 400 kB model of one job does not.
    let s = Study::new(&format!("{}\n[[include]]\nvalue = 2\nartefact = 400000\n", matrix(3, 0.0)));
    let Some(o) = on_small_tmpfs(&s, "256k", "", &["run", "--jobs", "1"]) else { return };
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let runs: Vec<PathBuf> = std::fs::read_dir(s.path("saved/runs")).unwrap().map(|e| e.unwrap().path()).collect();
    let (done, failed): (Vec<&PathBuf>, Vec<&PathBuf>) = runs.iter().partition(|r| r.join(dae_runfolder::files::DONE).exists());
    assert_eq!((done.len(), failed.len()), (3, 1), "{out}");
    let log = std::fs::read_to_string(failed[0].join(dae_runfolder::files::LOG)).unwrap();
    assert!(log.contains("model.safetensors: cannot write") && log.contains("No space left on device"), "{log}");
    let left: Vec<String> = std::fs::read_dir(failed[0]).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.contains(".tmp-")), "a temporary file is left taking the room: {left:?}");
    assert!(out.contains("failed jobs (1), with their logs:"), "{out}");
}

#[test]
fn a_read_only_results_folder_is_a_clear_error_and_loses_nothing() {
    let s = Study::new(&matrix(3, 0.0));
    // One job finished, then the file system turns read-only.
    let setup = "\"$@\" --only value=1 >/dev/null 2>&1 && mount -o remount,ro results &&";
    let Some(o) = on_small_tmpfs(&s, "1m", setup, &["run", "--jobs", "1"]) else { return };
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("Read-only file system") && !out.contains("panicked"), "{out}");
    let done: Vec<_> = std::fs::read_dir(s.path("saved/runs")).unwrap().flatten().filter(|e| e.path().join("done").exists()).collect();
    assert_eq!(done.len(), 1, "the finished run is intact: {out}");
    let sealed = dae_runfolder::RunFolder::at(done[0].path());
    assert_eq!(dae_runfolder::check_done(&sealed, dae_runfolder::Check::Hash), Ok(()));
}
