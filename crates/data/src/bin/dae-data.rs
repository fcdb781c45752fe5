//! `dae-data`: generate, preview and inspect data sets (run through
//! `cargo xtask data ...`).
//!
//! Exit codes: 0 success, 2 bad arguments or options, 3 data error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dae_data::cbis::{CbisOptions, MissingImages};
use dae_data::manifest::ManifestOptions;
use dae_data::mias::MiasOptions;
use dae_data::preview::{write_preview, PreviewSpec};
use dae_data::split::{split_samples, write_split_file};
use dae_data::synth::CacheStatus;
use dae_data::{Dataset, DatasetConfig, SplitSpec, SynthParams};

#[derive(Parser)]
#[command(name = "dae-data", about = "Generate, preview and inspect DAE-GCN data sets", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate the synthetic data set and cache it; prints where.
    ///
    /// Example: dae-data synth --size 128 --patients 900
    Synth {
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Write a PNG grid of samples with their labels and attributes.
    ///
    /// Example: dae-data preview --out results/preview.png
    Preview {
        #[command(flatten)]
        src: SourceArgs,
        /// Output PNG.
        #[arg(long, default_value = "results/data-preview.png")]
        out: PathBuf,
        /// Number of samples shown (balanced between benign and malignant).
        #[arg(long, default_value_t = 24)]
        n: usize,
        /// Tile side in pixels.
        #[arg(long, default_value_t = 160)]
        tile: usize,
    },
    /// Counts of samples, labels, patients, attributes and skipped rows.
    ///
    /// Example: dae-data inspect --kind mini-mias --root ../shared/data/mini-mias --split --json
    Inspect {
        #[command(flatten)]
        src: SourceArgs,
        /// Also count each split (patient-wise, stratified, seeded).
        #[arg(long)]
        split: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Draw the patient-wise split and write it as a split file (sample_id,patient,split).
    Split {
        #[command(flatten)]
        src: SourceArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode a DICOM file's first frame: its modality values (stored values
    /// after Rescale Slope/Intercept, before any window) as a float32 `.npy`
    /// of shape (rows, cols), and/or the [0, 1] intensities the loaders use
    /// as a 16-bit PNG.
    ///
    /// Example: dae-data decode scan.dcm --out scan.npy --png scan.png
    Decode {
        file: PathBuf,
        /// The modality values as a float32 `.npy`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The loaders' [0, 1] intensities (window or min-max, MONOCHROME1
        /// inverted) as a 16-bit grey PNG.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Compare our decoding of every `*.dcm` in a folder with the reference
    /// array beside it (`<name>.npy`, modality values; see
    /// tools/dicom-conformance/reference.py); prints a Markdown table.
    ///
    /// Example: dae-data conformance datasets/dicom-conformance
    Conformance {
        #[arg(default_value = "datasets/dicom-conformance")]
        dir: PathBuf,
    },
    /// Derive the committed (shape, margin, pathology) joint table from CBIS-DDSM mass CSVs.
    DerivePrior {
        /// Folder with mass_case_description_{train,test}_set.csv.
        #[arg(long)]
        cbis: PathBuf,
        #[arg(long, default_value = "datasets/cbis-ddsm-mass-joint.csv")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Synthetic,
    CbisDdsm,
    MiniMias,
    Manifest,
}

#[derive(Args)]
struct GenArgs {
    /// Patch side in pixels (16..=512; 32, 64, 128, 224 are the usual ones).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Number of patients (one mass each, one or two views).
    #[arg(long, default_value_t = 900)]
    patients: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Development-set confound strength in [0, 1] (training and validation; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    confound: f64,
    /// Scale of the label's effect on the microscopic features (default: the generator's).
    #[arg(long)]
    micro_strength: Option<f64>,
    /// Scale of the mass radius (1: 0.30-0.48 of the half-width; 1.5: fills the patch as CBIS-DDSM ROIs).
    #[arg(long, default_value_t = 1.0)]
    lesion_scale: f64,
    /// Points per pixel side when rendering (0: automatic).
    #[arg(long, default_value_t = 0)]
    supersample: usize,
    /// Scale of the irrelevant factors' visual amplitude.
    #[arg(long, default_value_t = 1.0)]
    irrelevant_strength: f64,
    /// Cache folder for generated data (default: datasets/cache).
    #[arg(long, default_value = "datasets/cache")]
    cache: PathBuf,
    /// Split seed (the confound applies to this split's training and validation patients).
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
}

#[derive(Args)]
struct SourceArgs {
    #[arg(long, value_enum, default_value = "synthetic")]
    kind: Kind,
    /// Data folder (CBIS-DDSM CSV folder, mini-MIAS folder, or manifest CSV).
    #[arg(long)]
    root: Option<PathBuf>,
    /// CBIS-DDSM: read the calcification tables too.
    #[arg(long)]
    calcifications: bool,
    /// CBIS-DDSM: read labels only, even where images are present.
    #[arg(long)]
    labels_only: bool,
    #[command(flatten)]
    gen: GenArgs,
}

impl GenArgs {
    fn params(&self) -> SynthParams {
        SynthParams {
            seed: self.seed,
            patients: self.patients,
            image_size: self.size,
            confound: self.confound,
            micro_strength: self.micro_strength.unwrap_or(SynthParams::default().micro_strength),
            irrelevant_strength: self.irrelevant_strength,
            lesion_scale: self.lesion_scale,
            supersample: self.supersample,
            ..SynthParams::default()
        }
    }
    fn split(&self) -> SplitSpec {
        SplitSpec { seed: self.split_seed, ..SplitSpec::default() }
    }
}

impl SourceArgs {
    /// The data set's options; `missing` says what CBIS-DDSM rows without
    /// their image file do (`inspect` counts them, everything else stops).
    fn config(&self, missing: MissingImages) -> anyhow::Result<DatasetConfig> {
        let root = || self.root.clone().with_context(|| "--root is required for this --kind (the data folder or manifest)");
        Ok(match self.kind {
            Kind::Synthetic => DatasetConfig::Synthetic(self.gen.params()),
            Kind::CbisDdsm => DatasetConfig::CbisDdsm(CbisOptions {
                root: root()?,
                image_size: self.gen.size,
                calcifications: self.calcifications,
                labels_only: self.labels_only,
                missing,
                ..CbisOptions::default()
            }),
            Kind::MiniMias => DatasetConfig::MiniMias(MiasOptions { root: root()?, image_size: self.gen.size, ..MiasOptions::default() }),
            Kind::Manifest => DatasetConfig::Manifest(ManifestOptions { root: root()?, image_size: self.gen.size }),
        })
    }
    fn load(&self, missing: MissingImages) -> anyhow::Result<Dataset> {
        let cfg = self.config(missing)?;
        Dataset::load(&cfg, &self.gen.split(), Some(&self.gen.cache)).map_err(data_err)
    }
}

/// Wraps a data-crate error so that `main` exits with code 3.
fn data_err(e: dae_data::DataError) -> anyhow::Error {
    anyhow::Error::new(e).context(DataFailure)
}

/// Marks errors that come from the data (exit code 3).
#[derive(Debug)]
struct DataFailure;
impl std::fmt::Display for DataFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("data error")
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<DataFailure>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn cache_note(ds: &Dataset) -> String {
    match &ds.cache {
        Some(CacheStatus::Hit(p)) => format!("loaded from cache {}", p.display()),
        Some(CacheStatus::Generated(p)) => format!("generated and cached in {}", p.display()),
        _ => String::new(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Synth { gen } => {
            let t = Instant::now();
            let src = SourceArgs { kind: Kind::Synthetic, root: None, calcifications: false, labels_only: false, gen };
            let ds = src.load(MissingImages::Error)?;
            let s = ds.summary(None);
            println!(
                "{} samples ({} malignant, {} benign) from {} patients at {}x{}: {} in {:.2} s",
                s.samples,
                s.malignant,
                s.benign,
                s.patients,
                src.gen.size,
                src.gen.size,
                cache_note(&ds),
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Preview { src, out, n, tile } => {
            let ds = src.load(MissingImages::Error)?;
            // Alternate benign and malignant so both are on the page.
            let mal: Vec<_> = ds.samples.iter().filter(|s| s.label == 1).collect();
            let ben: Vec<_> = ds.samples.iter().filter(|s| s.label == 0).collect();
            let mut pick = Vec::new();
            let stride = |len: usize| (len / (n / 2).max(1)).max(1);
            let (sm, sb) = (stride(mal.len()), stride(ben.len()));
            for i in 0..n {
                let (v, st) = if i % 2 == 0 { (&ben, sb) } else { (&mal, sm) };
                if let Some(s) = v.get((i / 2) * st) {
                    pick.push(*s);
                }
            }
            write_preview(&pick, &PreviewSpec { columns: 6, tile }, &out).map_err(data_err)?;
            println!("wrote {} ({} samples of {}; {})", out.display(), pick.len(), ds.name, cache_note(&ds));
        }
        Cmd::Inspect { src, split, json } => {
            let ds = src.load(MissingImages::Skip)?;
            let indices = if split { Some(split_samples(&ds.samples, &src.gen.split()).map_err(data_err)?) } else { None };
            let s = ds.summary(indices.as_ref());
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print_summary(&ds.name, &s);
            }
        }
        Cmd::Split { src, out } => {
            let ds = src.load(MissingImages::Error)?;
            let idx = split_samples(&ds.samples, &src.gen.split()).map_err(data_err)?;
            write_split_file(&out, &ds.samples, &idx).map_err(data_err)?;
            println!("wrote {} (train {}, val {}, test {})", out.display(), idx.train.len(), idx.val.len(), idx.test.len());
        }
        Cmd::Decode { file, out, png } => decode(&file, out.as_deref(), png.as_deref()).map_err(|e| e.context(DataFailure))?,
        Cmd::Conformance { dir } => {
            let rows = dae_data::dicom_io::conformance::check_folder(&dir).map_err(|e| anyhow::Error::new(e).context(DataFailure))?;
            print!("{}", dae_data::dicom_io::conformance::markdown(&rows));
        }
        Cmd::DerivePrior { cbis, out } => derive_prior(&cbis, &out).map_err(|e| e.context(DataFailure))?,
    }
    Ok(())
}

fn print_summary(name: &str, s: &dae_data::Summary) {
    println!("data set:   {name}");
    println!("samples:    {} ({} malignant, {} benign)", s.samples, s.malignant, s.benign);
    println!("patients:   {}", s.patients);
    println!("attributes:");
    for (k, v) in &s.attributes {
        println!("  {k:<26} {v}");
    }
    if !s.skipped.is_empty() {
        println!("skipped:");
        for (k, v) in &s.skipped {
            println!("  {k:<40} {v}");
        }
    }
    if let Some(sp) = &s.splits {
        println!("splits:     train {}, val {}, test {}", sp["train"], sp["val"], sp["test"]);
    }
}

fn derive_prior(cbis: &Path, out: &Path) -> anyhow::Result<()> {
    let text = dae_data::synth::prior::derive_joint_csv(cbis)?;
    dae_data::write_atomic(out, text.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `decode`: the first frame's modality values to `.npy`, intensities to PNG.
fn decode(file: &Path, out: Option<&Path>, png: Option<&Path>) -> anyhow::Result<()> {
    let m = dae_data::dicom_io::read_dicom_modality(file)?;
    let (lo, hi) = m.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    println!("{}: {} x {}, modality values {lo} to {hi}", file.display(), m.rows, m.cols);
    if let Some(out) = out {
        dae_data::write_atomic(out, &dae_data::npy::encode_f32(m.rows, m.cols, &m.values))?;
        println!("wrote {}", out.display());
    }
    if let Some(png) = png {
        let img = dae_data::dicom_io::read_dicom(file, &Default::default())?;
        let px: Vec<u16> = img.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16).collect();
        let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(img.width as u32, img.height as u32, px)
            .context("image size overflow")?;
        let mut bytes = std::io::Cursor::new(Vec::new());
        buf.write_to(&mut bytes, image::ImageFormat::Png).with_context(|| format!("{}: cannot encode PNG", png.display()))?;
        dae_data::write_atomic(png, bytes.get_ref())?;
        println!("wrote {}", png.display());
    }
    if out.is_none() && png.is_none() {
        println!("(nothing written: give --out FILE.npy and/or --png FILE.png)");
    }
    Ok(())
}
