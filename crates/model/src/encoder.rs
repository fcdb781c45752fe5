//! Encoders: a small CNN for CPU runs and a trainable ResNet-18/34 with one
//! input channel; both end in global average pooling. An encoder can also
//! be built without its last stage ([`Encoder::trunk`]) and finished by
//! several [`Branch`]es, one per latent block (`model.latent = "branches"`).
//!
//! The convolutions and the map between them are in the encoder's
//! [`Precision`]'s dtype (the image is cast on the way in); pooling and
//! everything after it are f32.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::config::{EncoderKind, Precision};
use crate::conv::Conv as Conv2d;
use crate::norm::{add_relu, BatchNorm};

/// A convolution with padding `k / 2` (gemm-based on the CPU, see [`crate::conv::Conv`]).
fn conv(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(cin, cout, k, Conv2dConfig { padding: k / 2, stride, ..Default::default() }, false, vb)
}

/// conv -> batch norm -> ReLU.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: conv(cin, cout, k, stride, vb.pp("conv"))?, bn: BatchNorm::new(cout, vb.pp("bn"))? })
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward(&self.conv.forward(x)?, train, true)
    }
}

/// A ResNet basic block.
#[derive(Debug)]
struct BasicBlock {
    c1: Conv2d,
    b1: BatchNorm,
    c2: Conv2d,
    b2: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let down = if stride != 1 || cin != cout {
            Some((conv(cin, cout, 1, stride, vb.pp("down.conv"))?, BatchNorm::new(cout, vb.pp("down.bn"))?))
        } else {
            None
        };
        Ok(Self {
            c1: conv(cin, cout, 3, stride, vb.pp("conv1"))?,
            b1: BatchNorm::new(cout, vb.pp("bn1"))?,
            c2: conv(cout, cout, 3, 1, vb.pp("conv2"))?,
            b2: BatchNorm::new(cout, vb.pp("bn2"))?,
            down,
        })
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.b1.forward(&self.c1.forward(x)?, train, true)?;
        let y = self.b2.forward(&self.c2.forward(&y)?, train, false)?;
        let skip = match &self.down {
            Some((c, b)) => b.forward(&c.forward(x)?, train, false)?,
            None => x.clone(),
        };
        add_relu(&y, &skip)
    }
}

/// An encoder: image `[B, 1, H, W]` -> features `[B, out_dim]`, or, built
/// as a trunk, the feature map before the last stage.
#[derive(Debug)]
pub struct Encoder {
    kind: EncoderKind,
    stem: ConvBn,
    stages: Vec<ConvBn>,
    blocks: Vec<BasicBlock>,
    out_dim: usize,
    /// The dtype of the convolutions' activations.
    dtype: DType,
}

/// ResNet basic blocks per layer.
fn resnet_layout(kind: EncoderKind) -> &'static [usize] {
    if kind == EncoderKind::Resnet18 {
        &[2, 2, 2, 2]
    } else {
        &[3, 4, 6, 3]
    }
}

impl Encoder {
    /// The whole encoder, ending in global average pooling.
    pub fn new(kind: EncoderKind, width: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        Self::build(kind, width, true, precision, vb)
    }

    /// The encoder without its last stage (the small CNN's fourth stage, the
    /// ResNet's `layer4`): [`Encoder::forward_map`] gives the feature map a
    /// [`Branch`] per latent block finishes. Variables keep the whole
    /// encoder's names, so the trunk of every row is the same.
    pub fn trunk(kind: EncoderKind, width: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        Self::build(kind, width, false, precision, vb)
    }

    /// Channels of the whole encoder's last stage (8 x width for the small
    /// CNN, 512 for the ResNets): what branches share out.
    pub fn last_stage_width(kind: EncoderKind, width: usize) -> usize {
        if kind == EncoderKind::SmallCnn {
            width << 3
        } else {
            512
        }
    }

    fn build(kind: EncoderKind, width: usize, last: bool, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let dtype = precision.dtype();
        match kind {
            EncoderKind::SmallCnn => {
                let stem = ConvBn::new(1, width, 3, 1, vb.pp("stem"))?;
                let mut stages = Vec::new();
                let mut c = width;
                for i in 0..if last { 4 } else { 3 } {
                    let cout = width << (i + 1).min(3);
                    stages.push(ConvBn::new(c, cout, 3, 2, vb.pp(format!("stage{i}")))?);
                    c = cout;
                }
                Ok(Self { kind, stem, stages, blocks: Vec::new(), out_dim: c, dtype })
            }
            EncoderKind::Resnet18 | EncoderKind::Resnet34 => {
                // 7x7 stride-2 stem; the 2x2 max-pool below has a backward in candle (3x3/2 has not).
                let stem = ConvBn::new(1, 64, 7, 2, vb.pp("stem"))?;
                let mut blocks = Vec::new();
                let mut c = 64;
                let layers = if last { 4 } else { 3 };
                for (l, (&n, cout)) in resnet_layout(kind).iter().zip([64, 128, 256, 512]).enumerate().take(layers) {
                    for b in 0..n {
                        let stride = if b == 0 && l > 0 { 2 } else { 1 };
                        blocks.push(BasicBlock::new(c, cout, stride, vb.pp(format!("layer{}.{b}", l + 1)))?);
                        c = cout;
                    }
                }
                Ok(Self { kind, stem, stages: Vec::new(), blocks, out_dim: c, dtype })
            }
        }
    }

    /// Channels of the output (pooled, or of the trunk's map).
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The feature map `[B, out_dim, h, w]`, before pooling, in the encoder's dtype.
    pub fn forward_map(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.stem.forward_t(&x.to_dtype(self.dtype)?, train)?;
        if self.kind != EncoderKind::SmallCnn {
            y = y.max_pool2d(2)?;
        }
        for s in &self.stages {
            y = s.forward_t(&y, train)?;
        }
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        Ok(y)
    }

    /// Pooled features `[B, out_dim]` (f32).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        pool(&self.forward_map(x, train)?)
    }
}

/// Global average pooling in f32.
fn pool(map: &Tensor) -> Result<Tensor> {
    map.to_dtype(DType::F32)?.mean((2, 3))
}

/// The last encoder stage for one latent block, on the trunk's feature map:
/// a stride-2 conv + batch norm + ReLU (the small CNN's stage) or a basic
/// block (ResNet), `dim` channels, then global average pooling. The block
/// is the branch's own output channels: no projection between, so the
/// branch's parameters get gradients only from the heads that read the block.
#[derive(Debug)]
pub struct Branch {
    stage: BranchStage,
}

#[derive(Debug)]
enum BranchStage {
    Conv(ConvBn),
    Block(BasicBlock),
}

impl Branch {
    pub fn new(kind: EncoderKind, cin: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        let stage = match kind {
            EncoderKind::SmallCnn => BranchStage::Conv(ConvBn::new(cin, dim, 3, 2, vb)?),
            EncoderKind::Resnet18 | EncoderKind::Resnet34 => BranchStage::Block(BasicBlock::new(cin, dim, 2, vb)?),
        };
        Ok(Self { stage })
    }

    /// The block `[B, dim]` (f32) of a trunk feature map (in the trunk's dtype).
    pub fn forward_t(&self, map: &Tensor, train: bool) -> Result<Tensor> {
        let y = match &self.stage {
            BranchStage::Conv(c) => c.forward_t(map, train)?,
            BranchStage::Block(b) => b.forward_t(map, train)?,
        };
        pool(&y)
    }
}
