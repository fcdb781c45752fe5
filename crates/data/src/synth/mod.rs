//! The built-in synthetic mammogram-mass data set.
//!
//! Each patient has one mass whose (shape, margin, label) is drawn from the
//! real CBIS-DDSM joint ([`prior`]), so the label is stochastic given the
//! attributes as in the real data. The label also shifts two microscopic
//! features that are not attributes (internal texture heterogeneity and
//! micro-calcification count). Everything else (parenchymal density and
//! texture, skin contour, pectoral muscle, brightness, contrast, noise, mass
//! size and position) is independent of the label, unless the optional
//! confound ties density to the label in the development splits (training
//! and validation; the test split stays clean).
//!
//! Generation is deterministic given the parameters (each patient has its own
//! random stream), runs in parallel with rayon, and is cached on disk under a
//! SHA-256 of the parameters ([`cache_key`]).

pub mod prior;
mod render;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, DataError, Result};
use crate::image::Image;
use crate::rng::{derive_seed, Rng};
use crate::sample::{Sample, Source};
use crate::split::{assign_patients, Split, SplitSpec};
use crate::vocab::{AttrSet, Attribute};

/// Bumped whenever a change to this module changes the generated pixels or
/// factors, so stale caches and results are never mistaken for current ones.
pub const GENERATOR_VERSION: u32 = 2;

/// Options of the synthetic generator (the `[dataset]` table with `kind = "synthetic"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthParams {
    /// Seed of the whole data set.
    pub seed: u64,
    /// Number of patients (one mass each). The default, 900, gives about
    /// 1,650 ROIs, the order of CBIS-DDSM's mass subset.
    pub patients: usize,
    /// Side of the square patch in pixels (16..=512).
    pub image_size: usize,
    /// Probability that a patient's mass is seen in both CC and MLO views
    /// (otherwise in one of them).
    pub two_view_prob: f64,
    /// Scale of the label's effect on the microscopic features (0 = none;
    /// the default 0.5 keeps the attributes the stronger cue: factor-level
    /// AUC 0.87 for shape and margin, 0.79 for the microscopic features,
    /// 0.92 for both).
    pub micro_strength: f64,
    /// Scale of the visual amplitude of the irrelevant factors (0 = flat background).
    pub irrelevant_strength: f64,
    /// Development-set confound: the fraction of training and validation
    /// patients whose breast density is set by their label (dense if
    /// malignant), so model selection sees the shortcut too. 0 disables it;
    /// test patients never get it.
    pub confound: f64,
    /// Points per pixel side when rendering (anti-aliasing); 0 = automatic
    /// (4 up to 64 pixels, 2 up to 128, 1 above).
    pub supersample: usize,
    /// Scales the mass radius (1 = 0.30-0.48 of the patch half-width; 1.5
    /// = 0.45-0.72, a mass that fills the patch as CBIS-DDSM's cropped ROIs do).
    pub lesion_scale: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            seed: 0,
            patients: 900,
            image_size: 64,
            two_view_prob: 0.85,
            micro_strength: 0.5,
            irrelevant_strength: 1.0,
            confound: 0.0,
            supersample: 0,
            lesion_scale: 1.0,
        }
    }
}

impl SynthParams {
    /// Checks ranges; errors name the key and the valid range.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, problem: String| Err(DataError::Config { key: key.into(), problem });
        if !(16..=512).contains(&self.image_size) {
            return bad("image_size", format!("{} is outside 16..=512", self.image_size));
        }
        if self.patients < 2 {
            return bad("patients", format!("{} is too few; at least 2", self.patients));
        }
        for (k, v, hi) in [
            ("two_view_prob", self.two_view_prob, 1.0),
            ("confound", self.confound, 1.0),
            ("micro_strength", self.micro_strength, 4.0),
            ("irrelevant_strength", self.irrelevant_strength, 4.0),
        ] {
            if !(0.0..=hi).contains(&v) || !v.is_finite() {
                return bad(k, format!("{v} is outside 0..={hi}"));
            }
        }
        if self.supersample > 8 {
            return bad("supersample", format!("{} is outside 0..=8 (0: automatic, 1: one point per pixel)", self.supersample));
        }
        if !(0.5..=1.8).contains(&self.lesion_scale) || !self.lesion_scale.is_finite() {
            return bad(
                "lesion_scale",
                format!("{} is outside 0.5..=1.8 (1: radius 0.30-0.48 of the half-width; 1.8 fills the patch)", self.lesion_scale),
            );
        }
        Ok(())
    }

    /// The points per pixel side the renderer uses.
    pub fn points_per_pixel(&self) -> usize {
        if self.supersample == 0 {
            render::auto_supersample(self.image_size)
        } else {
            self.supersample
        }
    }
}

