//! The plan manifest: `<results>/plans/<experiment>.<profile>.json`, written
//! by the runner whenever it plans, so the reporter finds an experiment's
//! jobs (ids, variants, parameters, seeds) without starting the trainer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::error::{io_err, SweepError};
use crate::plan::{Job, Plan};

/// The folder of plan manifests inside a results folder.
pub const PLANS: &str = "plans";

/// One planned job as the manifest records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestJob {
    pub id: String,
    pub variant: Option<String>,
    /// `variant`, the axes in file order, `seed`.
    pub params: Vec<(String, Value)>,
    pub seed: u64,
}

/// An experiment's planned jobs under one profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub experiment: String,
    /// The experiment file the plan was made from.
    pub file: PathBuf,
    pub profile: Option<String>,
    /// The trainer's code version at planning time.
    pub code_version: String,
    pub jobs: Vec<ManifestJob>,
}

impl Manifest {
    /// The manifest of a plan (all its jobs, whatever a selection keeps).
    pub fn of(plan: &Plan) -> Manifest {
        let job = |j: &Job| ManifestJob { id: j.id.clone(), variant: j.variant.clone(), params: j.params.clone(), seed: j.seed };
        Manifest {
            experiment: plan.experiment.clone(),
            file: plan.path.clone(),
            profile: plan.profile.clone(),
            code_version: plan.code_version.clone(),
            jobs: plan.jobs.iter().map(|p| job(&p.job)).collect(),
        }
    }

    /// Where the manifest of `experiment` under `profile` lives.
    pub fn path(results: &Path, experiment: &str, profile: Option<&str>) -> PathBuf {
        results.join(PLANS).join(format!("{experiment}.{}.json", profile.unwrap_or("default")))
    }

    /// Writes it atomically.
    pub fn write(&self, results: &Path) -> Result<PathBuf, SweepError> {
        let p = Manifest::path(results, &self.experiment, self.profile.as_deref());
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        dae_runfolder::write_atomic(&p, text.as_bytes()).map_err(io_err(&p, "cannot write the plan manifest"))?;
        Ok(p)
    }

    /// Reads the manifest of `experiment` under `profile`; a missing one
    /// says which command writes it.
    pub fn read(results: &Path, experiment: &str, profile: Option<&str>) -> Result<Manifest, SweepError> {
        let p = Manifest::path(results, experiment, profile);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SweepError::Usage(format!(
                    "{}: no plan of experiment {experiment} (profile {}) in this results folder; `cargo xtask plan` or `cargo xtask run` the experiment first",
                    p.display(),
                    profile.unwrap_or("default")
                )))
            }
            Err(source) => return Err(SweepError::Io { path: p, action: "cannot read", source }),
        };
        serde_json::from_str(&text).map_err(|e| SweepError::File {
            path: p,
            line: Some(e.line()),
            message: format!("not a plan manifest: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_with_its_toml_values() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest {
            experiment: "t".into(),
            file: "experiments/t.toml".into(),
            profile: Some("quick".into()),
            code_version: "v".into(),
            jobs: vec![ManifestJob {
                id: "ab".into(),
                variant: Some("row1".into()),
                params: vec![
                    ("variant".into(), Value::String("row1".into())),
                    ("model.tau".into(), Value::Float(0.4)),
                    ("seed".into(), Value::Integer(3)),
                ],
                seed: 3,
            }],
        };
        let p = m.write(dir.path()).unwrap();
        assert!(p.ends_with("plans/t.quick.json"));
        assert_eq!(Manifest::read(dir.path(), "t", Some("quick")).unwrap(), m);
        let e = Manifest::read(dir.path(), "t", Some("smoke")).unwrap_err().to_string();
        assert!(e.contains("t.smoke.json") && e.contains("cargo xtask run"), "{e}");
    }
}
