//! `dae-mutate`: bounded mutation ("fuzz-style") testing of the parsers a
//! user's files reach. A dev-dependency only: no production crate uses it.
//!
//! A [`Campaign`] takes a corpus of valid inputs, derives thousands of
//! mutated ones from a fixed seed ([`Mutator`]: bit flips, interesting
//! integers written over size fields, cuts, deletions, insertions,
//! duplications, splices of syntax tokens), feeds each to the parser under
//! test, and fails on the first input that
//!
//! - panics (the panic is caught and reported with the input),
//! - takes longer than the per-input time bound (a quadratic blow-up; the
//!   bound is generous, this is not a benchmark), or ten times that (a
//!   hang: a watchdog thread saves the input and ends the test process),
//! - allocates more, at its peak, than the caller's cap for an input of
//!   that size (only in a test binary that installs [`CountingAlloc`] as its
//!   global allocator; the cap is how "allocations are bounded by the
//!   file's real size" is checked),
//! - or fails with an error whose message does not satisfy the caller's
//!   check (empty, or not naming the file).
//!
//! [`limit_file_size`] makes a child process meet a full disk (for the
//! tests of what a failed write does).
//!
//! A failing input is written to `target/mutate-failures/<campaign>-<n>.bin`
//! so that it can be replayed. Everything is deterministic: the same seed
//! gives the same inputs on every machine.
//!
//! ```
//! use dae_mutate::Campaign;
//! let stats = Campaign::new("u8 list", vec![b"1,2,3".to_vec()])
//!     .cases(500)
//!     .run(|bytes| {
//!         let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
//!         text.split(',').map(|s| s.trim().parse::<u8>().map_err(|e| format!("`{s}`: {e}"))).collect::<Result<Vec<_>, _>>()
//!     });
//! assert_eq!(stats.inputs, 500);
//! assert!(stats.rejected > 0);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod disk;
mod mutator;

pub use disk::limit_file_size;
pub use mutator::Mutator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// A global allocator that keeps, per thread, the bytes allocated and not
/// yet freed and their peak, so that a campaign can bound the memory one
/// input makes the parser ask for. Install it in a test binary with
/// `#[global_allocator] static A: dae_mutate::CountingAlloc = dae_mutate::CountingAlloc;`.
pub struct CountingAlloc;

