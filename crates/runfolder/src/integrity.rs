//! A finished run proves its own integrity: the completion marker `done`
//! is a [`DoneRecord`], the size and SHA-256 of each artefact the reports
//! read ([`SEALED`]), written by the trainer last. Whoever reads a run
//! checks it: the size cheaply ([`Check::Size`], what `status` and `plan`
//! do), the hash of what the reports read ([`Check::Reports`], what the
//! report does) or of everything ([`Check::Hash`], `--verify`).
//! A run that fails the check is damaged ([`Damage`]): it counts as
//! missing, and the runner archives it and runs the job again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{self, RunFolder};

/// The artefacts a finished run seals (those present: the model file only
/// when it was saved, Figure 3 only when drawn).
pub const SEALED: [&str; 5] = [files::METRICS, files::SCORES, files::HISTORY, files::MODEL, files::FIGURE3];

/// One sealed file: its length and SHA-256 (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// The contents of `done`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The trainer's code version.
    pub code_version: String,
    /// Sealed file name -> digest.
    pub files: BTreeMap<String, FileDigest>,
}

/// How thoroughly a finished run is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// File sizes only (no file is read).
    Size,
    /// Sizes, and SHA-256 of the files the reports read (all but the model
    /// file, which can be large and which no report reads).
    Reports,
    /// Sizes and SHA-256 of every sealed file.
    Hash,
}

impl Check {
    fn hashes(self, name: &str) -> bool {
        match self {
            Check::Size => false,
            Check::Reports => name != files::MODEL,
            Check::Hash => true,
        }
    }
}

/// What is wrong with a finished run: the file and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl Damage {
    pub fn new(file: &str, problem: impl Into<String>) -> Damage {
        Damage { file: file.to_string(), problem: problem.into() }
    }
}

/// The size and SHA-256 of a file, read in chunks.
pub fn digest_file(path: &Path) -> std::io::Result<FileDigest> {
    let mut f = std::fs::File::open(path)?;
    let (mut h, mut buf, mut bytes) = (Sha256::new(), vec![0u8; 1 << 16], 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileDigest { bytes, sha256 })
}

impl DoneRecord {
    /// Seals the folder's present [`SEALED`] files.
    pub fn seal(run: &RunFolder, code_version: &str) -> std::io::Result<DoneRecord> {
        let mut files = BTreeMap::new();
        for name in SEALED {
            let path = run.path.join(name);
            if path.exists() {
                files.insert(name.to_string(), digest_file(&path)?);
            }
        }
        Ok(DoneRecord { code_version: code_version.to_string(), files })
    }

    /// Reads `done`: `Ok(None)` for a marker written before runs were
    /// sealed (plain text: nothing to check against); a `done` that is
    /// neither is damage.
    pub fn read(run: &RunFolder) -> Result<Option<DoneRecord>, Damage> {
        let text = std::fs::read_to_string(run.done()).map_err(|e| Damage::new(files::DONE, format!("cannot be read: {e}")))?;
        if !text.trim_start().starts_with('{') {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).map_err(|e| Damage::new(files::DONE, format!("is not a completion record: {e}")))
    }

    /// Checks every sealed file against its record.
    pub fn verify(&self, run: &RunFolder, check: Check) -> Result<(), Damage> {
        for (name, want) in &self.files {
            let path = run.path.join(name);
            let len = std::fs::metadata(&path).map_err(|e| Damage::new(name, format!("missing or unreadable: {e}")))?.len();
            if len != want.bytes {
                return Err(Damage::new(name, format!("{len} bytes, sealed with {}", want.bytes)));
            }
            if check.hashes(name) {
                let got = digest_file(&path).map_err(|e| Damage::new(name, format!("cannot be read: {e}")))?;
                if got.sha256 != want.sha256 {
                    return Err(Damage::new(name, "its SHA-256 differs from the sealed one (same size: changed in place)"));
                }
            }
        }
        Ok(())
    }
}

/// The artefacts every finished run has, sealed or not.
const ALWAYS: [&str; 3] = [files::METRICS, files::SCORES, files::HISTORY];

