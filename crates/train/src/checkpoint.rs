//! The per-epoch checkpoint that lets an interrupted run resume.
//!
//! After every epoch the trainer writes `checkpoint.safetensors` in the run
//! folder, atomically, one file holding everything the next epoch depends on:
//!
//! | tensors | what |
//! |---|---|
//! | `model.<var>` | every variable of the network (weights, batch-norm running statistics, the h_i eraser) |
//! | `best.<var>` | the snapshot of the best validation epoch so far |
//! | `optim.<optimiser>.{m,v}.<var>` | each Adam optimiser's moments |
//!
//! and, in the file's metadata (key `dae_train_checkpoint`), the loop's
//! [`Progress`] as JSON: the epochs done, the best epoch and AUC, the history
//! so far, timing counters, each optimiser's step count, the random stream,
//! and the config, data fingerprint, code version and executable hash it was
//! made by.
//!
//! A run started on a folder that holds a checkpoint of the same config,
//! data and `dae-train` executable continues after the checkpoint's epoch
//! and ends with the same metrics, scores and weights as a run that was
//! never stopped (shuffling and augmentation are derived from the seed and
//! the epoch number; the rest is in the file; on the CPU, where the kernels
//! are deterministic, also across thread counts). A checkpoint of another
//! config, data set or trainer executable is not used (the run starts from
//! epoch 1 and says so). The checkpoint is removed once the run is done, or
//! diverged (resuming would diverge again); other failures keep it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::adam::named_vars;
use crate::progress::{Progress, FORMAT};

const META_KEY: &str = "dae_train_checkpoint";

/// A checkpoint read from disk: its state, and its tensors still unparsed
/// (so a checkpoint that will not be used costs no device memory).
pub struct Checkpoint {
    pub state: Progress,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Checkpoint {
    /// The tensors, on `dev`.
    pub fn tensors(&self, dev: &Device) -> Result<HashMap<String, Tensor>, CheckpointError> {
        candle_core::safetensors::load_buffer(&self.bytes, dev).map_err(|e| err(&self.path, format!("cannot read the tensors: {e}")))
    }
}

/// Why a checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub reason: String,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError { path: path.into(), reason: reason.to_string() }
}

/// The variables of `varmap` by name, as they are now (no copy; for
/// writing them out at once).
pub fn current(varmap: &VarMap) -> BTreeMap<String, Tensor> {
    named_vars(varmap, |_| true).into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect()
}

/// Copies of the variables of `varmap`, by name.
pub fn snapshot(varmap: &VarMap) -> candle_core::Result<BTreeMap<String, Tensor>> {
    current(varmap).into_iter().map(|(k, t)| Ok((k, t.copy()?))).collect()
}

/// The tensors of a checkpoint: the network, the best snapshot, the optimisers' moments.
pub struct Tensors<'a> {
    pub model: BTreeMap<String, Tensor>,
    pub best: Option<&'a BTreeMap<String, Tensor>>,
    pub optim: BTreeMap<String, Tensor>,
}

/// Writes the checkpoint to `path` atomically; on failure the previous
/// checkpoint stays as it was.
pub fn save(path: &Path, state: &Progress, t: Tensors) -> Result<(), CheckpointError> {
    let mut all: BTreeMap<String, Tensor> = BTreeMap::new();
    // Host copies first: candle's safetensors view unwraps a failed device copy.
    let host = |t: &Tensor| t.to_device(&Device::Cpu).map_err(|e| err(path, format!("cannot copy a tensor to the host: {e}")));
    for (k, v) in t.optim {
        all.insert(k, host(&v)?);
    }
    for (k, v) in t.model {
        all.insert(format!("model.{k}"), host(&v)?);
    }
    for (k, v) in t.best.into_iter().flatten() {
        all.insert(format!("best.{k}"), host(v)?);
    }
    let meta = HashMap::from([(META_KEY.to_string(), serde_json::to_string(state).expect("checkpoint state serialises"))]);
    let bytes = safetensors::serialize(all.iter(), Some(meta)).map_err(|e| err(path, format!("cannot serialise: {e}")))?;
    dae_runfolder::write_atomic(path, &bytes).map_err(|e| err(path, format!("cannot write: {e}")))
}

/// Reads the checkpoint at `path`, if there is one, without parsing its
/// tensors. A file that is there but cannot be read is an error (it is
/// never silently ignored).
pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(path, format!("cannot read: {e}"))),
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| err(path, format!("no `{META_KEY}` metadata: not a dae-train checkpoint")))?;
    let state: Progress = serde_json::from_str(text).map_err(|e| err(path, format!("bad `{META_KEY}` metadata: {e}")))?;
    if state.format != FORMAT {
        return Err(err(path, format!("checkpoint format {} (this dae-train reads format {FORMAT})", state.format)));
    }
    Ok(Some(Checkpoint { state, path: path.into(), bytes }))
}

/// The tensors stored under `prefix.`, with the prefix stripped.
pub fn with_prefix(tensors: &HashMap<String, Tensor>, prefix: &str) -> BTreeMap<String, Tensor> {
    let p = format!("{prefix}.");
    tensors.iter().filter_map(|(k, t)| k.strip_prefix(&p).map(|n| (n.to_string(), t.clone()))).collect()
}

/// Checks that `saved` holds exactly the variables of `varmap`, with their shapes.
pub fn check_matches(varmap: &VarMap, saved: &BTreeMap<String, Tensor>, what: &str) -> Result<(), String> {
    let data = varmap.data().lock().expect("varmap lock");
    if data.len() != saved.len() {
        return Err(format!("{what}: {} tensors, the network has {} variables", saved.len(), data.len()));
    }
    for (k, var) in data.iter() {
        let t = saved.get(k).ok_or_else(|| format!("{what}: no tensor for variable `{k}`"))?;
        if t.shape() != var.shape() {
            return Err(format!("{what}: `{k}` has shape {:?}, the variable {:?}", t.shape(), var.shape()));
        }
    }
    Ok(())
}

/// Sets every variable of `varmap` from `saved` (checked by [`check_matches`]).
pub fn restore_vars(varmap: &VarMap, saved: &BTreeMap<String, Tensor>, what: &str) -> Result<(), String> {
    check_matches(varmap, saved, what)?;
    let data = varmap.data().lock().expect("varmap lock");
    for (k, var) in data.iter() {
        var.set(&saved[k]).map_err(|e| format!("{what}: `{k}`: {e}"))?;
    }
    Ok(())
}