fn grew(by: usize) {
    let live = LIVE.with(|l| {
        let v = l.get().saturating_add(by);
        l.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

fn shrank(by: usize) {
    LIVE.with(|l| l.set(l.get().saturating_sub(by)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping only touches const-initialised thread-locals (no allocation).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            shrank(layout.size() - new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The peak of this thread's live allocations while `f` runs, above what
/// was live when it started (0 unless [`CountingAlloc`] is installed).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(|p| p.get()) - base)
}

/// What a campaign saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mutated inputs fed to the parser.
    pub inputs: usize,
    /// Of those, how many the parser accepted.
    pub accepted: usize,
    /// And how many it rejected with an error.
    pub rejected: usize,
    /// The largest peak allocation of one input, in bytes (0 without
    /// [`CountingAlloc`]).
    pub max_alloc: usize,
    /// The slowest input.
    pub slowest: Duration,
}

type ErrCheck = Box<dyn Fn(&str) -> Result<(), String>>;
type AllocCap = Box<dyn Fn(usize) -> usize>;

/// A bounded mutation campaign against one parser.
pub struct Campaign {
    name: String,
    corpus: Vec<Vec<u8>>,
    cases: usize,
    seed: u64,
    per_input: Duration,
    alloc_cap: Option<AllocCap>,
    error_check: Option<ErrCheck>,
    tokens: Vec<Vec<u8>>,
}

impl Campaign {
    /// A campaign of 2,000 inputs, 2 s per input, over `corpus` (valid
    /// inputs, at least one).
    pub fn new(name: &str, corpus: Vec<Vec<u8>>) -> Self {
        assert!(!corpus.is_empty(), "campaign `{name}`: the corpus is empty");
        Campaign {
            name: name.into(),
            corpus,
            cases: 2_000,
            seed: 0x5eed_da3_6c17,
            per_input: Duration::from_secs(2),
            alloc_cap: None,
            error_check: None,
            tokens: Vec::new(),
        }
    }

    /// How many mutated inputs to try.
    pub fn cases(mut self, n: usize) -> Self {
        self.cases = n;
        self
    }

    /// The mutation seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The time bound per input.
    pub fn per_input(mut self, d: Duration) -> Self {
        self.per_input = d;
        self
    }

    /// The most bytes the parser may have allocated at once for an input of
    /// `len` bytes (checked where [`CountingAlloc`] is installed).
    pub fn alloc_cap(mut self, cap: impl Fn(usize) -> usize + 'static) -> Self {
        self.alloc_cap = Some(Box::new(cap));
        self
    }

    /// A check of each error message (for instance that it names the file).
    pub fn error_check(mut self, check: impl Fn(&str) -> Result<(), String> + 'static) -> Self {
        self.error_check = Some(Box::new(check));
        self
    }

    /// Syntax tokens to splice in (for text formats: quotes, brackets,
    /// separators, numbers out of range); adds to those given before.
    pub fn tokens(mut self, tokens: &[&str]) -> Self {
        self.tokens.extend(tokens.iter().map(|t| t.as_bytes().to_vec()));
        self
    }

    /// Runs the campaign; panics (failing the test) on the first bad input,
    /// naming the campaign, the input's number and where it was saved. An
    /// input that hangs (ten times the bound, at least 1 s) is saved by a watchdog thread,
    /// which then ends the test process with an error.
    pub fn run<T, E: std::fmt::Display>(self, parse: impl Fn(&[u8]) -> Result<T, E>) -> Stats {
        let mut m = Mutator::new(self.seed, self.tokens.clone());
        let mut stats = Stats::default();
        let hang = (self.per_input * 10).max(Duration::from_secs(1));
        let watch = Watchdog::start(self.failure_file(usize::MAX).with_extension("hang.bin"), hang, &self.name);
        for n in 0..self.cases {
            let input = m.mutate(&self.corpus[n % self.corpus.len()]);
            watch.arm(&input);
            let start = Instant::now();
            let (outcome, peak) = peak_of(|| catch_unwind(AssertUnwindSafe(|| parse(&input).map(drop).map_err(|e| e.to_string()))));
            let took = start.elapsed();
            let fail = |why: String| self.fail(n, &input, &why);
            match outcome {
                Err(p) => fail(format!("panicked: {}", panic_text(&p))),
                Ok(Ok(())) => stats.accepted += 1,
                Ok(Err(msg)) => {
                    stats.rejected += 1;
                    if msg.trim().is_empty() {
                        fail("failed with an empty error message".into());
                    }
                    if let Some(Err(why)) = self.error_check.as_ref().map(|c| c(&msg)) {
                        fail(format!("error message `{msg}`: {why}"));
                    }
                }
            }
            if took > self.per_input {
                fail(format!("took {took:?}, more than the bound of {:?}", self.per_input));
            }
            if let Some(cap) = self.alloc_cap.as_ref().map(|c| c(input.len())) {
                if peak > cap {
                    fail(format!("allocated {peak} bytes at once for a {}-byte input (cap {cap})", input.len()));
                }
            }
            watch.disarm();
            stats.inputs += 1;
            stats.max_alloc = stats.max_alloc.max(peak);
            stats.slowest = stats.slowest.max(took);
        }
        eprintln!("mutation campaign `{}`: {stats:?}", self.name);
        stats
    }

    /// Where input `n` is saved when it fails.
    fn failure_file(&self, n: usize) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mutate-failures");
        dir.join(format!("{}-{n}.bin", self.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")))
    }

    fn fail(&self, n: usize, input: &[u8], why: &str) -> ! {
        let file = self.failure_file(n);
        let saved = save(&file, input);
        let at = match saved {
            Ok(()) => format!("saved to {}", file.display()),
            Err(e) => format!("could not be saved: {e}"),
        };
        let head: String = String::from_utf8_lossy(&input[..input.len().min(160)]).into();
        panic!("mutation campaign `{}`, input {n} ({} bytes, {at}) {why}\nfirst bytes: {head:?}", self.name, input.len());
    }
}

fn save(file: &std::path::Path, input: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(file.parent().expect("a folder")).and_then(|_| std::fs::write(file, input))
}

/// Ends the process when one input runs far past its bound (a hang cannot
/// be interrupted from the same thread), after saving the input.
struct Watchdog {
    current: Arc<Mutex<Option<(Instant, Vec<u8>)>>>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(file: PathBuf, limit: Duration, name: &str) -> Watchdog {
        let current: Arc<Mutex<Option<(Instant, Vec<u8>)>>> = Arc::new(Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let (cur, stop, name) = (Arc::clone(&current), Arc::clone(&done), name.to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let guard = cur.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((since, input)) = guard.as_ref().filter(|(since, _)| since.elapsed() > limit) {
                    let at = save(&file, input).map(|_| file.display().to_string()).unwrap_or_else(|e| format!("(not saved: {e})"));
                    eprintln!(
                        "mutation campaign `{name}`: an input has run for {:?}, over {limit:?}: a hang; saved to {at}",
                        since.elapsed()
                    );
                    std::process::exit(101);
                }
            }
        });
        Watchdog { current, done }
    }

    fn arm(&self, input: &[u8]) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), input.to_vec()));
    }

    fn disarm(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm();
        self.done.store(true, Ordering::Relaxed);
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-text panic)".into())
}

#[cfg(test)]
#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "allocated")]
    fn an_allocation_beyond_the_cap_fails_the_campaign() {
        // A "size field" in the first byte, trusted: 2^k KiB.
        Campaign::new("sizes", vec![vec![1]]).cases(300).alloc_cap(|len| 64 * len + 4096).run(|b: &[u8]| -> Result<usize, String> {
            let k = *b.first().ok_or("empty")? as u32 % 24;
            Ok(vec![0u8; 1024 << k].len())
        });
    }

    #[test]
    fn allocations_are_counted_per_input() {
        let stats = Campaign::new("counted", vec![b"abc".to_vec()])
            .cases(50)
            .alloc_cap(|_| 1 << 20)
            .run(|b: &[u8]| -> Result<usize, String> { Ok(vec![0u8; 1000 + b.len()].len()) });
        assert!(stats.max_alloc >= 1000 && stats.max_alloc < 1 << 20, "{stats:?}");
        assert_eq!((stats.accepted, stats.rejected), (50, 0));
    }

    #[test]
    #[should_panic(expected = "panicked: index out of bounds")]
    fn a_panicking_parser_fails_the_campaign() {
        Campaign::new("indexes", vec![vec![3, 1, 2, 3]]).cases(200).run(|b: &[u8]| -> Result<u8, String> {
            let n = *b.first().ok_or("empty")? as usize;
            Ok(b[n])
        });
    }

    #[test]
    #[should_panic(expected = "does not name the file")]
    fn an_error_check_applies_to_every_rejection() {
        Campaign::new("names", vec![b"12".to_vec()])
            .cases(200)
            .error_check(|m| if m.starts_with("x.txt:") { Ok(()) } else { Err("does not name the file".into()) })
            .run(|b| std::str::from_utf8(b).map_err(|e| e.to_string())?.parse::<u8>().map_err(|e| e.to_string()));
    }

    #[test]
    #[should_panic(expected = "more than the bound")]
    fn a_slow_input_fails_the_campaign() {
        Campaign::new("slow", vec![b"a".to_vec()]).cases(3).per_input(Duration::from_millis(1)).run(|_| -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(5));
            Ok(())
        });
    }

    /// Run only by `a_hanging_input_ends_the_process_with_its_input_saved`.
    #[test]
    #[ignore]
    fn hang_probe() {
        Campaign::new("hang", vec![b"x".to_vec()]).cases(1).per_input(Duration::from_millis(50)).run(|_| -> Result<(), String> {
            loop {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    #[test]
    fn a_hanging_input_ends_the_process_with_its_input_saved() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "tests::hang_probe", "--nocapture"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(101), "{err}");
        assert!(err.contains("mutation campaign `hang`") && err.contains("a hang; saved to"), "{err}");
    }

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = b"[train]\nepochs = 12\n".to_vec();
        let (mut a, mut b, mut c) = (Mutator::new(7, vec![]), Mutator::new(7, vec![]), Mutator::new(8, vec![]));
        let xs: Vec<_> = (0..50).map(|_| a.mutate(&corpus)).collect();
        let ys: Vec<_> = (0..50).map(|_| b.mutate(&corpus)).collect();
        let zs: Vec<_> = (0..50).map(|_| c.mutate(&corpus)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().filter(|x| **x != corpus).count() >= 45, "almost every input differs from its seed");
    }
}
