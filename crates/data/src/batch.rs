//! Batches as candle tensors (through `candle_datasets::Batcher`; builds
//! without the `candle-datasets` feature stack them with [`Collate`], which
//! gives the same tensors), normalisation and light training augmentation.

use candle_core::{Device, Tensor};
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
    #[cfg(feature = "candle-datasets")]
    let batcher = candle_datasets::Batcher::new_r2(items).batch_size(bs).return_last_incomplete_batch(keep_last);
    #[cfg(not(feature = "candle-datasets"))]
    let batcher = Collate { items, batch_size: bs, keep_last };
    Ok(batcher.zip(chunks).map(move |(r, indices)| {
        let (x, y) = r?;
        let labels = y.narrow(1, 0, 1)?.squeeze(1)?;
        let attributes = y.narrow(1, 1, n_attr)?;
        Ok(Batch { images: x, attributes, labels, indices })
    }))
}

/// Stacks `(x, y)` items into batches along a new first axis, the last,
/// smaller batch only when `keep_last`; an item's error ends its batch with
/// that error. What `candle_datasets::Batcher::new_r2` does, for builds
/// without candle-datasets (whose Hugging Face hub stack is over half of
/// the trainer's build time): `cargo xtask` builds the trainer that way.
pub struct Collate<I> {
    pub items: I,
    pub batch_size: usize,
    pub keep_last: bool,
}

impl<I: Iterator<Item = candle_core::Result<(Tensor, Tensor)>>> Iterator for Collate<I> {
    type Item = candle_core::Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (mut xs, mut ys, mut first_err) = (Vec::new(), Vec::new(), None);
        for _ in 0..self.batch_size {
            match self.items.next() {
                Some(Ok((x, y))) => {
                    xs.push(x);
                    ys.push(y);
                }
                Some(Err(e)) => first_err = first_err.or(Some(e)),
                None if self.keep_last && !xs.is_empty() => break,
                None => return None,
            }
        }
        if let Some(e) = first_err {
            return Some(Err(e));
        }
        Some(Tensor::stack(&xs, 0).and_then(|x| Ok((x, Tensor::stack(&ys, 0)?))))
    }
}

#[cfg(all(test, feature = "candle-datasets"))]
mod collate_tests {
    use super::*;

    /// `Collate` and candle-datasets' batcher give the same batches (values
    /// and shapes), with and without the last, smaller one.
    #[test]
    fn collate_gives_the_batches_candle_datasets_gives() {
        let dev = Device::Cpu;
        let items = || {
            (0..7).map(|i| {
                let x = Tensor::from_vec(vec![i as f32; 6], (1, 2, 3), &dev)?;
                let y = Tensor::from_vec(vec![i as f32, -(i as f32)], 2, &dev)?;
                Ok((x, y))
            })
        };
        for keep_last in [false, true] {
            let ours: Vec<_> = Collate { items: items(), batch_size: 3, keep_last }.map(|r| r.unwrap()).collect();
            let theirs: Vec<_> = candle_datasets::Batcher::new_r2(items())
                .batch_size(3)
                .return_last_incomplete_batch(keep_last)
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(ours.len(), if keep_last { 3 } else { 2 });
            assert_eq!(ours.len(), theirs.len());
            for ((x, y), (tx, ty)) in ours.iter().zip(&theirs) {
                assert_eq!(x.dims(), tx.dims());
                assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), tx.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                assert_eq!(y.to_vec2::<f32>().unwrap(), ty.to_vec2::<f32>().unwrap());
            }
        }
    }
}
