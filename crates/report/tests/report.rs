//! The report on hand-made run folders: aggregation (mean, std, n, the
//! two-level bootstrap CIs) and contrasts against values computed here, and
//! snapshots of the rendered tables (`UPDATE_SNAPSHOTS=1 cargo test -p
//! dae-report` rewrites them; read the diff before committing).

use std::path::{Path, PathBuf};

use dae_report::aggregate::analyse;
use dae_report::collect::{collect, collect_folder, to_dataframe};
use dae_report::contrasts::{Verdict, RESAMPLING};
use dae_report::{figures, tables};
use dae_runfolder::resolve::Resolved;
use dae_runfolder::{Metrics, RunFolder};
use dae_sweep::plan::{plan, Plan, RerunPolicy, Resolution, Resolver};
use dae_sweep::{Experiment, Manifest};

/// Accepts configs as they are (no trainer needed).
struct Identity;
impl Resolver for Identity {
    fn resolve(&self, configs: &[String]) -> Result<Resolution, dae_sweep::SweepError> {
        Ok(Resolution {
            code_version: "test".into(),
            results: configs.iter().map(|c| Ok(Resolved { config: c.clone(), data: "d".into(), gpu: None })).collect(),
        })
    }
}

/// Plans the experiment and records the plan as the runner does.
fn planned(exp: &Experiment, results: &Path) -> Plan {
    let p = plan(exp, None, &Identity, results, RerunPolicy::default()).unwrap();
    Manifest::of(&p).write(results).unwrap();
    p
}

const EXPERIMENT: &str = r#"
[experiment]
name = "table2-ablation"
description = "hand-made runs"
seeds = [0, 1]
reference = "row7"
report = "ablation"

[[variant]]
name = "row1"
label = "Vanilla"
set.model = { disentangle = false, attributes = "none", rec = false, h_i = false }
paper = { auc = 0.847 }

[[variant]]
name = "row2"
label = "Multi-task"
set.model = { disentangle = false, attributes = "multitask", rec = false, h_i = false }
paper = { auc = 0.863 }

[[variant]]
name = "row7"
label = "DAE-GCN"
set.model = { disentangle = true, attributes = "gcn", rec = true, h_i = true }
paper = { auc = 0.919 }

[[contrast]]
a = "row7"
b = "row1"

[[contrast]]
a = "row2"
b = "row1"
kind = "equivalence"
margin = 0.05
"#;

/// How far each row's scores separate the classes.
const R1: f64 = 0.1;
const R2: f64 = 0.2;
const R7: f64 = 0.3;

/// 12 test samples, labels alternating; scores that rank them partly.
fn scores(shift: f64, seed: u64) -> Vec<(String, u8, f64)> {
    (0..12)
        .map(|i| {
            let y = (i % 2) as u8;
            let noise = ((i * 7 + seed as usize * 3) % 5) as f64 / 10.0;
            (format!("s{i:02}"), y, noise + shift * y as f64)
        })
        .collect()
}

