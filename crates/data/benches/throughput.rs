//! Throughput of the synthetic generator (64 and 224 pixels, 1 and 2
//! threads), of decoding one real CBIS-DDSM DICOM, and DICOM decoding per
//! transfer syntax beside pydicom: each file of `datasets/dicom-conformance`
//! (and the real CBIS-DDSM files where present) read, decoded and put
//! through the modality LUT, by us and by `tools/dicom-conformance/decode_bench.py`
//! (pydicom with pylibjpeg and pyjpegls; `$DAE_PYTHON`, default `python3`;
//! the column reads n/a without them).
//!
//! `cargo bench -p dae-data --bench throughput` (`-- --dicom` for the
//! DICOM comparison alone)
//! Each figure is the best of several repetitions; the 1- and 2-thread runs
//! alternate so that both see the same machine load.

use std::path::Path;
use std::time::Instant;

use dae_data::dicom_io::{read_dicom, read_dicom_modality, transfer_syntax_of, DicomOptions};
use dae_data::synth::generate;
use dae_data::{SplitSpec, SynthParams};

fn rate(threads: usize, size: usize, patients: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let params = SynthParams { patients, image_size: size, ..SynthParams::default() };
    let spec = SplitSpec::default();
    pool.install(|| {
        let t = Instant::now();
        let s = generate(&params, &spec).unwrap();
        s.len() as f64 / t.elapsed().as_secs_f64()
    })
}

fn main() {
    // Skip when run by `cargo test --benches` style smoke invocations.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    if std::env::args().any(|a| a == "--dicom") {
        return against_pydicom();
    }
    println!("synthetic generation (samples/s, best of 9, 1- and 2-thread runs alternating)");
    println!("{:>6} {:>10} {:>10} {:>8}", "size", "1 thread", "2 threads", "speed-up");
    for (size, patients) in [(64, 1200), (224, 150)] {
        let (mut best1, mut best2) = (0f64, 0f64);
        for _ in 0..9 {
            best1 = best1.max(rate(1, size, patients));
            best2 = best2.max(rate(2, size, patients));
        }
        println!("{size:>6} {best1:>10.0} {best2:>10.0} {:>7.2}x", best2 / best1);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cbis-ddsm-dicom/Mass-Test_P_00173_LEFT_CC/1-130.dcm");
    if p.exists() {
        let mut best = f64::INFINITY;
        let mut dims = (0, 0);
        for _ in 0..5 {
            let t = Instant::now();
            let img = read_dicom(&p, &DicomOptions::default()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            dims = (img.height, img.width);
        }
        println!("DICOM decode (RLE Lossless, {} x {}): {:.3} s (best of 5)", dims.0, dims.1, best);
    } else {
        println!("DICOM decode: skipped, {} is absent", p.display());
    }
    against_pydicom();
}

/// The best of `n` decodes of `file` (seconds).
fn ours(file: &Path, n: usize) -> Option<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            read_dicom_modality(file).ok().map(|_| t.elapsed().as_secs_f64())
        })
        .try_fold(f64::INFINITY, |best, s| s.map(|s| best.min(s)))
}

/// Per file: our decoding time beside pydicom's, measured in the same run.
fn against_pydicom() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("datasets/dicom-conformance"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "dcm")).collect())
        .unwrap_or_default();
    files.sort();
    let real = root.join("../shared/data/cbis-ddsm-dicom/Mass-Test_P_00173_LEFT_CC/1-130.dcm");
    if real.exists() {
        files.push(real);
    }
    let python = std::env::var("DAE_PYTHON").unwrap_or_else(|_| "python3".into());
    let theirs: std::collections::HashMap<String, f64> = std::process::Command::new(&python)
        .arg(root.join("tools/dicom-conformance/decode_bench.py"))
        .args(&files)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let (path, secs) = l.rsplit_once(' ')?;
                    Some((path.to_string(), secs.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    println!("DICOM decoding per file: read, first frame, modality LUT (ms, best of 5); speed-up = pydicom / ours");
    println!("{:<24} {:<34} {:>9} {:>9} {:>9}", "transfer syntax", "file", "ours", "pydicom", "speed-up");
    for f in &files {
        let uid = transfer_syntax_of(f).unwrap_or_default();
        let name = dae_data::dicom_io::name_of_syntax(&uid).unwrap_or("?");
        let (us, them) = (ours(f, 5), theirs.get(&f.display().to_string()).copied());
        let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |s| format!("{:.3}", s * 1e3));
        let up = match (us, them) {
            (Some(a), Some(b)) => format!("{:.2}x", b / a),
            _ => "n/a".into(),
        };
        let file = f.file_name().unwrap_or_default().to_string_lossy();
        println!("{name:<24} {file:<34} {:>9} {:>9} {up:>9}", ms(us), ms(them));
    }
}
