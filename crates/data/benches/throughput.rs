//! Throughput of the synthetic generator (64 and 224 pixels, 1 and 2
//! threads) and of decoding one real CBIS-DDSM DICOM.
//!
//! `cargo bench -p dae-data --bench throughput`
//! Each figure is the best of several repetitions; the 1- and 2-thread runs
//! alternate so that both see the same machine load.

use std::path::Path;
use std::time::Instant;

use dae_data::dicom_io::{read_dicom, DicomOptions};
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
}