/// A finished run whose `test_auc` is the AUC of its scores, as the trainer writes it.
fn write_run(dir: &Path, attr: Option<f64>, sc: &[(String, u8, f64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let attr_acc = attr.map(|a| [("mean", a), ("shape", a), ("margin", a)].map(|(k, v)| (k.to_string(), v)).into()).unwrap_or_default();
    let m = Metrics {
        test_auc: auc(sc),
        method: "dae-gcn".into(),
        val_auc: 0.7,
        test_auc_ci95: [0.0, 1.0],
        attr_acc,
        probe_auc: [("h".to_string(), 0.6)].into(),
        probe_auc_test_cv: Default::default(),
        probe_auc_test_cv_rbf: Default::default(),
        best_epoch: 2,
        epochs_run: 2,
        resumed_from_epoch: 0,
        wall_seconds: 1.0,
        train_samples_per_second: 1.0,
        peak_memory_mb: 1.0,
        device: "cpu".into(),
        code_version: "test".into(),
        status: "done".into(),
        n_train: 1,
        n_val: 1,
        n_test: sc.len(),
        data_fingerprint: "d".into(),
        graph: None,
        skipped: Default::default(),
        machine: Default::default(),
    };
    std::fs::write(RunFolder::at(dir).metrics(), serde_json::to_string(&m).unwrap()).unwrap();
    let mut s = String::from("sample_id,patient,label,score,pred_shape,pred_margin\n");
    for (id, y, x) in sc {
        s.push_str(&format!("{id},p{id},{y},{x},,\n"));
    }
    std::fs::write(dir.join("scores.csv"), s).unwrap();
    std::fs::write(dir.join("history.csv"), "epoch,loss,loss_cls,loss_attr,loss_rec,val_auc,val_attr_acc,lr,seconds\n1,1.0,0.7,0.3,0.0,0.6,,0.001,1.0\n2,0.8,0.6,0.2,0.0,0.65,,0.001,1.0\n").unwrap();
    std::fs::write(dir.join("job.toml"), "seed = 0\n").unwrap();
    let sealed = dae_runfolder::DoneRecord::seal(&RunFolder::at(dir), "test").unwrap();
    std::fs::write(dir.join("done"), serde_json::to_string(&sealed).unwrap()).unwrap();
}

fn auc(sc: &[(String, u8, f64)]) -> f64 {
    let (y, x): (Vec<u8>, Vec<f64>) = sc.iter().map(|t| (t.1, t.2)).unzip();
    dae_metrics::roc_auc(&x, &y).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    results: PathBuf,
    exp: Experiment,
}

/// row1: two seeds done; row2: one done, one failed; row7: two done.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let exp = Experiment::parse(Path::new("table2-ablation.toml"), EXPERIMENT).unwrap();
    let p = planned(&exp, &results);
    for j in &p.jobs {
        let run = results.join("runs").join(&j.job.id);
        let (v, s) = (j.job.variant.as_deref().unwrap(), j.job.seed);
        match (v, s) {
            ("row1", 0) => write_run(&run, None, &scores(R1, 0)),
            ("row1", 1) => write_run(&run, None, &scores(R1, 1)),
            ("row2", 0) => write_run(&run, Some(0.5), &scores(R2, 0)),
            ("row2", 1) => {
                std::fs::create_dir_all(&run).unwrap();
                std::fs::write(run.join("job.toml"), "").unwrap();
                std::fs::write(
                    run.join("exit.json"),
                    r#"{"exit_code": 3, "signal": null, "attempt": 1, "backend": "local", "seconds": 1.0}"#,
                )
                .unwrap();
            }
            ("row7", 0) => write_run(&run, Some(0.6), &scores(R7, 0)),
            ("row7", 1) => write_run(&run, Some(0.7), &scores(R7, 1)),
            _ => unreachable!(),
        }
    }
    Fixture { _dir: dir, results, exp }
}

fn collection(f: &Fixture) -> dae_report::Collection {
    collect(&f.exp, None, &f.results).unwrap()
}

/// The two-level bootstrap of these seeds' scores of one row (or the
/// difference of two rows) with the report's resampling, computed here
/// from the scores as written.
fn by_hand(a: &[Vec<(String, u8, f64)>], b: Option<&[Vec<(String, u8, f64)>]>) -> dae_metrics::Draws {
    let labels: Vec<u8> = a[0].iter().map(|x| x.1).collect();
    let patients: Vec<String> = a[0].iter().map(|x| format!("p{}", x.0)).collect();
    let test = dae_metrics::TestSet::new(labels, &patients);
    let rank = |s: &[(String, u8, f64)]| dae_metrics::RankedScores::new(&s.iter().map(|x| x.2).collect::<Vec<_>>()).unwrap();
    let (ra, rb): (Vec<_>, Option<Vec<_>>) = (a.iter().map(|s| rank(s)).collect(), b.map(|b| b.iter().map(|s| rank(s)).collect()));
    let stat = |k: usize, w: &[f64]| -> Option<f64> {
        let x = ra[k].weighted_auc(&test.labels, w)?;
        match &rb {
            Some(rb) => Some(x - rb[k].weighted_auc(&test.labels, w)?),
            None => Some(x),
        }
    };
    let tests: Vec<&dae_metrics::TestSet> = a.iter().map(|_| &test).collect();
    dae_metrics::two_level(&tests, true, &stat, RESAMPLING).unwrap()
}

#[test]
fn aggregation_gives_mean_std_n_and_two_level_intervals_as_computed_by_hand() {
    let f = fixture();
    let c = collection(&f);
    assert_eq!(c.runs.len(), 6, "failed runs are rows too");
    let a = analyse(&c).unwrap();
    let rows = &a.rows;
    assert_eq!(rows.iter().map(|r| r.variant.clone().unwrap()).collect::<Vec<_>>(), ["row1", "row2", "row7"]);
    let (r1, r2, r7) = (&rows[0], &rows[1], &rows[2]);
    // Two seeds: mean (a + b) / 2, std (n - 1) = |a - b| / sqrt(2).
    let (x, y) = (auc(&scores(R1, 0)), auc(&scores(R1, 1)));
    assert!((x - y).abs() > 0.01, "the fixture's seeds must differ");
    let s = r1.stat("test_auc").unwrap();
    assert!((s.mean - (x + y) / 2.0).abs() < 1e-12 && (s.std - (x - y).abs() / 2f64.sqrt()).abs() < 1e-12 && s.n == 2, "{s:?}");
    // One run: n = 1, std undefined; the failed run counted.
    let s = r2.stat("test_auc").unwrap();
    assert_eq!((s.n, r2.done, r2.failed, r2.planned), (1, 1, 1, 2));
    assert!(s.std.is_nan());
    let m = r7.stat("attr_acc_mean").unwrap();
    assert!((m.mean - 0.65).abs() < 1e-12 && (m.std - 0.0707106781).abs() < 1e-9);
    // The row's CI: the two-level bootstrap of its two seeds' scores.
    let want = by_hand(&[scores(R7, 0), scores(R7, 1)], None);
    let (mean, ci) = r7.auc_ci.unwrap();
    assert!((mean - (auc(&scores(R7, 0)) + auc(&scores(R7, 1))) / 2.0).abs() < 1e-12);
    assert_eq!(ci, want.ci(0.95));
    // Contrast row7 - row1: the seed mean of per-seed differences, paired by seed.
    let k = &a.contrasts[0];
    assert_eq!((k.contrast.name.as_str(), k.n_seeds), ("row7-row1", 2));
    let want = by_hand(&[scores(R7, 0), scores(R7, 1)], Some(&[scores(R1, 0), scores(R1, 1)]));
    let delta = ((auc(&scores(R7, 0)) - auc(&scores(R1, 0))) + (auc(&scores(R7, 1)) - auc(&scores(R1, 1)))) / 2.0;
    assert!((k.delta - delta).abs() < 1e-12 && k.ci == want.ci(0.95), "{k:?}");
    assert!((k.p - want.p_two_sided()).abs() < 1e-12 && k.p_holm >= k.p);
    assert!((k.paper_delta.unwrap() - (0.919 - 0.847)).abs() < 1e-12);
    // row2 - row1 (equivalence within 0.05): one common seed (row2's seed 1 failed); TOST p.
    let e = &a.contrasts[1];
    let want = by_hand(&[scores(R2, 0)], Some(&[scores(R1, 0)]));
    assert_eq!(e.n_seeds, 1);
    assert!((e.p - want.tost(0.05)).abs() < 1e-12, "{e:?}");
    // Holm over the two: the smaller p times 2, the larger at least that.
    let (lo, hi) = if k.p <= e.p { (k, e) } else { (e, k) };
    assert!((lo.p_holm - (2.0 * lo.p).min(1.0)).abs() < 1e-12 && hi.p_holm >= lo.p_holm);
    // Twelve test samples cannot resolve a margin of 0.05.
    assert_eq!(e.verdict, Verdict::BelowResolution, "{e:?}");
}

#[test]
fn the_run_table_has_a_row_per_run_and_a_column_per_axis_and_metric() {
    let f = fixture();
    let c = collection(&f);
    let df = to_dataframe(&c.runs).unwrap();
    assert_eq!(df.height(), 6);
    for col in ["id", "variant", "seed", "status", "test_auc", "attr_acc_mean", "probe_auc_h", "code_version"] {
        assert!(df.column(col).is_ok(), "missing column {col}");
    }
    let status = df.column("status").unwrap().str().unwrap().clone();
    assert_eq!(status.iter().filter(|s| *s == Some("failed")).count(), 1);
    // The whole results folder: the same runs, found without the experiment file.
    let all = collect_folder(&f.results).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().filter(|r| r.status == "done").count(), 5);
}