/// Lesion-level ground truth (shared by the views of one patient).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    pub shape: Attribute,
    pub margin: Attribute,
    pub malignant: bool,
    /// Internal texture heterogeneity in [0, 1] (label-dependent).
    pub heterogeneity: f64,
    /// Number of micro-calcification specks (label-dependent).
    pub n_calcifications: usize,
    /// Mass radius in patch half-widths.
    pub radius: f64,
    /// Added mass intensity.
    pub mass_intensity: f64,
    /// Breast density in [0, 1] (irrelevant; confounded in the development splits when asked).
    pub density: f64,
    /// Whether the confound set this patient's density.
    pub confounded: bool,
}

/// Per-view factors: irrelevant acquisition and anatomy, and placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewFactors {
    pub view: String,
    pub render_seed: u64,
    pub orientation: f64,
    pub tissue_angle: f64,
    pub density: f64,
    /// Skin contour: (normal angle, offset, curvature) when it crosses the patch.
    pub skin: Option<(f64, f64, f64)>,
    /// Pectoral muscle: (normal angle, offset), MLO views only.
    pub pectoral: Option<(f64, f64)>,
    pub brightness: f64,
    pub contrast: f64,
    pub noise: f64,
    pub center: (f64, f64),
    /// Specks: (x, y, amplitude) in patch coordinates.
    pub calcifications: Vec<(f64, f64, f64)>,
}

/// The ground truth a synthetic sample carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthFactors {
    pub lesion: Factors,
    pub view: ViewFactors,
}

impl SynthFactors {
    /// Disease-related ground truth as features: one-hot shape (4), one-hot
    /// margin (5), heterogeneity, calcification count.
    pub fn relevant_features(&self) -> Vec<f64> {
        let mut x = self.attribute_features();
        x.push(self.lesion.heterogeneity);
        x.push(self.lesion.n_calcifications as f64);
        x
    }
    /// The microscopic, disease-related features alone: heterogeneity and
    /// calcification count.
    pub fn micro_features(&self) -> Vec<f64> {
        vec![self.lesion.heterogeneity, self.lesion.n_calcifications as f64]
    }
    /// The attributes alone: one-hot shape (4) and margin (5).
    pub fn attribute_features(&self) -> Vec<f64> {
        let mut x: Vec<f64> = prior::RENDERED_SHAPES.iter().map(|s| (*s == self.lesion.shape) as u8 as f64).collect();
        x.extend(prior::RENDERED_MARGINS.iter().map(|m| (*m == self.lesion.margin) as u8 as f64));
        x
    }
    /// The disease-irrelevant factors alone.
    pub fn irrelevant_features(&self) -> Vec<f64> {
        let v = &self.view;
        vec![
            v.density,
            v.skin.is_some() as u8 as f64,
            v.pectoral.is_some() as u8 as f64,
            v.brightness,
            v.contrast,
            v.noise,
            self.lesion.radius,
            v.orientation.cos(),
            v.orientation.sin(),
            v.center.0,
            v.center.1,
        ]
    }
}

struct Patient {
    index: usize,
    seed: u64,
    lesion: Factors,
    views: Vec<&'static str>,
}

fn draw_patient(index: usize, params: &SynthParams, prior: &[prior::LesionType], weights: &[f64]) -> Patient {
    let seed = derive_seed(params.seed, index as u64);
    let mut rng = Rng::new(seed);
    let t = prior[rng.weighted(weights)];
    let ms = params.micro_strength;
    let y = t.malignant as u8 as f64;
    let heterogeneity = (0.3 + 0.22 * ms * y + 0.15 * rng.normal()).clamp(0.0, 1.0);
    let n_calcifications = rng.poisson(0.5 + 1.5 * ms * y).min(12);
    let lesion = Factors {
        shape: t.shape,
        margin: t.margin,
        malignant: t.malignant,
        heterogeneity,
        n_calcifications,
        radius: rng.uniform(0.3, 0.48) * params.lesion_scale,
        mass_intensity: rng.uniform(0.2, 0.32),
        density: rng.f64(),
        confounded: false,
    };
    let views = if rng.bernoulli(params.two_view_prob) {
        vec!["CC", "MLO"]
    } else if rng.bernoulli(0.5) {
        vec!["CC"]
    } else {
        vec!["MLO"]
    };
    Patient { index, seed, lesion, views }
}

