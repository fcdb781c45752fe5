//! Reporters: consumers of [`Event`]s. The terminal reporter draws a
//! progress bar (done / running / failed, ETA) with a line per running job
//! (its epoch, last validation AUC and ETA from the trainer's
//! `progress.json`, reread every second), and prints each failure the moment
//! it happens with the path of its log; the JSON reporter writes one event
//! per line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dae_runfolder::{files, read_json, ProgressRecord};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Outcome};

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// What the bar's message shows: the counts, then each running job's
/// progress file.
#[derive(Default)]
struct Live {
    counts: String,
    /// Short id -> (description, `progress.json`).
    running: BTreeMap<String, (String, PathBuf)>,
}

impl Live {
    fn message(&self) -> String {
        let mut m = self.counts.clone();
        for (id, (desc, progress)) in &self.running {
            let at = read_json::<ProgressRecord>(progress).map_or_else(|_| "starting".to_string(), |p| p.summary());
            m.push_str(&format!("\n  {id} {desc}: {at}"));
        }
        m
    }
}

/// The terminal reporter.
pub struct TerminalReporter {
    bar: ProgressBar,
    live: Arc<Mutex<Live>>,
    /// Stops the thread that redraws the running jobs' progress.
    stop_redraw: Arc<AtomicBool>,
    running: usize,
    /// The FAIL lines, printed again when the run ends.
    failures: Vec<String>,
    passed: usize,
    verbose: bool,
}

impl TerminalReporter {
    /// `verbose` also prints each start and finish (always printed when
    /// stderr is not a terminal, where no bar is drawn).
    pub fn new(verbose: bool) -> TerminalReporter {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        let verbose = verbose || bar.is_hidden();
        let (live, stop_redraw) = (Arc::new(Mutex::new(Live::default())), Arc::new(AtomicBool::new(false)));
        if !bar.is_hidden() {
            let (bar, live, stop) = (bar.clone(), Arc::clone(&live), Arc::clone(&stop_redraw));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    let message = live.lock().map(|l| l.message()).unwrap_or_default();
                    bar.set_message(message);
                }
            });
        }
        TerminalReporter { bar, live, stop_redraw, running: 0, failures: Vec::new(), passed: 0, verbose }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn line(&self, s: String) {
        if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }

    fn update(&self) {
        let mut live = self.live();
        live.counts = format!("done {} running {} failed {}", self.passed, self.running, self.failures.len());
        self.bar.set_message(live.message());
    }

    pub fn report(&mut self, ev: &Event) {
        match ev {
            Event::RunStarted { total, to_run, skipped } => {
                self.bar.set_length(*to_run as u64);
                self.line(format!("{total} jobs: {to_run} to run, {skipped} skipped (see `cargo xtask plan` for why)"));
            }
            Event::JobSkipped { job, reason } => {
                if self.verbose && reason.contains("another runner") {
                    self.line(format!("skip  {} {} ({reason})", short(&job.id), job.desc));
                }
                if reason.contains("another runner") {
                    self.bar.inc(1);
                }
            }
            Event::JobStarted { job, attempt, slot, log } => {
                self.running += 1;
                let progress = log.with_file_name(files::PROGRESS);
                self.live().running.insert(short(&job.id).to_string(), (job.desc.clone(), progress));
                if self.verbose {
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    self.line(format!("start {} {} on {slot}{again}", short(&job.id), job.desc));
                }
            }
            Event::JobWaiting { job } => self.line(format!("wait  {} {}: another runner holds it", short(&job.id), job.desc)),
            Event::JobRetrying { job, attempt, outcome, log } => {
                self.running = self.running.saturating_sub(1);
                self.live().running.remove(short(&job.id));
                self.line(format!(
                    "retry {} {}: attempt {attempt} {}; log: {}",
                    short(&job.id),
                    job.desc,
                    outcome.describe(),
                    log.display()
                ));
            }
            Event::JobFinished { job, outcome, seconds, log, .. } => {
                self.running = self.running.saturating_sub(1);
                self.live().running.remove(short(&job.id));
                self.bar.inc(1);
                match outcome {
                    Outcome::Pass => {
                        self.passed += 1;
                        if self.verbose {
                            self.line(format!("pass  {} {} in {seconds:.1} s", short(&job.id), job.desc));
                        }
                    }
                    Outcome::Interrupted => self.line(format!("stop  {} {}: {}", short(&job.id), job.desc, outcome.describe())),
                    _ => {
                        let line = format!("FAIL  {} {}: {}; log: {}", short(&job.id), job.desc, outcome.describe(), log.display());
                        self.line(line.clone());
                        self.failures.push(line);
                    }
                }
            }
            Event::Stopping { reason } => self.line(format!("stopping: {reason}")),
            Event::RunFinished { summary } => self.finish(summary),
        }
        self.update();
    }

    /// The summary line, after the failures again with their logs.
    fn finish(&mut self, s: &crate::events::Summary) {
        self.stop_redraw.store(true, Ordering::Relaxed);
        self.bar.finish_and_clear();
        let mut parts = vec![format!("{} passed", s.passed), format!("{} failed", s.failed)];
        for (n, w) in [
            (s.skipped, "skipped"),
            (s.done_elsewhere, "done by another runner"),
            (s.interrupted, "interrupted"),
            (s.not_started, "not started"),
            (s.retries, "retries"),
            (s.detached, "left on Slurm (detached)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {w}"));
            }
        }
        if !self.failures.is_empty() {
            eprintln!("failed jobs ({}), with their logs:", self.failures.len());
            for f in &self.failures {
                eprintln!("  {f}");
            }
        }
        eprintln!("run finished in {:.1} s: {}", s.seconds, parts.join(", "));
        if s.detached > 0 {
            eprintln!(
                "the submitted jobs run on without this runner: `status` shows where they stand; \
                 `run --backend slurm` again follows them to their end and retries the failed ones"
            );
        }
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        self.stop_redraw.store(true, Ordering::Relaxed);
    }
}

/// Writes each event as one JSON line.
pub struct JsonReporter<W: Write> {
    pub out: W,
}

impl<W: Write> JsonReporter<W> {
    pub fn report(&mut self, ev: &Event) {
        let _ = writeln!(self.out, "{}", serde_json::to_string(ev).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_message_shows_each_running_jobs_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let p = ProgressRecord {
            epoch: 2,
            epochs: 8,
            training_done: false,
            loss: 0.25,
            val_auc: 0.8125,
            best_auc: 0.8125,
            best_epoch: 2,
            epoch_seconds: 10.0,
            checkpoint: true,
            code_version: "v".into(),
            updated_unix: 0,
        };
        std::fs::write(&a, serde_json::to_string(&p).unwrap()).unwrap();
        let mut live = Live { counts: "done 1 running 2 failed 0".into(), ..Live::default() };
        live.running.insert("aaaa".into(), ("variant=row7 seed=0".into(), a));
        live.running.insert("bbbb".into(), ("variant=row1 seed=0".into(), b));
        assert_eq!(
            live.message(),
            "done 1 running 2 failed 0\n  aaaa variant=row7 seed=0: epoch 2/8, loss 0.2500, val AUC 0.812, 10.0 s/epoch, ETA 1 min 00 s\n  bbbb variant=row1 seed=0: starting"
        );
    }
}
