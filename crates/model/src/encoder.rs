//! Encoders: a small CNN for CPU runs and a trainable ResNet-18/34 with one
//! input channel; both end in global average pooling.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::config::EncoderKind;
use crate::conv::Conv as Conv2d;
use crate::norm::BatchNorm;

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
        (y + skip)?.relu()
    }
}

/// An encoder: image `[B, 1, H, W]` -> features `[B, out_dim]`.
#[derive(Debug)]
pub struct Encoder {
    kind: EncoderKind,
    stem: ConvBn,
    stages: Vec<ConvBn>,
    blocks: Vec<BasicBlock>,
    out_dim: usize,
}

impl Encoder {
    pub fn new(kind: EncoderKind, width: usize, vb: VarBuilder) -> Result<Self> {
        match kind {
            EncoderKind::SmallCnn => {
                let stem = ConvBn::new(1, width, 3, 1, vb.pp("stem"))?;
                let mut stages = Vec::new();
                let mut c = width;
                for i in 0..4 {
                    let cout = width << (i + 1).min(3);
                    stages.push(ConvBn::new(c, cout, 3, 2, vb.pp(format!("stage{i}")))?);
                    c = cout;
                }
                Ok(Self { kind, stem, stages, blocks: Vec::new(), out_dim: c })
            }
            EncoderKind::Resnet18 | EncoderKind::Resnet34 => {
                let layout: &[usize] = if kind == EncoderKind::Resnet18 { &[2, 2, 2, 2] } else { &[3, 4, 6, 3] };
                // 7x7 stride-2 stem; the 2x2 max-pool below has a backward in candle (3x3/2 has not).
                let stem = ConvBn::new(1, 64, 7, 2, vb.pp("stem"))?;
                let mut blocks = Vec::new();
                let mut c = 64;
                for (l, (&n, cout)) in layout.iter().zip([64, 128, 256, 512]).enumerate() {
                    for b in 0..n {
                        let stride = if b == 0 && l > 0 { 2 } else { 1 };
                        blocks.push(BasicBlock::new(c, cout, stride, vb.pp(format!("layer{}.{b}", l + 1)))?);
                        c = cout;
                    }
                }
                Ok(Self { kind, stem, stages: Vec::new(), blocks, out_dim: 512 })
            }
        }
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.stem.forward_t(x, train)?;
        if self.kind != EncoderKind::SmallCnn {
            y = y.max_pool2d(2)?;
        }
        for s in &self.stages {
            y = s.forward_t(&y, train)?;
        }
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        y.mean((2, 3))
    }
}
