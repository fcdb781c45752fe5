//! Slurm runs that outlive their runner: `run --backend slurm --detach`
//! submits and exits; a later `run --backend slurm` finds the tasks again
//! from the submission folders and follows them to their end, retrying the
//! failed ones ("reattaches"); `status` shows where they stand.
//!
//! A submission folder (`<results>/slurm/<millis>/`, its retries in
//! `retry-<k>/` below it) holds `manifest.txt` (one job id per line) and
//! `arrays.txt`, one line per submitted array, `<array id> <offset> <count>
//! <attempt>`: task `i` of that array runs the manifest's job `offset + i`.
//! A detached runner also writes `detached` (`retries = N`, its `--retries`)
//! at the top of its folder; the runner that follows all of that folder's
//! tasks to their end removes it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use dae_runfolder::write_atomic;

use crate::error::{io_err, SweepError};
use crate::plan::{Action, PlannedJob};
use crate::runs::RunDir;
use crate::slurm::{is_terminal, SlurmCli};

/// The file naming a submission folder's arrays.
pub const ARRAYS: &str = "arrays.txt";
/// The marker of a detached runner's submission folder.
pub const DETACHED: &str = "detached";

/// One submitted array, as a line of `arrays.txt` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayRecord {
    pub array: String,
    pub offset: usize,
    pub count: usize,
    pub attempt: u32,
}

/// Adds one array to `dir/arrays.txt` (rewritten atomically).
pub fn record_array(dir: &Path, rec: &ArrayRecord) -> Result<(), SweepError> {
    let path = dir.join(ARRAYS);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!("{} {} {} {}\n", rec.array, rec.offset, rec.count, rec.attempt));
    write_atomic(&path, text.as_bytes()).map_err(io_err(&path, "cannot write"))
}

/// Marks `dir` as a detached runner's submission folder.
pub fn mark_detached(dir: &Path, retries: u32) -> Result<(), SweepError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir, "cannot create the submission folder"))?;
    let path = dir.join(DETACHED);
    write_atomic(&path, format!("retries = {retries}\n").as_bytes()).map_err(io_err(&path, "cannot write"))
}

fn parse_arrays(path: &Path) -> Result<Vec<ArrayRecord>, SweepError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path, "cannot read"))?;
    let bad = |n: usize, line: &str| {
        SweepError::Slurm(format!(
            "{}:{}: `{line}` is not `<array id> <offset> <count> <attempt>` (written by the runner; was the file edited?)",
            path.display(),
            n + 1
        ))
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let rec = match f.as_slice() {
            [a, o, c, t] => match (o.parse(), c.parse(), t.parse()) {
                (Ok(offset), Ok(count), Ok(attempt)) => ArrayRecord { array: a.to_string(), offset, count, attempt },
                _ => return Err(bad(n, line)),
            },
            _ => return Err(bad(n, line)),
        };
        out.push(rec);
    }
    Ok(out)
}

/// A task a detached runner submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedTask {
    pub job_id: String,
    pub array: String,
    pub index: usize,
    pub attempt: u32,
    /// The detached runner's submission folder (holding the marker).
    pub root: PathBuf,
}

impl SubmittedTask {
    /// `<array>_<index>`, as Slurm and the exit record name the task.
    pub fn task(&self) -> String {
        format!("{}_{}", self.array, self.index)
    }
}

/// The detached submissions of a results folder.
#[derive(Clone, Debug, Default)]
pub struct Detached {
    /// Per job id, its latest task (the highest attempt; a later folder wins a tie).
    pub tasks: BTreeMap<String, SubmittedTask>,
    /// The most retries a detached runner was given.
    pub retries: u32,
    /// The marked folders, oldest first.
    pub roots: Vec<PathBuf>,
}