fn draw_view(p: &Patient, view: &'static str) -> ViewFactors {
    let mut rng = Rng::new(derive_seed(p.seed, if view == "CC" { 1 } else { 2 }));
    let f = &p.lesion;
    let center = (0.06 * rng.normal(), 0.06 * rng.normal());
    let calcifications = (0..f.n_calcifications)
        .map(|_| {
            let r = f.radius * 0.75 * rng.f64().sqrt();
            let a = rng.uniform(0.0, std::f64::consts::TAU);
            (center.0 + r * a.cos(), center.1 + r * a.sin(), rng.uniform(0.22, 0.4))
        })
        .collect();
    let skin = rng.bernoulli(0.3).then(|| (rng.uniform(0.0, std::f64::consts::TAU), rng.uniform(0.72, 0.95), rng.uniform(0.1, 0.35)));
    let pectoral = (view == "MLO" && rng.bernoulli(0.5)).then(|| {
        // Towards one of the two upper corners.
        let corner = if rng.bernoulli(0.5) { -0.75 } else { -2.39 };
        (corner + 0.25 * rng.normal(), rng.uniform(0.75, 1.15))
    });
    ViewFactors {
        view: view.to_string(),
        render_seed: rng.next_u64(),
        orientation: rng.uniform(0.0, std::f64::consts::PI),
        tissue_angle: rng.uniform(0.0, std::f64::consts::PI),
        density: f.density,
        skin,
        pectoral,
        brightness: 0.06 * rng.normal(),
        contrast: rng.uniform(0.8, 1.2),
        noise: rng.uniform(0.008, 0.035),
        center,
        calcifications,
    }
}