fn snapshot(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(got, want, "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it)");
}

#[test]
fn rendered_tables_match_their_snapshots() {
    let f = fixture();
    let c = collection(&f);
    let t = tables::build(&c, &analyse(&c).unwrap());
    snapshot("table2-ablation.md", &t.to_markdown());
    snapshot("table2-ablation.tex", &t.to_latex());
    snapshot("table2-ablation.csv", &t.to_csv());
    // Table 1 layout with a row not implemented.
    let text = EXPERIMENT
        .replace("report = \"ablation\"", "report = \"methods\"")
        .replace("name = \"table2-ablation\"", "name = \"table1-methods\"")
        + "\n[[variant]]\nname = \"icadx\"\nlabel = \"ICADx\"\nimplemented = false\nnote = \"issue 6\"\npaper = { auc = 0.879 }\n";
    let exp = Experiment::parse(Path::new("table1-methods.toml"), &text).unwrap();
    planned(&exp, &f.results);
    let c1 = collect(&exp, None, &f.results).unwrap();
    let t1 = tables::build(&c1, &analyse(&c1).unwrap());
    snapshot("table1-methods.md", &t1.to_markdown());
    snapshot("table1-methods.tex", &t1.to_latex());
    assert!(t1.to_markdown().contains("| ICADx | not implemented (issue 6) |"));
}

