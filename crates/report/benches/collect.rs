//! Collecting 10,000 run folders into the DataFrame (`cargo bench -p
//! dae-report`), target under 2 s: read each folder's status, job config and
//! metrics, find the varying config keys, build the polars frame.

use std::time::Instant;

use dae_report::collect::{collect_folder, to_dataframe};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let n = 10_000;
    let t = Instant::now();
    for i in 0..n {
        let d = runs.join(format!("{i:064x}"));
        std::fs::create_dir_all(&d).unwrap();
        let (tau, p, seed) = ((i % 9 + 1) as f64 / 10.0, ((i / 9) % 9 + 1) as f64 / 10.0, i / 81);
        std::fs::write(
            d.join("job.toml"),
            format!("seed = {seed}\ndevice = \"cpu\"\n\n[model]\nencoder = \"small-cnn\"\ntau = {tau}\np = {p}\nwidth = 8\n\n[optim]\nlr = 0.002\nepochs = 8\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("metrics.json"),
            format!(
                r#"{{"test_auc": {}, "method": "dae-gcn", "val_auc": 0.7, "test_auc_ci95": [0.6, 0.8], "attr_acc": {{"shape": 0.5, "margin": 0.4, "mean": 0.45}}, "probe_auc": {{"ma_mi": 0.7, "h_i": 0.6}}, "best_epoch": 5, "epochs_run": 8, "wall_seconds": 30.5, "train_samples_per_second": 100.0, "peak_memory_mb": 300.0, "device": "cpu", "code_version": "x", "status": "done", "n_train": 600, "n_val": 200, "n_test": 200}}"#,
                0.5 + (i % 100) as f64 / 1000.0
            ),
        )
        .unwrap();
        std::fs::write(d.join("done"), "").unwrap();
    }
    println!("made {n} run folders in {:.1} s", t.elapsed().as_secs_f64());
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let rows = collect_folder(dir.path()).unwrap();
        let df = to_dataframe(&rows).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(df.height(), n);
        assert!(df.column("model.tau").is_ok() && df.column("test_auc").is_ok());
    }
    println!("collect {n} run folders into a DataFrame: best of 3 {best:.3} s (target < 2 s)");
}
