//! Where a run stands between epochs: [`Progress`] is the training loop's
//! state and, as it is, what the checkpoint saves; [`History`] is
//! `history.csv`, which owns its header and its rows.

use serde::{Deserialize, Serialize};

use crate::methods::{StepLosses, TrainerState};

/// `history.csv`: one row per epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History {
    /// The CSV text so far, header included.
    text: String,
}

/// The columns every method writes, before the method's own.
const COMMON_COLUMNS: &str = "epoch,loss,loss_cls,loss_attr,loss_rec,val_auc,val_attr_acc,lr,seconds";

/// One epoch's row.
pub struct EpochRow<'a> {
    pub epoch: usize,
    /// Mean losses over the epoch's batches.
    pub losses: &'a StepLosses,
    pub val_auc: f64,
    pub val_attr_acc: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
}

impl History {
    /// An empty history with the common columns and the method's `extra` ones.
    pub fn new(extra: &[&str]) -> History {
        let mut text = String::from(COMMON_COLUMNS);
        for c in extra {
            text.push(',');
            text.push_str(c);
        }
        text.push('\n');
        History { text }
    }

    pub fn push(&mut self, r: &EpochRow) {
        let l = r.losses;
        let acc = r.val_attr_acc.map(|a| format!("{a:.6}")).unwrap_or_default();
        self.text.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{acc},{},{:.3}",
            r.epoch, l.total, l.cls, l.attr, l.rec, r.val_auc, r.lr, r.seconds
        ));
        for v in &l.extra {
            self.text.push_str(&format!(",{v:.6}"));
        }
        self.text.push('\n');
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The format of [`Progress`] in checkpoints this trainer writes and reads.
pub const FORMAT: u32 = 1;

/// The training loop's state after an epoch; the checkpoint's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub format: u32,
    pub code_version: String,
    /// SHA-256 of the trainer executable (`None`: unreadable). A checkpoint
    /// is used only by the same executable: a dirty tree's code version does
    /// not change with each edit, the binary does.
    pub binary_sha256: Option<String>,
    /// The data set's fingerprint.
    pub data_fingerprint: String,
    /// The canonical config of the run.
    pub config: String,
    /// Epochs finished (validation and best-epoch bookkeeping included).
    pub epoch: usize,
    /// Training has ended (last epoch, or early stopping): a resumed run
    /// goes straight to the test evaluation.
    pub training_done: bool,
    pub best_auc: f64,
    pub best_epoch: usize,
    /// Training samples seen and seconds spent training, over all attempts.
    pub train_seen: usize,
    pub train_seconds: f64,
    /// Wall seconds up to the end of the last epoch, over all attempts.
    pub wall_seconds: f64,
    pub history: History,
    /// Optimiser steps and the random stream.
    pub trainer: TrainerState,
}

/// Who is training what: the identity a checkpoint must share to be used.
pub struct Identity {
    pub code_version: String,
    pub binary_sha256: Option<String>,
    pub data_fingerprint: String,
    pub config: String,
}

impl Progress {
    /// The state before the first epoch.
    pub fn start(id: Identity, history: History, trainer: TrainerState) -> Progress {
        Progress {
            format: FORMAT,
            code_version: id.code_version,
            binary_sha256: id.binary_sha256,
            data_fingerprint: id.data_fingerprint,
            config: id.config,
            epoch: 0,
            training_done: false,
            best_auc: f64::NEG_INFINITY,
            best_epoch: 0,
            train_seen: 0,
            train_seconds: 0.0,
            wall_seconds: 0.0,
            history,
            trainer,
        }
    }

    /// Why a checkpoint with this state cannot continue a run of `id`, or `None`.
    pub fn mismatch(&self, id: &Identity) -> Option<&'static str> {
        if self.format != FORMAT {
            Some("another checkpoint format")
        } else if self.config != id.config {
            Some("another config")
        } else if self.data_fingerprint != id.data_fingerprint {
            Some("other data")
        } else if id.binary_sha256.is_none() {
            Some("unknown origin: this executable cannot be hashed")
        } else if self.binary_sha256 != id.binary_sha256 {
            Some("another dae-train executable")
        } else {
            None
        }
    }

    /// The next epoch to train, or `None` when training is over.
    pub fn next_epoch(&self, epochs: usize) -> Option<usize> {
        (!self.training_done && self.epoch < epochs).then_some(self.epoch + 1)
    }

    /// Books a finished epoch: best epoch, early stopping, the end of the
    /// schedule. Returns whether this epoch is the best so far.
    pub fn finish_epoch(&mut self, epoch: usize, val_auc: f64, patience: usize, epochs: usize) -> bool {
        self.epoch = epoch;
        let best = val_auc > self.best_auc;
        if best {
            self.best_auc = val_auc;
            self.best_epoch = epoch;
        } else if patience > 0 && epoch - self.best_epoch >= patience {
            self.training_done = true;
        }
        self.training_done |= epoch == epochs;
        best
    }

    /// The record `progress.json` holds for the runner.
    pub fn record(&self, epochs: usize, last: Option<&EpochRecord>, checkpoint: bool) -> dae_runfolder::ProgressRecord {
        dae_runfolder::ProgressRecord {
            epoch: self.epoch,
            epochs,
            training_done: self.training_done,
            loss: last.map_or(f64::NAN, |l| l.loss),
            val_auc: last.map_or(f64::NAN, |l| l.val_auc),
            best_auc: self.best_auc,
            best_epoch: self.best_epoch,
            epoch_seconds: last.map_or(0.0, |l| l.seconds),
            checkpoint,
            code_version: self.code_version.clone(),
            updated_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

/// The last epoch's figures for the progress record.
pub struct EpochRecord {
    pub loss: f64,
    pub val_auc: f64,
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Progress {
        let id = Identity { code_version: "v".into(), binary_sha256: Some("b".into()), data_fingerprint: "d".into(), config: "c".into() };
        Progress::start(id, History::new(&["x"]), TrainerState { rng: [1, 2, 3, 4], steps: Default::default() })
    }

    #[test]
    fn patience_stops_after_that_many_epochs_without_a_better_auc() {
        let mut p = state();
        assert_eq!(p.next_epoch(10), Some(1));
        assert!(p.finish_epoch(1, 0.6, 2, 10));
        assert!(!p.finish_epoch(2, 0.6, 2, 10) && !p.training_done);
        assert!(!p.finish_epoch(3, 0.5, 2, 10) && p.training_done);
        assert_eq!((p.best_epoch, p.next_epoch(10)), (1, None));
        let mut q = state();
        q.finish_epoch(1, 0.5, 0, 1);
        assert!(q.training_done, "the last epoch ends training");
    }

    #[test]
    fn the_history_owns_its_header_and_rows_and_the_state_round_trips() {
        let mut p = state();
        p.finish_epoch(1, 0.75, 0, 3);
        let losses = StepLosses { total: 1.0, cls: 0.5, attr: 0.25, rec: 0.25, extra: vec![0.125] };
        p.history.push(&EpochRow { epoch: 1, losses: &losses, val_auc: 0.75, val_attr_acc: None, lr: 0.001, seconds: 2.0 });
        let text = String::from_utf8(p.history.as_bytes().to_vec()).unwrap();
        assert_eq!(text, format!("{COMMON_COLUMNS},x\n1,1.000000,0.500000,0.250000,0.250000,0.750000,,0.001,2.000,0.125000\n"));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
        let other =
            Identity { code_version: "v".into(), binary_sha256: Some("b".into()), data_fingerprint: "d".into(), config: "c2".into() };
        assert_eq!(p.mismatch(&other), Some("another config"));
    }
}