/// Generates the data set in memory (no cache). `split` is used only when
/// the confound is on, to know which patients are in the test split; it
/// must be the split the data set will be used with.
pub fn generate(params: &SynthParams, split: &SplitSpec) -> Result<Vec<Sample>> {
    params.validate()?;
    let prior = prior::lesion_prior();
    let weights: Vec<f64> = prior.iter().map(|t| t.weight).collect();
    let mut patients: Vec<Patient> = (0..params.patients).map(|i| draw_patient(i, params, &prior, &weights)).collect();
    if params.confound > 0.0 {
        let labels: Vec<(String, u8)> = patients.iter().map(|p| (patient_id(p.index), p.lesion.malignant as u8)).collect();
        let assignment = assign_patients(&labels, split)?;
        for p in &mut patients {
            if assignment[&patient_id(p.index)] == Split::Test {
                continue;
            }
            // A separate stream, so switching the confound on changes nothing else.
            let mut rng = Rng::new(derive_seed(p.seed, 99));
            if rng.bernoulli(params.confound) {
                p.lesion.density = if p.lesion.malignant { rng.uniform(0.7, 1.0) } else { rng.uniform(0.0, 0.3) };
                p.lesion.confounded = true;
            }
        }
    }
    let jobs: Vec<(&Patient, &'static str)> = patients.iter().flat_map(|p| p.views.iter().map(move |v| (p, *v))).collect();
    let size = params.image_size;
    let strength = params.irrelevant_strength as f32;
    let ss = params.points_per_pixel();
    Ok(jobs
        .par_iter()
        .map(|(p, view)| {
            let vf = draw_view(p, view);
            let pixels = render::render(&p.lesion, &vf, size, strength, ss);
            let attrs = AttrSet::EMPTY.with(p.lesion.shape).with(p.lesion.margin);
            Sample {
                id: format!("{}-{}", patient_id(p.index), view),
                patient: patient_id(p.index),
                view: view.to_string(),
                source: Source::Synthetic,
                image: Some(Image::from_vec(size, size, pixels)),
                attributes: attrs,
                label: p.lesion.malignant as u8,
                factors: Some(Box::new(SynthFactors { lesion: p.lesion.clone(), view: vf })),
            }
        })
        .collect())
}

fn patient_id(i: usize) -> String {
    format!("synth-p{i:05}")
}

/// The cache key: SHA-256 over the generator version, the parameters and,
/// when the confound is on, the split (hex).
pub fn cache_key(params: &SynthParams, split: &SplitSpec) -> String {
    let canon = serde_json::json!({
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "split": if params.confound > 0.0 { Some(split) } else { None },
    });
    let digest = Sha256::digest(canon.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct CacheMeta {
    generator_version: u32,
    params: SynthParams,
    image_size: usize,
    samples: Vec<CachedSample>,
}

#[derive(Serialize, Deserialize)]
struct CachedSample {
    id: String,
    patient: String,
    view: String,
    attributes: AttrSet,
    label: u8,
    factors: SynthFactors,
}

/// Whether [`load_or_generate`] found the data set in its cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit(PathBuf),
    Generated(PathBuf),
    Disabled,
}

/// The cache folder of a parameter set under `cache_dir`.
pub fn cache_path(cache_dir: &Path, params: &SynthParams, split: &SplitSpec) -> PathBuf {
    cache_dir.join("synthetic").join(&cache_key(params, split)[..16])
}

/// Loads the data set from `cache_dir` or generates and caches it.
/// Images are stored as 16-bit values (the generator quantises to 16 bits,
/// so a cached data set equals a freshly generated one exactly).
pub fn load_or_generate(params: &SynthParams, split: &SplitSpec, cache_dir: Option<&Path>) -> Result<(Vec<Sample>, CacheStatus)> {
    params.validate()?;
    let Some(cache_dir) = cache_dir else {
        return Ok((generate(params, split)?, CacheStatus::Disabled));
    };
    let dir = cache_path(cache_dir, params, split);
    if dir.join("meta.json").exists() {
        match read_cache(&dir) {
            Ok(s) => return Ok((s, CacheStatus::Hit(dir))),
            Err(e) => tracing::warn!("ignoring unreadable synthetic cache {}: {e}", dir.display()),
        }
    }
    let samples = generate(params, split)?;
    write_cache(&dir, params, &samples)?;
    Ok((samples, CacheStatus::Generated(dir)))
}

fn write_cache(dir: &Path, params: &SynthParams, samples: &[Sample]) -> Result<()> {
    let parent = dir.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(io_err(parent, "cannot create cache folder"))?;
    let tmp = parent.join(format!(".tmp-{}-{}", dir.file_name().unwrap().to_string_lossy(), crate::unique_suffix()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp, "cannot create cache folder"))?;
    let meta = CacheMeta {
        generator_version: GENERATOR_VERSION,
        params: params.clone(),
        image_size: params.image_size,
        samples: samples
            .iter()
            .map(|s| CachedSample {
                id: s.id.clone(),
                patient: s.patient.clone(),
                view: s.view.clone(),
                attributes: s.attributes,
                label: s.label,
                factors: (**s.factors.as_ref().expect("synthetic samples carry factors")).clone(),
            })
            .collect(),
    };
    let mut px = Vec::with_capacity(samples.len() * params.image_size * params.image_size * 2);
    for s in samples {
        for v in &s.image.as_ref().expect("generated samples have images").data {
            px.extend_from_slice(&((v * 65535.0).round() as u16).to_le_bytes());
        }
    }
    let meta_json = serde_json::to_vec(&meta).expect("cache metadata serialises");
    std::fs::write(tmp.join("images.u16"), &px).map_err(io_err(tmp.join("images.u16"), "cannot write cache"))?;
    std::fs::write(tmp.join("meta.json"), meta_json).map_err(io_err(tmp.join("meta.json"), "cannot write cache"))?;
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another process cached the same parameters first: keep theirs.
        Err(_) if dir.join("meta.json").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(DataError::Io { path: dir.into(), action: "cannot move cache into place", source: e }),
    }
}

fn read_cache(dir: &Path) -> Result<Vec<Sample>> {
    let meta_path = dir.join("meta.json");
    let bytes = std::fs::read(&meta_path).map_err(io_err(&meta_path, "cannot read cache"))?;
    let meta: CacheMeta = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::Image { path: meta_path.clone(), problem: format!("corrupt cache metadata: {e}") })?;
    let px_path = dir.join("images.u16");
    let px = std::fs::read(&px_path).map_err(io_err(&px_path, "cannot read cache"))?;
    let n = meta.image_size * meta.image_size;
    if meta.generator_version != GENERATOR_VERSION || px.len() != meta.samples.len() * n * 2 {
        return Err(DataError::Image { path: px_path, problem: "cache does not match its metadata".into() });
    }
    Ok(meta
        .samples
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let data = px[i * n * 2..(i + 1) * n * 2].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0).collect();
            Sample {
                id: c.id,
                patient: c.patient,
                view: c.view,
                source: Source::Synthetic,
                image: Some(Image::from_vec(meta.image_size, meta.image_size, data)),
                attributes: c.attributes,
                label: c.label,
                factors: Some(Box::new(c.factors)),
            }
        })
        .collect())
}
