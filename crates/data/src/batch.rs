//! Batches as candle tensors (through `candle_datasets::Batcher`),
//! normalisation and light training augmentation.

use candle_core::{Device, Tensor};
use candle_datasets::Batcher;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::{derive_seed, Rng};
use crate::sample::Sample;
use crate::vocab::Vocabulary;

/// Intensity normalisation `(x - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: f32,
    pub std: f32,
}

impl Normalize {
    /// Mean and standard deviation of the pixels of `indices` (the training split).
    pub fn fit(samples: &[Sample], indices: &[usize]) -> Result<Normalize> {
        let (mut n, mut s, mut s2) = (0f64, 0f64, 0f64);
        for &i in indices {
            let img = samples[i].image.as_ref().ok_or_else(|| no_images(&samples[i]))?;
            for &v in &img.data {
                n += 1.0;
                s += v as f64;
                s2 += (v as f64) * (v as f64);
            }
        }
        if n == 0.0 {
            return Ok(Normalize { mean: 0.0, std: 1.0 });
        }
        let mean = s / n;
        let var = (s2 / n - mean * mean).max(1e-12);
        Ok(Normalize { mean: mean as f32, std: var.sqrt() as f32 })
    }

    /// A normalised intensity.
    pub fn apply(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }

    /// The intensity a normalised value stands for.
    pub fn invert(&self, v: f32) -> f32 {
        v * self.std + self.mean
    }
}

fn no_images(s: &Sample) -> DataError {
    DataError::NoImages { what: format!("sample `{}`", s.id), action: "build image batches" }
}

/// Training augmentation: random flips (lossless), and a small rotation
/// only where asked for. A bilinear rotation low-passes the one- and
/// two-pixel cues of small patches in training but not at test time, and
/// the generator already draws each lesion's orientation, so it is off by
/// default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    pub hflip: bool,
    pub vflip: bool,
    /// Largest rotation in degrees (uniform in ±this; 0 = none, the default).
    pub max_rotation_deg: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self { hflip: true, vflip: true, max_rotation_deg: 0.0 }
    }
}

impl Augment {
    /// Applies a random flip/rotation drawn from `rng`.
    pub fn apply(&self, img: &Image, rng: &mut Rng) -> Image {
        let (h, w) = (img.height, img.width);
        let hflip = self.hflip && rng.bernoulli(0.5);
        let vflip = self.vflip && rng.bernoulli(0.5);
        let angle = if self.max_rotation_deg > 0.0 { rng.uniform(-1.0, 1.0) as f32 * self.max_rotation_deg.to_radians() } else { 0.0 };
        if !hflip && !vflip && angle == 0.0 {
            return img.clone();
        }
        let (s, c) = angle.sin_cos();
        let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
        let mut out = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let (mut yy, mut xx) = (y as f32, x as f32);
                if vflip {
                    yy = h as f32 - 1.0 - yy;
                }
                if hflip {
                    xx = w as f32 - 1.0 - xx;
                }
                let (dy, dx) = (yy - cy, xx - cx);
                let sy = cy + c * dy - s * dx;
                let sx = cx + s * dy + c * dx;
                out.push(img.sample_bilinear(sy, sx));
            }
        }
        Image::from_vec(h, w, out)
    }
}

/// One batch: images `[B, 1, H, W]` (f32), attributes `[B, A]` (multi-hot,
/// f32), labels `[B]` (f32, 1 = malignant), and the sample indices in order.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub attributes: Tensor,
    pub labels: Tensor,
    pub indices: Vec<usize>,
}

/// How to batch one pass over a split.
#[derive(Clone, Debug)]
pub struct BatchSpec<'a> {
    pub batch_size: usize,
    pub vocab: &'a Vocabulary,
    pub normalize: Normalize,
    /// Shuffle with this seed (training); `None` keeps the given order.
    pub shuffle_seed: Option<u64>,
    /// Augmentation (training only).
    pub augment: Option<&'a Augment>,
    /// Keep the last, smaller batch (evaluation: yes; training: usually no).
    pub keep_last: bool,
}

/// Batches of `indices` of `samples` for one epoch, on `device`.
pub fn batches<'a>(
    samples: &'a [Sample],
    indices: &[usize],
    spec: &BatchSpec<'a>,
    device: &'a Device,
) -> Result<impl Iterator<Item = Result<Batch>> + 'a> {
    let mut order = indices.to_vec();
    if let Some(seed) = spec.shuffle_seed {
        Rng::new(seed).shuffle(&mut order);
    }
    for &i in &order {
        if samples[i].image.is_none() {
            return Err(no_images(&samples[i]));
        }
    }
    let bs = spec.batch_size.max(1);
    let n_attr = spec.vocab.len();
    let vocab = spec.vocab.clone();
    let norm = spec.normalize;
    let augment = spec.augment.cloned();
    let aug_seed = spec.shuffle_seed.unwrap_or(0);
    let keep_last = spec.keep_last;
    let chunks: Vec<Vec<usize>> = order.chunks(bs).filter(|c| keep_last || c.len() == bs).map(|c| c.to_vec()).collect();
    let items = order.into_iter().map(move |i| -> candle_core::Result<(Tensor, Tensor)> {
        let s = &samples[i];
        let img = s.image.as_ref().expect("checked above");
        let img = match &augment {
            Some(a) => a.apply(img, &mut Rng::new(derive_seed(aug_seed, i as u64))),
            None => img.clone(),
        };
        let data: Vec<f32> = img.data.iter().map(|&v| norm.apply(v)).collect();
        let x = Tensor::from_vec(data, (1, img.height, img.width), device)?;
        let mut y = Vec::with_capacity(1 + n_attr);
        y.push(s.label as f32);
        y.extend(vocab.multi_hot(s.attributes));
        let y = Tensor::from_vec(y, 1 + n_attr, device)?;
        Ok((x, y))
    });
    let batcher = Batcher::new_r2(items).batch_size(bs).return_last_incomplete_batch(keep_last);
    Ok(batcher.zip(chunks).map(move |(r, indices)| {
        let (x, y) = r?;
        let labels = y.narrow(1, 0, 1)?.squeeze(1)?;
        let attributes = y.narrow(1, 1, n_attr)?;
        Ok(Batch { images: x, attributes, labels, indices })
    }))
}