#[test]
fn figures_are_written_as_png_and_svg() {
    let f = fixture();
    let c = collection(&f);
    let out = f.results.join("figures");
    let paths = figures::render_all(&c, &analyse(&c).unwrap(), &out).unwrap();
    for stem in ["table2-ablation-roc", "table2-ablation-training", "table2-ablation-probe"] {
        for ext in ["png", "svg"] {
            let p = out.join(format!("{stem}.{ext}"));
            assert!(paths.contains(&p) && std::fs::metadata(&p).unwrap().len() > 1000, "{}", p.display());
        }
    }
    let svg = std::fs::read_to_string(out.join("table2-ablation-roc.svg")).unwrap();
    assert!(svg.contains("false positive rate") && svg.contains("DAE-GCN"), "labels are drawn");
}

#[test]
fn damaged_runs_count_as_missing_are_named_and_every_table_and_figure_still_renders() {
    let f = fixture();
    let plan = planned(&f.exp, &f.results);
    let dir = |v: &str, seed: u64| {
        let j = plan.jobs.iter().find(|j| j.job.variant.as_deref() == Some(v) && j.job.seed == seed).unwrap();
        f.results.join("runs").join(&j.job.id)
    };
    // row1 seed 1: metrics.json cut to its first 50 bytes; row7 seed 1: scores.csv emptied.
    let metrics = dir("row1", 1).join("metrics.json");
    let cut = std::fs::read(&metrics).unwrap()[..50].to_vec();
    std::fs::write(&metrics, cut).unwrap();
    std::fs::write(dir("row7", 1).join("scores.csv"), "").unwrap();
    // An unsealed (older) run whose scores.csv lost its rows: the report reads it and finds that too.
    let legacy = dir("row2", 0);
    std::fs::write(legacy.join("done"), "0.1.0+old\n").unwrap();
    std::fs::write(legacy.join("scores.csv"), "sample_id,patient,label,score\n").unwrap();

    let c = collection(&f);
    let damaged: Vec<(&str, u64)> =
        c.runs.iter().filter(|r| r.status == "damaged").map(|r| (r.variant.as_deref().unwrap(), r.seed)).collect();
    assert_eq!(damaged, [("row1", 1), ("row2", 0), ("row7", 1)]);
    let a = analyse(&c).unwrap();
    let row = |v: &str| a.rows.iter().find(|r| r.variant.as_deref() == Some(v)).unwrap();
    assert_eq!((row("row1").done, row("row1").damaged), (1, 1));
    // The mean is the one sound run's AUC, not two runs' with one missing.
    assert!((row("row1").stat("test_auc").unwrap().mean - auc(&scores(R1, 0))).abs() < 1e-12);
    let md = tables::build(&c, &a).to_markdown();
    assert!(md.contains("| 1/2† (1 damaged) |"), "{md}");
    assert!(md.contains("Not in the table (4 of 6 planned runs"), "{md}");
    for (v, s, file) in
        [("row1", 1, "metrics.json: 50 bytes, sealed with"), ("row7", 1, "scores.csv: 0 bytes"), ("row2", 0, "scores.csv: no test samples")]
    {
        assert!(md.contains(&format!("{}: {file}", dir(v, s).display())), "{v} {s}: {md}");
    }
    let out = f.results.join("figures");
    assert!(!figures::render_all(&c, &a, &out).unwrap().is_empty());
}

