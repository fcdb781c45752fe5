//! Training throughput of DAE-GCN (Table 2 row 7; `quick-row1`: the vanilla
//! encoder + classifier alone) in candle, side by side
//! with the same model in PyTorch on the same machine in the same run.
//!
//! `cargo bench -p dae-train --bench throughput [-- --settings quick,resnet34-224] [--cuda] [--batch 32] [--precision bf16]`
//!
//! `--precision bf16` runs candle's side as `optim.precision = "bf16"` and
//! PyTorch's under `torch.autocast(bfloat16)` (on the CPU candle's bf16 is
//! an emulation: it measures the cost of the roundings, not a speed-up).
//! With `--cuda` peak memory is the GPU's, read by `nvidia-smi` (every
//! 50 ms while a side runs, less the reading before it started; the CUDA
//! context included) on both sides alike.
//!
//! `DAE_CONV_BACKWARD=released` (on a GPU) computes conv2d gradients with
//! candle's released backward instead of the vendored patch's forward
//! operations.
//!
//! `DAE_CONV=candle` runs candle's own convolutions instead of the CPU gemm
//! and direct paths of `dae_model::conv`, `DAE_BN=candle` candle's batch
//! norm instead of the fused one of `dae_model::norm` (run the bench with
//! and without to compare them side by side; `--one quick` runs the candle
//! side of one setting alone and prints samples/s and peak MiB).
//!
//! Each setting runs in its own process (so peak memory is per setting):
//! warm-up steps, then timed steps of forward + backward + Adam on random
//! inputs. The PyTorch side is `tools/torch_throughput.py` run by
//! `$DAE_PYTHON` (default `/usr/bin/python3`, where Debian's `python3-torch`
//! and `libopenblas0-pthread` install; it runs OpenBLAS on one thread beside
//! torch's own); it shows `n/a` where torch is missing.

use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ParamsAdamW, VarBuilder, VarMap};
use dae_data::{AttrStats, Vocabulary};
use dae_model::{init_weights, DaeGcn, EncoderKind, ModelConfig, Precision};
use dae_train::adam::{named_vars, Adam};

struct Setting {
    name: &'static str,
    /// Table 2 row 7 (everything on) or row 1 (encoder and classifier only).
    row7: bool,
    encoder: EncoderKind,
    size: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
}

const SETTINGS: &[Setting] = &[
    Setting { name: "quick", row7: true, encoder: EncoderKind::SmallCnn, size: 64, batch: 32, warmup: 3, steps: 15 },
    Setting { name: "quick-row1", row7: false, encoder: EncoderKind::SmallCnn, size: 64, batch: 32, warmup: 3, steps: 15 },
    Setting { name: "resnet34-224", row7: true, encoder: EncoderKind::Resnet34, size: 224, batch: 8, warmup: 1, steps: 3 },
];

/// What the command line chose beside the settings.
#[derive(Clone, Copy)]
struct Options {
    cuda: bool,
    precision: Precision,
    /// Instead of each setting's batch size.
    batch: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let value = |flag: &str| {
            args.iter().position(|a| a == flag).map(|i| args.get(i + 1).cloned().unwrap_or_else(|| panic!("{flag} needs a value")))
        };
        let precision = match value("--precision").as_deref() {
            None | Some("f32") => Precision::F32,
            Some("bf16") => Precision::Bf16,
            Some(other) => panic!("--precision {other}: expected f32 or bf16"),
        };
        let batch = value("--batch").map(|b| b.parse().expect("--batch: a whole number"));
        Options { cuda: args.iter().any(|a| a == "--cuda"), precision, batch }
    }

    /// The flags that pass these options on to a `--one` run and to the PyTorch script.
    fn flags(&self) -> Vec<String> {
        let mut f = vec!["--precision".to_string(), self.precision.name().to_string()];
        if let Some(b) = self.batch {
            f.extend(["--batch".to_string(), b.to_string()]);
        }
        f
    }
}

