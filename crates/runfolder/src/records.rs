//! The records of a run folder: `metrics.json`, `exit.json`, `progress.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// What a finished run measured: `metrics.json`, written by the trainer
/// before `done`. Fields added later have defaults, so older runs still read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub test_auc: f64,
    /// The method trained (`dae-gcn`, `guided-vae`, `icadx`, `li-diagnet`).
    pub method: String,
    pub val_auc: f64,
    /// DeLong 95% CI of the test AUC.
    pub test_auc_ci95: [f64; 2],
    /// Attribute accuracy per cluster on the test split, and `mean` over clusters.
    #[serde(default)]
    pub attr_acc: BTreeMap<String, f64>,
    /// Linear-probe test AUCs of frozen features per probe group (`ma_mi`,
    /// `h_i`, `h`, `z_t`, `z_rst`); the probe is fitted on the training split.
    #[serde(default)]
    pub probe_auc: BTreeMap<String, f64>,
    /// The same probes fitted and scored within the test split, 5-fold
    /// cross-validated with folds by patient (the paper's protocol: a
    /// classifier trained on test-time features).
    #[serde(default)]
    pub probe_auc_test_cv: BTreeMap<String, f64>,
    /// The same cross-validation with an RBF-kernel SVM (C = 1, gamma = 1/d
    /// on standardised features). Empty above 2,500 test samples.
    #[serde(default)]
    pub probe_auc_test_cv_rbf: BTreeMap<String, f64>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    /// The epoch of the checkpoint this run resumed from (0: not resumed).
    #[serde(default)]
    pub resumed_from_epoch: usize,
    /// Over all attempts of a resumed run.
    pub wall_seconds: f64,
    pub train_samples_per_second: f64,
    pub peak_memory_mb: f64,
    pub device: String,
    pub code_version: String,
    pub status: String,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    #[serde(default)]
    pub data_fingerprint: String,
    /// Rows the data loader left out, by reason (e.g. image files missing
    /// under `dataset.missing = "skip"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, usize>,
    /// The attribute graph of a GCN head, as the training split made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphRecord>,
    /// The machine the run finished on (empty in runs older than the record).
    #[serde(default)]
    pub machine: MachineRecord,
}

/// Where a run finished: provenance, not part of the job's identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub hostname: String,
    /// As `/proc/cpuinfo` names it.
    pub cpu_model: String,
    /// The CPU threads the trainer's kernels use.
    pub threads: usize,
    /// The GPU's name and driver (`NVIDIA H200, driver 550.54.15`) on a CUDA run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The distribution and kernel (`Debian GNU/Linux 12, Linux 6.1.0`).
    pub os: String,
    /// `rustc --version` of the compiler that built the trainer.
    pub rustc: String,
    /// The candle-core version the trainer was built with.
    pub candle: String,
}

/// The thresholded attribute graph of a run (`attributes = "gcn"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphRecord {
    /// Directed edges `[from, to]` by attribute name (E_ij > 0, i != j).
    pub edges: Vec<[String; 2]>,
    /// The condition number of E (1e16: numerically singular).
    pub condition: f64,
}

impl Metrics {
    /// The keys that vary from run to run of the same job (timing, memory,
    /// the machine): everything else is a function of the config, data and code.
    pub const TIMING_KEYS: [&'static str; 5] =
        ["wall_seconds", "train_samples_per_second", "peak_memory_mb", "resumed_from_epoch", "machine"];
}

/// How an attempt ended: `exit.json`, written by the runner (or the Slurm
/// task script) when an attempt ends on its own. A job the runner stopped
/// leaves none, so it reads as incomplete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub attempt: u32,
    pub backend: String,
    pub seconds: f64,
    /// The Slurm array task that wrote it (`<array job>_<task>`), so that
    /// a Slurm runner never takes another runner's record for its task's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_task: Option<String>,
}

/// Where a run stands: `progress.json`, rewritten by the trainer after each
/// epoch (after its checkpoint), so the runner and `status` can show a
/// running job and the plan can say where an interrupted one resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecord {
    /// Epochs finished.
    pub epoch: usize,
    /// Epochs planned (`optim.epochs`).
    pub epochs: usize,
    /// Whether training has ended (last epoch or early stopping).
    pub training_done: bool,
    /// Mean training loss of the last epoch.
    pub loss: f64,
    /// Validation AUC of the last epoch.
    pub val_auc: f64,
    pub best_auc: f64,
    pub best_epoch: usize,
    /// Seconds the last epoch took (training and validation).
    pub epoch_seconds: f64,
    /// Whether a checkpoint of this epoch was written (a run then resumes after it).
    pub checkpoint: bool,
    /// The trainer's code version (a checkpoint is used by the same build only).
    pub code_version: String,
    /// Unix time of the write.
    pub updated_unix: u64,
}

impl ProgressRecord {
    /// Seconds left at the last epoch's pace (0 when training is over).
    pub fn eta_seconds(&self) -> f64 {
        if self.training_done {
            0.0
        } else {
            self.epochs.saturating_sub(self.epoch) as f64 * self.epoch_seconds
        }
    }

    /// `epoch 3/10, loss 0.5000, val AUC 0.700, 4.0 s/epoch, ETA 28 s`: the
    /// one line the runner's display and `status` show of a running job.
    pub fn summary(&self) -> String {
        if self.training_done {
            return format!(
                "epoch {}/{}, training done (best val AUC {:.3} at epoch {}), testing",
                self.epoch, self.epochs, self.best_auc, self.best_epoch
            );
        }
        format!(
            "epoch {}/{}, loss {:.4}, val AUC {:.3}, {:.1} s/epoch, ETA {}",
            self.epoch,
            self.epochs,
            self.loss,
            self.val_auc,
            self.epoch_seconds,
            human_duration(self.eta_seconds())
        )
    }
}

/// `28 s`, `4 min 05 s`, `1 h 02 min`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// Reads a JSON record; `Err` says why it cannot (missing, unreadable, or not
/// the record), naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_record_round_trips_and_gives_an_eta() {
        let p = ProgressRecord {
            epoch: 3,
            epochs: 10,
            training_done: false,
            loss: 0.5,
            val_auc: 0.7,
            best_auc: 0.72,
            best_epoch: 2,
            epoch_seconds: 4.0,
            checkpoint: true,
            code_version: "v".into(),
            updated_unix: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.json");
        crate::write_atomic(&path, serde_json::to_string(&p).unwrap().as_bytes()).unwrap();
        let q: ProgressRecord = read_json(&path).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.eta_seconds(), 28.0);
        assert_eq!(q.summary(), "epoch 3/10, loss 0.5000, val AUC 0.700, 4.0 s/epoch, ETA 28 s");
        let q = ProgressRecord { epoch: 1, epoch_seconds: 270.0, ..q };
        assert!(q.summary().ends_with("ETA 40 min 30 s"), "{}", q.summary());
        assert_eq!(human_duration(7500.0), "2 h 05 min");
        std::fs::write(&path, b"{\"epoch\": 3").unwrap();
        assert!(read_json::<ProgressRecord>(&path).unwrap_err().contains("progress.json"));
    }
}