/// Hostile input: mutated run-folder files (`done`, `metrics.json`,
/// `scores.csv`, `exit.json`, `progress.json`) through the readers the
/// runner and the report use: each gives a value, a damaged status or an
/// error naming the file; never a panic or a hang.
#[test]
fn run_folder_files_under_mutation() {
    use dae_mutate::Campaign;
    use dae_runfolder::{read_json, Check, ExitRecord, ProgressRecord};
    use dae_sweep::runs::{RunDir, Status};

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/0123abcd");
    write_run(&run, Some(0.5), &scores(0.3, 0));
    let folder = RunFolder::at(&run);
    let exit = ExitRecord { exit_code: Some(1), signal: None, attempt: 2, backend: "local".into(), seconds: 3.5, slurm_task: None };
    std::fs::write(folder.exit(), serde_json::to_vec(&exit).unwrap()).unwrap();
    let progress = r#"{"epoch":3,"epochs":10,"training_done":false,"loss":0.5,"val_auc":0.7,"best_auc":0.72,"best_epoch":2,"epoch_seconds":4.0,"checkpoint":true,"code_version":"v","updated_unix":1}"#;
    std::fs::write(folder.progress(), progress).unwrap();
    read_json::<ProgressRecord>(&folder.progress()).unwrap();

    let json_tokens = ["{", "}", "[", "]", "\"", ":", ",", "null", "1e999", "-1", "18446744073709551616", "NaN"];
    let mut total = 0;
    for (file, seed) in [(folder.done(), 1), (folder.metrics(), 2), (folder.scores(), 3), (folder.exit(), 4), (folder.progress(), 5)] {
        let good = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let stats =
            Campaign::new(&format!("run folder {name}"), vec![good.clone()]).cases(1_000).seed(seed).tokens(&json_tokens).run(|b| {
                std::fs::write(&file, b).unwrap();
                // What status, plan and the report do with a run folder.
                let status = RunDir::at(run.clone()).status_checked("test", Check::Hash);
                let metrics = dae_report::collect::read_metrics(&run);
                let exit = read_json::<ExitRecord>(&folder.exit());
                let progress = read_json::<ProgressRecord>(&folder.progress());
                let scores = dae_report::collect::read_scores(&run).map_err(|e| e.to_string());
                let sealed = name != "exit.json" && name != "progress.json" && name != "done";
                match (&status, name.as_str()) {
                    // A sealed file changed in any way is damage, whatever it now holds.
                    (Status::Damaged { damage }, _) => return Err(format!("{}: {}", damage.file, damage.problem)),
                    _ if sealed && b != good.as_slice() => panic!("{name} changed but the run is {status:?}"),
                    (_, "metrics.json") if metrics.nums.is_empty() => panic!("an intact metrics.json read as empty"),
                    (_, "exit.json") => exit.map(drop),
                    (_, "progress.json") => progress.map(drop),
                    _ => scores.map(drop),
                }
            });
        assert!(stats.rejected > 100, "{name}: {stats:?}");
        std::fs::write(&file, good).unwrap();
        total += stats.inputs;
    }
    assert_eq!(total, 5_000);
}