/// Checks a finished run: its `done` record and sealed files. A run
/// finished before runs were sealed has nothing to check against; its
/// [`ALWAYS`] files must at least be there and not empty.
pub fn check_done(run: &RunFolder, check: Check) -> Result<(), Damage> {
    match DoneRecord::read(run)? {
        Some(rec) => rec.verify(run, check),
        None => {
            for name in ALWAYS {
                match std::fs::metadata(run.path.join(name)) {
                    Ok(m) if m.len() > 0 => {}
                    Ok(_) => return Err(Damage::new(name, "empty (an unsealed run: no sizes to compare)")),
                    Err(e) => return Err(Damage::new(name, format!("missing or unreadable: {e}"))),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_run() -> (tempfile::TempDir, RunFolder) {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::at(dir.path());
        std::fs::write(run.metrics(), b"{\"test_auc\": 0.75}").unwrap();
        std::fs::write(run.scores(), b"sample_id,patient,label,score\na,p,1,0.5\n").unwrap();
        let rec = DoneRecord::seal(&run, "v1").unwrap();
        std::fs::write(run.done(), serde_json::to_string(&rec).unwrap()).unwrap();
        (dir, run)
    }

    #[test]
    fn a_sealed_run_checks_and_records_only_present_files() {
        let (_d, run) = sealed_run();
        let rec = DoneRecord::read(&run).unwrap().unwrap();
        assert_eq!(rec.files.keys().collect::<Vec<_>>(), ["metrics.json", "scores.csv"]);
        // SHA-256 of the 18 bytes written above, from `sha256sum`.
        assert_eq!(rec.files["metrics.json"].bytes, 18);
        assert_eq!(rec.files["metrics.json"].sha256, "18e5397bcefb8097b0b2a80d3dbdc348bb4af8ac6d2a647000f0575a26873024");
        assert_eq!(check_done(&run, Check::Hash), Ok(()));
    }

    #[test]
    fn cut_emptied_missing_or_changed_files_are_damage() {
        let (_d, run) = sealed_run();
        std::fs::write(run.metrics(), b"{\"test_auc\"").unwrap();
        let e = check_done(&run, Check::Size).unwrap_err();
        assert_eq!((e.file.as_str(), e.problem.as_str()), ("metrics.json", "11 bytes, sealed with 18"));

        let (_d, run) = sealed_run();
        std::fs::write(run.scores(), b"").unwrap();
        assert_eq!(check_done(&run, Check::Size).unwrap_err().file, "scores.csv");

        let (_d, run) = sealed_run();
        std::fs::remove_file(run.scores()).unwrap();
        assert!(check_done(&run, Check::Size).unwrap_err().problem.starts_with("missing"));

        // The same size, other bytes: only the hash sees it.
        let (_d, run) = sealed_run();
        std::fs::write(run.metrics(), b"{\"test_auc\": 0.95}").unwrap();
        assert_eq!(check_done(&run, Check::Size), Ok(()));
        assert!(check_done(&run, Check::Reports).unwrap_err().problem.contains("SHA-256"));
        assert!(check_done(&run, Check::Hash).unwrap_err().problem.contains("SHA-256"));

        // The model file: hashed by --verify only.
        let (_d, run) = sealed_run();
        std::fs::write(run.model(), b"weights").unwrap();
        std::fs::write(run.done(), serde_json::to_string(&DoneRecord::seal(&run, "v1").unwrap()).unwrap()).unwrap();
        std::fs::write(run.model(), b"WEIGHTS").unwrap();
        assert_eq!(check_done(&run, Check::Reports), Ok(()));
        assert_eq!(check_done(&run, Check::Hash).unwrap_err().file, "model.safetensors");
    }

    #[test]
    fn an_unsealed_marker_is_accepted_and_a_broken_record_is_damage() {
        let (_d, run) = sealed_run();
        std::fs::write(run.done(), b"0.1.0+abc\n").unwrap();
        assert_eq!(DoneRecord::read(&run), Ok(None));
        assert_eq!(check_done(&run, Check::Hash).unwrap_err().file, "history.csv", "unsealed: the three artefacts must be there");
        std::fs::write(run.history(), b"epoch\n1\n").unwrap();
        assert_eq!(check_done(&run, Check::Hash), Ok(()));
        std::fs::write(run.scores(), b"").unwrap();
        assert!(check_done(&run, Check::Size).unwrap_err().problem.starts_with("empty"));
        std::fs::write(run.done(), b"{\"code_version\": \"v1\", \"fil").unwrap();
        assert_eq!(check_done(&run, Check::Size).unwrap_err().file, "done");
    }
}
