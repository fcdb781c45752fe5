//! From an experiment to jobs with ids, and from jobs to a plan: each job's
//! status and whether a run would start it, and why.
//!
//! The trainer is the authority on its config: the expanded configs go to
//! `dae-train --resolve` (one process for the whole matrix), which checks
//! each one exactly as a job file and returns its canonical text and a data
//! fingerprint. A job's id is the SHA-256 of [`SCHEMA_VERSION`], that text and
//! that fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dae_runfolder::resolve::{Answer, Refusal, Resolved, Response};
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use crate::error::SweepError;
use crate::experiment::{get_path, values_equal, Experiment, Variant};
use crate::runs::{RunDir, Status};

/// Bumped when the meaning of a job id changes (what is hashed, or how the
/// run folder is laid out).
pub const SCHEMA_VERSION: u32 = 1;

/// The trainer's answer for a batch of configs.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub code_version: String,
    pub results: Vec<Result<Resolved, Refusal>>,
}

/// Resolves job configs (given as TOML texts).
pub trait Resolver {
    fn resolve(&self, configs: &[String]) -> Result<Resolution, SweepError>;
}

/// The trainer to use: the one given, else `$DAE_TRAINER`, else `dae-train`
/// beside the running program (where cargo builds both).
pub fn trainer_path(given: Option<&Path>) -> PathBuf {
    if let Some(t) = given {
        return t.to_path_buf();
    }
    if let Ok(t) = std::env::var("DAE_TRAINER") {
        return t.into();
    }
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("dae-train"))).unwrap_or_else(|| "dae-train".into())
}

/// Resolution by `PROGRAM --resolve` (the `dae-train` binary).
#[derive(Clone, Debug)]
pub struct TrainerResolver {
    pub program: PathBuf,
}

impl Resolver for TrainerResolver {
    fn resolve(&self, configs: &[String]) -> Result<Resolution, SweepError> {
        let err = |message: String| SweepError::Trainer { program: self.program.clone(), message };
        let mut child = Command::new(&self.program)
            .arg("--resolve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot start: {e}")))?;
        let input = serde_json::to_vec(configs).expect("strings serialise");
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().map_err(|e| err(format!("cannot read its output: {e}")))?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(err(format!("--resolve failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
        }
        let wire: Response = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("unexpected --resolve output ({e}); is it a dae-train binary of this workspace?")))?;
        if wire.results.len() != configs.len() {
            return Err(err(format!("answered {} configs for {} asked", wire.results.len(), configs.len())));
        }
        Ok(Resolution {
            code_version: wire.code_version,
            results: wire
                .results
                .into_iter()
                .map(|r| match r {
                    Answer::Ok(c) => Ok(c),
                    Answer::Error(e) => Err(e),
                })
                .collect(),
        })
    }
}

/// One training job.
#[derive(Clone, Debug)]
pub struct Job {
    /// Hex SHA-256: the run folder's name.
    pub id: String,
    pub variant: Option<String>,
    /// Axis values: `variant`, the axes in file order, `seed`.
    pub params: Vec<(String, Value)>,
    pub seed: u64,
    /// The canonical resolved config (written to the run folder as `job.toml`).
    pub config: String,
    pub data: String,
    /// The CUDA device index the job asks for (`None`: the CPU), as the trainer read its `device`.
    pub gpu: Option<usize>,
}

impl Job {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
    /// `variant=row7 model.tau=0.4 seed=1`.
    pub fn describe(&self) -> String {
        describe(&self.params)
    }
}