#[test]
fn diff_shows_the_config_keys_that_differ_every_metric_and_delongs_paired_test() {
    use dae_report::diff::{diff, find_run, AucTest};
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path();
    let (a, b) = (results.join("runs/aa11"), results.join("runs/ab22"));
    let (sa, sb) = (scores(R1, 0), scores(R7, 1));
    write_run(&a, Some(0.5), &sa);
    write_run(&b, Some(0.625), &sb);
    std::fs::write(RunFolder::at(&a).config(), "seed = 0\n[model]\ntau = 0.5\np = 4\n").unwrap();
    std::fs::write(RunFolder::at(&b).config(), "seed = 0\n[model]\ntau = 0.3\np = 4\nrec = true\n").unwrap();
    // A run is named by id, unique prefix or folder.
    assert_eq!(find_run(results, "aa").unwrap(), a);
    assert_eq!(find_run(results, "ab22").unwrap(), b);
    assert_eq!(find_run(results, b.to_str().unwrap()).unwrap(), b);
    let e = find_run(results, "a").unwrap_err().to_string();
    assert!(e.contains("2 run ids") && e.contains("aa11, ab22"), "{e}");
    assert!(find_run(results, "zz").unwrap_err().to_string().contains("no run id"));
    let d = diff(&a, &b).unwrap();
    let keys: Vec<_> = d.config.iter().map(|r| (r.key.as_str(), r.a.as_deref(), r.b.as_deref())).collect();
    assert_eq!(keys, vec![("model.rec", None, Some("true")), ("model.tau", Some("0.5"), Some("0.3"))]);
    let metric = |k: &str| d.metrics.iter().find(|r| r.key == k).map(|r| (r.a, r.b)).unwrap();
    assert_eq!(metric("test_auc"), (Some(auc(&sa)), Some(auc(&sb))));
    assert_eq!(metric("attr_acc.mean"), (Some(0.5), Some(0.625)));
    assert_eq!(metric("test_auc_ci95.1"), (Some(1.0), Some(1.0)));
    // DeLong's test on the paired scores, as dae-metrics computes it.
    let y: Vec<u8> = sa.iter().map(|t| t.1).collect();
    let (xa, xb): (Vec<f64>, Vec<f64>) = sa.iter().zip(&sb).map(|(p, q)| (p.2, q.2)).unzip();
    let expected = dae_metrics::delong_test(&xa, &xb, &y).unwrap();
    assert_eq!(d.auc_test, AucTest::Done { n: 12, test: expected });
    let md = d.markdown();
    assert!(md.contains("| model.tau | 0.5 | 0.3 |") && md.contains("| attr_acc.mean | 0.5000 | 0.6250 | +0.1250 |"), "{md}");
    // Another test set: the AUCs are not paired, and the diff says so.
    write_run(&b, Some(0.625), &sb[..10]);
    match diff(&a, &b).unwrap().auc_test {
        AucTest::NotApplicable(why) => assert!(why.contains("12 and 10 samples"), "{why}"),
        other => panic!("{other:?}"),
    }
}