/// Subfolders sorted by the number in their names (`<millis>`, `retry-<k>`).
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    Some((name.strip_prefix(prefix)?.parse().ok()?, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Reads the detached runners' submission folders under `results`.
pub fn load(results: &Path) -> Result<Detached, SweepError> {
    let mut d = Detached::default();
    for root in numbered(&results.join("slurm"), "").into_iter().filter(|r| r.join(DETACHED).exists()) {
        let marker = root.join(DETACHED);
        let text = std::fs::read_to_string(&marker).map_err(io_err(&marker, "cannot read"))?;
        let retries = text.trim().strip_prefix("retries = ").and_then(|n| n.parse().ok()).ok_or_else(|| {
            SweepError::Slurm(format!("{}: `{}` is not `retries = N` (written by the runner)", marker.display(), text.trim()))
        })?;
        d.retries = d.retries.max(retries);
        for dir in std::iter::once(root.clone()).chain(numbered(&root, "retry-")) {
            if dir.join(ARRAYS).exists() {
                add_folder(&mut d, &root, &dir)?;
            }
        }
        d.roots.push(root);
    }
    Ok(d)
}

fn add_folder(d: &mut Detached, root: &Path, dir: &Path) -> Result<(), SweepError> {
    let manifest = dir.join("manifest.txt");
    let text = std::fs::read_to_string(&manifest).map_err(io_err(&manifest, "cannot read"))?;
    let ids: Vec<&str> = text.lines().collect();
    for a in parse_arrays(&dir.join(ARRAYS))? {
        for index in 0..a.count {
            let Some(id) = ids.get(a.offset + index) else {
                return Err(SweepError::Slurm(format!(
                    "{}: array {} runs task {} of the manifest, which lists only {} jobs",
                    dir.join(ARRAYS).display(),
                    a.array,
                    a.offset + index,
                    ids.len()
                )));
            };
            let t = SubmittedTask { job_id: id.to_string(), array: a.array.clone(), index, attempt: a.attempt, root: root.to_path_buf() };
            if d.tasks.get(*id).is_none_or(|old| old.attempt <= t.attempt) {
                d.tasks.insert(id.to_string(), t);
            }
        }
    }
    Ok(())
}

/// Where a detached task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Slurm lists it in a state that is not final (`PENDING`, `RUNNING`, ...).
    Queued(String),
    /// It ended and left its exit record (exit code, if any).
    Ended(Option<i32>),
    /// Neither: Slurm forgot it and it left nothing (cancelled while pending).
    Gone,
}

/// `squeue` once per array.
#[derive(Default)]
pub struct Squeue {
    states: HashMap<String, BTreeMap<usize, String>>,
}

impl Squeue {
    /// Where `t` stands (asks Slurm about its array the first time).
    pub fn standing(&mut self, t: &SubmittedTask, results: &Path, cli: &SlurmCli) -> Result<Standing, SweepError> {
        if !self.states.contains_key(&t.array) {
            self.states.insert(t.array.clone(), cli.squeue(&t.array)?);
        }
        if let Some(s) = self.states[&t.array].get(&t.index).filter(|s| !is_terminal(s)) {
            return Ok(Standing::Queued(s.clone()));
        }
        let record = RunDir::new(results, &t.job_id).exit_record().filter(|r| r.slurm_task.as_deref() == Some(t.task().as_str()));
        Ok(match record {
            Some(r) => Standing::Ended(r.exit_code),
            None => Standing::Gone,
        })
    }
}

/// Adopts the planned jobs whose detached task is queued, running or ended
/// with its record: such a job runs (is followed, not submitted again),
/// whatever its status said. Returns the adopted tasks by job index.
pub fn reattach(
    planned: &mut [PlannedJob],
    results: &Path,
    detached: &Detached,
    cli: &SlurmCli,
) -> Result<HashMap<usize, SubmittedTask>, SweepError> {
    let mut squeue = Squeue::default();
    let mut adopted = HashMap::new();
    for (i, p) in planned.iter_mut().enumerate() {
        let Some(t) = detached.tasks.get(&p.job.id) else { continue };
        let standing = squeue.standing(t, results, cli)?;
        if standing == Standing::Gone {
            continue;
        }
        p.action = Action::Run;
        p.reason = format!("submitted by a detached run as Slurm task {} (attempt {}); followed to its end", t.task(), t.attempt);
        adopted.insert(i, t.clone());
    }
    Ok(adopted)
}

/// After a runner followed the planned jobs to their end: removes the marker
/// of every detached folder whose tasks were all among them.
pub fn settle(detached: &Detached, planned: &[PlannedJob]) -> Result<(), SweepError> {
    let ids: std::collections::HashSet<&str> = planned.iter().map(|p| p.job.id.as_str()).collect();
    for root in &detached.roots {
        if detached.tasks.values().filter(|t| &t.root == root).all(|t| ids.contains(t.job_id.as_str())) {
            let marker = root.join(DETACHED);
            std::fs::remove_file(&marker).map_err(io_err(&marker, "cannot remove"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_attempt_of_each_job_is_found_and_a_bad_line_is_named() {
        let results = tempfile::tempdir().unwrap();
        let root = results.path().join("slurm").join("1700000000000");
        let retry = root.join("retry-1");
        std::fs::create_dir_all(&retry).unwrap();
        mark_detached(&root, 2).unwrap();
        std::fs::write(root.join("manifest.txt"), "a\nb\nc\n").unwrap();
        record_array(&root, &ArrayRecord { array: "10".into(), offset: 0, count: 2, attempt: 1 }).unwrap();
        record_array(&root, &ArrayRecord { array: "11".into(), offset: 2, count: 1, attempt: 1 }).unwrap();
        std::fs::write(retry.join("manifest.txt"), "b\n").unwrap();
        record_array(&retry, &ArrayRecord { array: "12".into(), offset: 0, count: 1, attempt: 2 }).unwrap();
        // A folder without the marker (an attached runner's) is not read.
        let other = results.path().join("slurm").join("1700000000001");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("manifest.txt"), "a\n").unwrap();
        record_array(&other, &ArrayRecord { array: "13".into(), offset: 0, count: 1, attempt: 1 }).unwrap();

        let d = load(results.path()).unwrap();
        assert_eq!(d.retries, 2);
        assert_eq!(d.roots, vec![root.clone()]);
        let tasks: Vec<(String, String, u32)> = d.tasks.values().map(|t| (t.job_id.clone(), t.task(), t.attempt)).collect();
        assert_eq!(tasks, vec![("a".into(), "10_0".into(), 1), ("b".into(), "12_0".into(), 2), ("c".into(), "11_0".into(), 1)]);

        std::fs::write(root.join(ARRAYS), "10 0 2 1\n10 zero 2 1\n").unwrap();
        let e = load(results.path()).unwrap_err().to_string();
        assert!(e.contains("arrays.txt:2") && e.contains("10 zero 2 1"), "{e}");
        std::fs::write(root.join(ARRAYS), "10 2 5 1\n").unwrap();
        let e = load(results.path()).unwrap_err().to_string();
        assert!(e.contains("lists only 3 jobs"), "{e}");
    }
}
