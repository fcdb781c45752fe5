//! Reporters: consumers of [`Event`]s. The terminal reporter draws a
//! progress bar (done / running / failed, ETA) and prints each failure the
//! moment it happens with the path of its log; the JSON reporter writes one
//! event per line.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Outcome};

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The terminal reporter.
pub struct TerminalReporter {
    bar: ProgressBar,
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
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} ETA {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        let verbose = verbose || bar.is_hidden();
        TerminalReporter { bar, running: 0, failures: Vec::new(), passed: 0, verbose }
    }

    fn line(&self, s: String) {
        if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }

    fn update(&self) {
        self.bar.set_message(format!("done {} running {} failed {}", self.passed, self.running, self.failures.len()));
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
            Event::JobStarted { job, attempt, slot, .. } => {
                self.running += 1;
                if self.verbose {
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    self.line(format!("start {} {} on {slot}{again}", short(&job.id), job.desc));
                }
            }
            Event::JobWaiting { job } => self.line(format!("wait  {} {}: another runner holds it", short(&job.id), job.desc)),
            Event::JobRetrying { job, attempt, outcome, log } => {
                self.running = self.running.saturating_sub(1);
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
            Event::RunFinished { summary: s } => {
                self.bar.finish_and_clear();
                let mut parts = vec![format!("{} passed", s.passed), format!("{} failed", s.failed)];
                for (n, w) in [
                    (s.skipped, "skipped"),
                    (s.done_elsewhere, "done by another runner"),
                    (s.interrupted, "interrupted"),
                    (s.not_started, "not started"),
                    (s.retries, "retries"),
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
            }
        }
        self.update();
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