/// Runs one setting in this process; prints `samples_per_s peak_mb`
/// (peak host RSS on the CPU; on a GPU, 0: the parent reads the GPU's).
fn run_one(s: &Setting, dev: &Device, o: Options) -> candle_core::Result<()> {
    let dev = dev.clone();
    let batch = o.batch.unwrap_or(s.batch);
    let vocab = Vocabulary::default();
    // Statistics of a plausible training split: every attribute seen, shapes co-occurring with margins.
    let a = vocab.len();
    let stats = AttrStats {
        names: vocab.names().iter().map(|s| s.to_string()).collect(),
        n: 1000,
        t: vec![100; a],
        m: (0..a)
            .map(|i| {
                (0..a)
                    .map(|j| {
                        if i == j {
                            100
                        } else if (i < 4) != (j < 4) {
                            45
                        } else {
                            0
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    let mut cfg = ModelConfig { encoder: s.encoder, width: 16, ..ModelConfig::default() };
    if !s.row7 {
        cfg = ModelConfig { disentangle: false, attributes: dae_model::AttributeMode::None, rec: false, h_i: false, ..cfg };
    }
    let vm = VarMap::new();
    let model = DaeGcn::new(&cfg, s.size, &vocab, &stats, o.precision, VarBuilder::from_varmap(&vm, DType::F32, &dev)).expect("model");
    init_weights(&vm, 0)?;
    // The trainer's optimiser.
    let mut opt = Adam::new(named_vars(&vm, |_| true), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let x = Tensor::randn(0f32, 1.0, (batch, 1, s.size, s.size), &dev)?;
    let y = Tensor::from_vec((0..batch).map(|i| (i % 2) as f32).collect::<Vec<_>>(), batch, &dev)?;
    let attrs = Tensor::from_vec(
        (0..batch).flat_map(|i| (0..a).map(move |j| ((j == i % 4) || (j == 4 + i % 5)) as u8 as f32)).collect::<Vec<_>>(),
        (batch, a),
        &dev,
    )?;
    let clusters: Vec<_> = vocab.clusters().into_iter().map(|(_, r)| r).collect();
    let step = |opt: &mut Adam| -> candle_core::Result<()> {
        let o = model.forward_t(&x, true)?;
        let mut l = dae_losses::bce_with_logits(&o.logits, &y)?;
        if let Some(s) = &o.attr_scores {
            l = (l + dae_losses::cluster_softmax_ce(s, &attrs, &clusters)?)?;
        }
        if let Some(r) = &o.recon {
            l = (l + dae_losses::l1_reconstruction(&x, r)?)?;
        }
        opt.backward_step(&l)
    };
    // A GPU step is short: more steps there, so that timing noise stays small.
    let (warmup, steps) = if dev.is_cpu() { (s.warmup, s.steps) } else { (s.warmup * 3, s.steps * 10) };
    for _ in 0..warmup {
        step(&mut opt)?;
    }
    dev.synchronize()?;
    let t = Instant::now();
    for _ in 0..steps {
        step(&mut opt)?;
    }
    dev.synchronize()?;
    let sps = (steps * batch) as f64 / t.elapsed().as_secs_f64();
    println!("{sps:.2} {:.0}", if dev.is_cpu() { dae_train::peak_memory_mb() } else { 0.0 });
    Ok(())
}

fn parse(out: &[u8]) -> Option<(f64, f64)> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().rev().find(|l| l.split_whitespace().count() == 2)?;
    let mut it = line.split_whitespace().map(|v| v.parse::<f64>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// The GPUs' memory in use now (MiB, all devices), by `nvidia-smi`.
fn gpu_used_mb() -> Option<f64> {
    let o = Command::new("nvidia-smi").args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse::<f64>().ok()).sum()
}

/// Runs one side to its end; on a GPU, with its peak device memory read
/// by `nvidia-smi` while it runs (less the reading before it started).
fn run_side(cmd: &mut Command, cuda: bool) -> std::io::Result<(std::process::Output, Option<f64>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let base = if cuda { gpu_used_mb() } else { None };
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let poll = sc.spawn(|| {
            let mut peak = None::<f64>;
            while base.is_some() && !done.load(Ordering::Relaxed) {
                peak = [peak, gpu_used_mb()].into_iter().flatten().reduce(f64::max);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak.zip(base).map(|(p, b)| p - b)
        });
        let out = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output();
        done.store(true, Ordering::Relaxed);
        Ok((out?, poll.join().expect("the memory poll")))
    })
}

/// `samples_per_s peak_mb` of a side's output; on a GPU the polled peak replaces the printed one.
fn measured(side: &str, setting: &str, run: std::io::Result<(std::process::Output, Option<f64>)>) -> Option<(f64, f64)> {
    let (out, gpu_peak) = run.ok()?;
    if !out.status.success() {
        eprintln!("{side} {setting}: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    parse(&out.stdout).map(|(sps, mb)| (sps, gpu_peak.unwrap_or(mb)))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test") {
        return;
    }
    let opts = Options::parse(&args);
    if let Some(i) = args.iter().position(|a| a == "--one") {
        // As the trainer does (set DAE_BENCH_UNTUNED=1 to measure without it).
        if std::env::var_os("DAE_BENCH_UNTUNED").is_none() {
            dae_train::tune_process();
        }
        dae_train::conv_backward_from_env();
        let s = SETTINGS.iter().find(|s| s.name == args[i + 1]).expect("known setting");
        let dev = if opts.cuda { Device::new_cuda(0).expect("a CUDA device (build with --features cuda)") } else { Device::Cpu };
        run_one(s, &dev, opts).expect("benchmark step");
        return;
    }
    let wanted: Vec<String> = args
        .iter()
        .position(|a| a == "--settings")
        .map(|i| args[i + 1].split(',').map(String::from).collect())
        .unwrap_or_else(|| SETTINGS.iter().map(|s| s.name.to_string()).collect());
    let (python, script) = torch_script();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let where_ = if opts.cuda { "CUDA device 0".to_string() } else { format!("CPU, {threads} threads") };
    let mem = if opts.cuda { "GPU memory by nvidia-smi, context included" } else { "host RSS" };
    println!("training throughput, DAE-GCN row 7 (quick-row1: row 1), {where_}, {} (samples/s; peak MiB: {mem})", opts.precision.name());
    println!("{:<14} {:>6} {:>14} {:>10} {:>14} {:>10} {:>8}", "setting", "batch", "candle", "MiB", "pytorch", "MiB", "ratio");
    for s in SETTINGS.iter().filter(|s| wanted.iter().any(|w| w == s.name)) {
        let me = std::env::current_exe().unwrap();
        let mut own = vec!["--one".to_string(), s.name.to_string()];
        own.extend(opts.flags());
        if opts.cuda {
            own.push("--cuda".into());
        }
        let candle = measured("candle", s.name, run_side(Command::new(&me).args(&own), opts.cuda));
        let device = if opts.cuda { "cuda" } else { "cpu" };
        let mut torch = Command::new(&python);
        torch.arg(&script).args(["--setting", s.name, "--threads", &threads.to_string(), "--device", device]).args(opts.flags());
        let torch = measured("pytorch", s.name, run_side(&mut torch, opts.cuda));
        let fmt = |v: Option<(f64, f64)>| v.map(|(a, b)| (format!("{a:.1}"), format!("{b:.0}"))).unwrap_or(("n/a".into(), "".into()));
        let ((cs, cm), (ts, tm)) = (fmt(candle), fmt(torch));
        let ratio = match (candle, torch) {
            (Some((a, _)), Some((b, _))) => format!("{:.2}", a / b),
            _ => "n/a".into(),
        };
        println!("{:<14} {:>6} {:>14} {:>10} {:>14} {:>10} {:>8}", s.name, opts.batch.unwrap_or(s.batch), cs, cm, ts, tm, ratio);
    }
    println!("ratio = candle / pytorch (1.0 = as fast as PyTorch)");
}

/// The Python and the PyTorch script: the script beside the current folder
/// when run from a checkout (or a copy of one on a GPU machine), else where
/// this was built; Debian's python3-torch lives under /usr/bin/python3 (a
/// pyenv python3 first on PATH lacks it), `$DAE_PYTHON` overrides.
fn torch_script() -> (String, String) {
    let script = if std::path::Path::new("tools/torch_throughput.py").exists() {
        "tools/torch_throughput.py".to_string()
    } else {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/torch_throughput.py").to_string()
    };
    let python = std::env::var("DAE_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    });
    (python, script)
}