/// Parameters as `key=value` words.
pub fn describe(params: &[(String, Value)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", show(v))).collect::<Vec<_>>().join(" ")
}

/// A value as a user wrote it (strings without quotes).
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The job id: SHA-256 of the schema version, the canonical config and the
/// data fingerprint.
pub fn job_id(config: &str, data: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("dae-sweep job schema {SCHEMA_VERSION}\n").as_bytes());
    h.update(config.as_bytes());
    h.update(b"\n--data--\n");
    h.update(data.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What `run` does with a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Run,
    Skip,
}

/// Which finished runs a run should redo.
#[derive(Clone, Copy, Debug, Default)]
pub struct RerunPolicy {
    /// Rerun everything, done runs included (they are archived first).
    pub force: bool,
    pub rerun_failed: bool,
    pub rerun_stale: bool,
    /// Hash every finished run's sealed files (`--verify`), not only their sizes.
    pub verify: bool,
}

impl RerunPolicy {
    /// Whether a run folder with this status is moved to the archive before
    /// the job runs: finished or failed runs that are redone, and, with
    /// `--force`, an incomplete run (its checkpoint included), which then
    /// starts over instead of resuming.
    pub fn archives_first(&self, status: &Status) -> bool {
        matches!(status, Status::Done | Status::Stale { .. } | Status::Failed { .. } | Status::Damaged { .. })
            || (self.force && *status == Status::Incomplete)
    }

    /// How finished runs are checked.
    pub fn check(&self) -> dae_runfolder::Check {
        if self.verify {
            dae_runfolder::Check::Hash
        } else {
            dae_runfolder::Check::Size
        }
    }

    /// Whether a job with this status runs, and why.
    pub fn decide(&self, status: &Status, current_version: &str) -> (Action, String) {
        match status {
            Status::Pending => (Action::Run, "not run yet".into()),
            Status::Incomplete if self.force => {
                (Action::Run, "started but never finished; rerun from the start because of --force (the partial run is archived)".into())
            }
            Status::Incomplete => (
                Action::Run,
                "started but never finished; runs again (resuming after its last finished epoch where the trainer left a checkpoint)"
                    .into(),
            ),
            // Waited for, not skipped: a runner killed outright leaves its job
            // holding the lock while it stops, and then unfinished.
            Status::Running => {
                (Action::Run, "running now under another runner; waits for its lock, then reruns it only if unfinished".into())
            }
            Status::Done if self.force => (Action::Run, "done; rerun because of --force (the old run is archived)".into()),
            Status::Done => (Action::Skip, "done".into()),
            Status::Stale { .. } if self.force || self.rerun_stale => {
                (Action::Run, "done by other code; rerun because of --rerun-stale (the old run is archived)".into())
            }
            Status::Stale { code_version } => {
                (Action::Skip, format!("done by code {code_version} (now {current_version}); reused, --rerun-stale to redo"))
            }
            Status::Failed { .. } if self.force || self.rerun_failed => {
                (Action::Run, format!("{}; rerun because of --rerun-failed", failure(status)))
            }
            Status::Failed { .. } => (Action::Skip, format!("{}; --rerun-failed to retry", failure(status))),
            Status::Damaged { damage } => (Action::Run, format!("damaged ({damage}); runs again (the damaged run is archived)")),
        }
    }
}

fn failure(s: &Status) -> String {
    match s {
        Status::Failed { exit: Some(0), .. } => "failed (exited 0 without the done marker)".into(),
        Status::Failed { exit: Some(c), .. } => format!("failed (exit {c})"),
        Status::Failed { signal: Some(sig), .. } => format!("failed (killed by signal {sig})"),
        _ => "failed".into(),
    }
}

/// A job with its status and what a run would do.
#[derive(Clone, Debug)]
pub struct PlannedJob {
    pub job: Job,
    pub status: Status,
    pub action: Action,
    pub reason: String,
}

/// The dry run of an experiment.
#[derive(Clone, Debug)]
pub struct Plan {
    pub experiment: String,
    pub path: PathBuf,
    pub profile: Option<String>,
    pub code_version: String,
    pub jobs: Vec<PlannedJob>,
    /// Rows listed but not implemented (never run).
    pub not_implemented: Vec<Variant>,
    /// Expanded combinations that resolved to a job already in the plan.
    pub duplicates: usize,
}

/// Expands an experiment into jobs with ids (no status); returns them,
/// the trainer's code version and how many combinations were duplicates.
pub fn jobs(exp: &Experiment, profile: Option<&str>, resolver: &dyn Resolver) -> Result<(Vec<Job>, String, usize), SweepError> {
    let prof = exp.select_profile(profile)?;
    let resolved_base = resolve_base(exp, prof, resolver)?;
    check_exclude_keys(exp, &resolved_base)?;
    let specs = exp.expand_with_defaults(prof.map(|(_, p)| p), Some(&resolved_base));
    let mut texts = Vec::with_capacity(specs.len());
    for s in &specs {
        texts.push(toml::to_string(&s.config).map_err(|e| SweepError::Usage(format!("cannot write a job config: {e}")))?);
    }
    let res = resolver.resolve(&texts)?;
    if res.results.len() != specs.len() {
        return Err(SweepError::Usage(format!("the resolver answered {} configs for {}", res.results.len(), specs.len())));
    }
    let mut out = Vec::with_capacity(specs.len());
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    for (spec, r) in specs.iter().zip(&res.results) {
        let r = r.as_ref().map_err(|e| locate(exp, spec, &resolved_base, e))?;
        let id = job_id(&r.config, &r.data);
        if !seen.insert(id.clone()) {
            duplicates += 1;
            continue;
        }
        let (variant, params, seed) = (spec.variant.clone(), spec.params.clone(), spec.seed);
        out.push(Job { id, variant, params, seed, config: r.config.clone(), data: r.data.clone(), gpu: r.gpu });
    }
    Ok((out, res.code_version, duplicates))
}

/// The base config (with the profile's settings) as the trainer resolves
/// it: every job-config key with its default. A refusal points at the key
/// where the file sets it.
fn resolve_base(exp: &Experiment, prof: Option<(&str, &crate::experiment::Profile)>, resolver: &dyn Resolver) -> Result<Table, SweepError> {
    let mut base = exp.profiled_base(prof.map(|(_, p)| p));
    base.insert("seed".into(), Value::Integer(0));
    let base_text = toml::to_string(&base).map_err(|e| SweepError::Usage(format!("cannot write the base config: {e}")))?;
    let res = resolver.resolve(&[base_text])?;
    match &res.results[0] {
        Ok(r) => toml::from_str(&r.config).map_err(|e| SweepError::Usage(format!("the trainer's canonical config does not parse: {e}"))),
        Err(e) => {
            let profile_key = |k: &str| prof.map(|(n, _)| format!("profile.{n}.set.{k}"));
            let at = e.key.as_deref().or_else(|| named_override(exp, &e.message)).and_then(|k| {
                Some(format!("--set {k}"))
                    .filter(|_| exp.overrides.value_of(k).is_some())
                    .or_else(|| profile_key(k).filter(|w| exp.line_of(w).is_some()))
                    .or_else(|| Some(format!("base.{k}")).filter(|w| exp.line_of(w).is_some()))
            });
            let with = prof.map(|(n, _)| format!(" (profile {n})")).unwrap_or_default();
            Err(match &at {
                Some(w) => exp.error_at(w, format!("`{w}`: {}", problem(e))),
                None => exp.error_at("base", format!("the base config{with}: {}", e.message)),
            })
        }
    }
}

/// For a refusal without a key: the `--set` key its message starts with, or
/// whose leaf it calls an unknown field.
fn named_override<'a>(exp: &'a Experiment, message: &str) -> Option<&'a str> {
    let leaf = |k: &str| format!("`{}`", k.rsplit('.').next().unwrap_or(k));
    let names = |k: &str| message.starts_with(&format!("{k}:")) || (message.contains("unknown field") && message.contains(&leaf(k)));
    exp.overrides.set.iter().rev().find(|(k, _)| names(k)).map(|(k, _)| k.as_str())
}

