//! The decoder: latent -> a `C x s x s` map (s = size / 16) -> four
//! stride-2 transposed convolutions -> a 3x3 convolution to one channel.
//! The linear layer is f32; the convolutions run in the decoder's
//! [`Precision`]'s dtype; the output is f32.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{linear, Conv2dConfig, ConvTranspose2dConfig, Linear, VarBuilder};

use crate::config::{EncoderKind, ModelConfig, Precision};
use crate::conv::{Conv as Conv2d, ConvTranspose as ConvTranspose2d};
use crate::norm::BatchNorm;

/// The decoder's base channel width for an encoder: the small CNN's width,
/// or 32 behind a ResNet.
pub fn base_width(model: &ModelConfig) -> usize {
    if model.encoder == EncoderKind::SmallCnn {
        model.width
    } else {
        32
    }
}

#[derive(Debug)]
pub struct Decoder {
    fc: Linear,
    ups: Vec<(ConvTranspose2d, BatchNorm)>,
    out: Conv2d,
    c0: usize,
    s0: usize,
    dtype: DType,
}

impl Decoder {
    pub fn new(latent: usize, base: usize, image_size: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let s0 = image_size / 16;
        let c0 = base * 8;
        let fc = linear(latent, c0 * s0 * s0, vb.pp("fc"))?;
        let mut ups = Vec::new();
        let mut c = c0;
        for i in 0..4 {
            let cout = (c / 2).max(base);
            let t = ConvTranspose2d::new(
                c,
                cout,
                4,
                ConvTranspose2dConfig { padding: 1, stride: 2, ..Default::default() },
                vb.pp(format!("up{i}.conv")),
            )?;
            let b = BatchNorm::new(cout, vb.pp(format!("up{i}.bn")))?;
            ups.push((t, b));
            c = cout;
        }
        let out = Conv2d::new(c, 1, 3, Conv2dConfig { padding: 1, ..Default::default() }, true, vb.pp("out"))?;
        Ok(Self { fc, ups, out, c0, s0, dtype: precision.dtype() })
    }

    /// `[B, latent]` -> `[B, 1, size, size]` (normalised intensities, no activation).
    pub fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let b = z.dim(0)?;
        let mut y = self.fc.forward(z)?.relu()?.reshape((b, self.c0, self.s0, self.s0))?.to_dtype(self.dtype)?;
        for (t, bn) in &self.ups {
            y = bn.forward(&t.forward(&y)?, train, true)?;
        }
        self.out.forward(&y)?.to_dtype(DType::F32)
    }
}