/// The trainer's words without the `key: ` it starts with where it names a key.
fn problem(e: &Refusal) -> &str {
    let key = e.key.as_deref().or_else(|| e.message.split_once(": ").map(|(k, _)| k).filter(|k| !k.contains(' ')));
    key.and_then(|k| e.message.strip_prefix(k)).and_then(|m| m.strip_prefix(": ")).unwrap_or(&e.message)
}

/// Exclude rules must name something a job config can hold.
fn check_exclude_keys(exp: &Experiment, resolved_base: &Table) -> Result<(), SweepError> {
    let set_somewhere: std::collections::HashSet<String> =
        exp.named_keys().into_iter().filter(|(_, w)| !w.starts_with("exclude")).map(|(k, _)| k).collect();
    for (i, rule) in exp.exclude.iter().enumerate() {
        for (k, _) in rule {
            if k != "variant" && k != "seed" && get_path(resolved_base, k).is_none() && !set_somewhere.contains(k) {
                let (parent, valid) = valid_keys_at(resolved_base, k);
                return Err(exp.err(
                    &format!("exclude[{i}].{k}"),
                    format!("names no job config key (it would exclude nothing); valid keys under `{parent}`: {valid}"),
                ));
            }
        }
    }
    Ok(())
}

/// The parent of a dotted key and the keys the resolved config has there.
fn valid_keys_at<'a>(resolved: &Table, key: &'a str) -> (&'a str, String) {
    let parent = key.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
    let table = if parent.is_empty() { Some(resolved) } else { get_path(resolved, parent).and_then(|v| v.as_table()) };
    (parent, table.map(|t| t.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default())
}

/// Turns the trainer's refusal of one job into an error at the experiment
/// key that caused it: the key the trainer names, else a key the job config
/// does not have, else a key the message names, else the job's parameters.
fn locate(exp: &Experiment, spec: &crate::experiment::JobSpec, resolved_base: &Table, e: &Refusal) -> SweepError {
    let named = exp.named_keys();
    let where_of = |key: &str| named.iter().find(|(k, _)| k == key).map(|(_, w)| w.clone());
    let file_err = |w: &str, message: String| exp.error_at(w, message);
    if let Some(w) = e.key.as_deref().filter(|k| spec.set_keys.iter().any(|s| s == k)).and_then(where_of) {
        return file_err(&w, format!("`{w}`: {}", problem(e)));
    }
    for key in &spec.set_keys {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        if get_path(resolved_base, key).is_none() && e.message.contains("unknown field") && e.message.contains(&format!("`{leaf}`")) {
            let (parent, valid) = valid_keys_at(resolved_base, key);
            let w = where_of(key).unwrap_or_else(|| key.clone());
            let hint = if valid.is_empty() {
                // A table the base config lacks (another method's options): the trainer's own words.
                format!(" ({})", e.message.lines().last().unwrap_or(&e.message).trim())
            } else {
                format!("; valid keys under `{parent}`: {valid}")
            };
            return file_err(&w, format!("`{w}`: `{key}` is not a job config key{hint}"));
        }
    }
    let hit = spec.set_keys.iter().rev().find(|k| e.message.contains(k.as_str())).and_then(|k| where_of(k));
    exp.error_at(hit.as_deref().unwrap_or(""), format!("job {}: {}", describe(&spec.params), e.message))
}

/// One `--only KEY=VALUE` selection: `variant`, `seed`, or a job-config
/// key (dotted, matched against the resolved config, e.g. `model.tau=0.2`,
/// `method=icadx`). Several values of one key select any of them; several
/// keys select jobs that match all.
#[derive(Clone, Debug, PartialEq)]
pub struct Only {
    pub key: String,
    pub value: Value,
}

impl std::str::FromStr for Only {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (key, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected KEY=VALUE, e.g. variant=row7, seed=0, model.tau=0.2 or method=icadx"))?;
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(format!("`{s}`: the key is empty"));
        }
        // A TOML value where it parses (0.2, 3, true, "x"), else the bare word as a string.
        Ok(Only { key, value: dae_runfolder::settings::parse_value(raw.trim()) })
    }
}

impl Plan {
    /// Keeps the jobs the selections match (the `--only` options) and says
    /// how many it kept. A key no job has, or selections that match no job,
    /// are errors naming the valid keys or values.
    pub fn select(&mut self, only: &[Only]) -> Result<usize, SweepError> {
        if only.is_empty() {
            return Ok(self.jobs.len());
        }
        let configs: Vec<Table> = self
            .jobs
            .iter()
            .map(|j| toml::from_str::<Table>(&j.job.config).map_err(|e| SweepError::Usage(format!("a job's config does not parse: {e}"))))
            .collect::<Result<_, _>>()?;
        let value_of = |j: &PlannedJob, cfg: &Table, key: &str| -> Option<Value> {
            match key {
                "variant" => j.job.variant.clone().map(Value::String),
                "seed" => Some(Value::Integer(j.job.seed as i64)),
                k => get_path(cfg, k).cloned(),
            }
        };
        let mut keys: Vec<&str> = only.iter().map(|o| o.key.as_str()).collect();
        keys.dedup();
        for key in &keys {
            if self.jobs.iter().zip(&configs).all(|(j, c)| value_of(j, c, key).is_none()) {
                let top: Vec<String> = configs.first().map(|c| c.keys().cloned().collect()).unwrap_or_default();
                return Err(SweepError::Usage(format!(
                    "--only {key}=...: no job of {} has `{key}`; use variant, seed or a job-config key such as {}",
                    self.experiment,
                    top.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let keep: Vec<bool> = self
            .jobs
            .iter()
            .zip(&configs)
            .map(|(j, c)| {
                keys.iter().all(|key| {
                    let v = value_of(j, c, key);
                    only.iter().filter(|o| o.key == *key).any(|o| v.as_ref().is_some_and(|v| values_equal(v, &o.value)))
                })
            })
            .collect();
        if !keep.iter().any(|&k| k) {
            let mut seen: Vec<String> = Vec::new();
            for (j, c) in self.jobs.iter().zip(&configs) {
                if let Some(v) = value_of(j, c, keys[0]) {
                    let v = show(&v);
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
            }
            return Err(SweepError::Usage(format!(
                "--only matches none of the {} jobs of {}; `{}` takes {}",
                self.jobs.len(),
                self.experiment,
                keys[0],
                seen.join(", ")
            )));
        }
        let mut it = keep.into_iter();
        self.jobs.retain(|_| it.next().unwrap_or(false));
        Ok(self.jobs.len())
    }
}

/// The plan: every job with its status and what a run would do.
pub fn plan(
    exp: &Experiment,
    profile: Option<&str>,
    resolver: &dyn Resolver,
    results: &Path,
    policy: RerunPolicy,
) -> Result<Plan, SweepError> {
    let (jobs, code_version, duplicates) = jobs(exp, profile, resolver)?;
    check_contrasts(exp, &jobs)?;
    let planned = jobs
        .into_iter()
        .map(|job| {
            let rd = RunDir::new(results, &job.id);
            let status = rd.status_checked(&code_version, policy.check());
            let (action, mut reason) = policy.decide(&status, &code_version);
            if status == Status::Incomplete && !policy.force {
                reason = resume_reason(&rd, &code_version).unwrap_or(reason);
            }
            PlannedJob { job, status, action, reason }
        })
        .collect();
    let prof = exp.plan_label(exp.select_profile(profile)?.map(|(n, _)| n));
    Ok(Plan {
        experiment: exp.name.clone(),
        path: exp.path.clone(),
        profile: prof,
        code_version,
        jobs: planned,
        not_implemented: exp.variants.iter().filter(|v| !v.implemented).cloned().collect(),
        duplicates,
    })
}

/// Every `[[contrast]]` compares rows that share a seed (with the same
/// axis values) and, for that seed, one test set (the same data and split).
fn check_contrasts(exp: &Experiment, jobs: &[Job]) -> Result<(), SweepError> {
    let axes = |j: &Job| j.params.iter().filter(|(k, _)| k != "variant").cloned().collect::<Vec<_>>();
    for (i, c) in exp.contrasts.iter().enumerate() {
        let of = |v: &str| jobs.iter().filter(|j| j.variant.as_deref() == Some(v)).collect::<Vec<_>>();
        let (ja, jb) = (of(&c.a), of(&c.b));
        let pairs: Vec<(&Job, &Job)> = ja.iter().flat_map(|a| jb.iter().filter(|b| axes(b) == axes(a)).map(move |b| (*a, *b))).collect();
        let rows = exp.variant_names();
        if pairs.is_empty() {
            let problem = format!("rows `{}` and `{}` share no seed here (nothing to pair); rows: {rows}", c.a, c.b);
            return Err(exp.err(&format!("contrast[{i}]"), problem));
        }
        if let Some((a, _)) = pairs.iter().find(|(a, b)| a.data != b.data) {
            let problem = format!(
                "rows `{}` and `{}` have no common test samples (their data or split differ, e.g. at {}); rows: {rows}",
                c.a,
                c.b,
                a.describe()
            );
            return Err(exp.err(&format!("contrast[{i}]"), problem));
        }
    }
    Ok(())
}

/// Where an incomplete run resumes, from the trainer's progress record.
fn resume_reason(rd: &RunDir, code_version: &str) -> Option<String> {
    let p = rd.progress().filter(|p| p.checkpoint && rd.files().checkpoint().exists())?;
    let epoch = p.epoch;
    Some(if p.code_version == code_version {
        format!("started but never finished; resumes after epoch {epoch} (its checkpoint; the same dae-train build only)")
    } else {
        format!("started but never finished; its checkpoint (after epoch {epoch}) is of code {}, so it starts over", p.code_version)
    })
}

impl Plan {
    /// Counts by status word, in a fixed order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let words = ["done", "stale", "running", "incomplete", "failed", "damaged", "pending"];
        words.iter().map(|w| (*w, self.jobs.iter().filter(|j| j.status.word() == *w).count())).filter(|(_, n)| *n > 0).collect()
    }

    pub fn to_run(&self) -> usize {
        self.jobs.iter().filter(|j| j.action == Action::Run).count()
    }

    /// The human form: one line per job, then a summary.
    pub fn render(&self) -> String {
        let mut s = format!(
            "experiment {} ({}), profile {}, code {}\n",
            self.experiment,
            self.path.display(),
            self.profile.as_deref().unwrap_or("(none)"),
            self.code_version
        );
        for j in &self.jobs {
            s.push_str(&format!(
                "  {} {:<10} {:<4} {}  -- {}\n",
                j.job.short_id(),
                j.status.word(),
                if j.action == Action::Run { "run" } else { "skip" },
                j.job.describe(),
                j.reason
            ));
        }
        for v in &self.not_implemented {
            s.push_str(&format!(
                "  {:<12} {:<10} skip variant={} ({})  -- not implemented yet{}\n",
                "-",
                "-",
                v.name,
                v.label,
                v.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
            ));
        }
        let counts = self.counts().iter().map(|(w, n)| format!("{n} {w}")).collect::<Vec<_>>().join(", ");
        s.push_str(&format!(
            "{} jobs ({}); {} to run{}{}\n",
            self.jobs.len(),
            if counts.is_empty() { "none".into() } else { counts },
            self.to_run(),
            if self.not_implemented.is_empty() { String::new() } else { format!("; {} rows not implemented", self.not_implemented.len()) },
            if self.duplicates > 0 { format!("; {} duplicate combinations merged", self.duplicates) } else { String::new() }
        ));
        s
    }

    /// One JSON object per job: `id`, `status`, `params`, plus `action`,
    /// `reason`, `variant`, `seed`.
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for j in &self.jobs {
            let params: serde_json::Map<String, serde_json::Value> =
                j.job.params.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
            let o = serde_json::json!({
                "id": j.job.id,
                "status": j.status.word(),
                "params": params,
                "action": if j.action == Action::Run { "run" } else { "skip" },
                "reason": j.reason,
            });
            s.push_str(&o.to_string());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(variant: &str, seed: u64, data: &str) -> Job {
        let params = vec![("variant".to_string(), Value::String(variant.into())), ("seed".to_string(), Value::Integer(seed as i64))];
        Job {
            id: format!("{variant}-{seed}"),
            variant: Some(variant.into()),
            params,
            seed,
            config: String::new(),
            data: data.into(),
            gpu: None,
        }
    }

    const FILE: &str =
        "[experiment]\nname = \"t\"\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\n[[contrast]]\na = \"a\"\nb = \"b\"\n";

    #[test]
    fn contrasts_need_a_common_seed_and_common_test_samples_at_plan_time() {
        let exp = Experiment::parse(Path::new("t.toml"), FILE).unwrap();
        assert!(check_contrasts(&exp, &[job("a", 0, "d"), job("b", 0, "d"), job("b", 1, "d")]).is_ok());
        let e = check_contrasts(&exp, &[job("a", 0, "d"), job("b", 1, "d")]).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:7:") && e.contains("share no seed") && e.contains("rows: a, b"), "{e}");
        let e = check_contrasts(&exp, &[job("a", 0, "d"), job("b", 0, "other")]).unwrap_err().to_string();
        assert!(e.contains("no common test samples") && e.contains("variant=a seed=0"), "{e}");
    }
}
