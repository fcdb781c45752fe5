//! A stride-1 convolution computed directly, for layers with very few
//! output channels (see [`DirectConv`]).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use super::geometry::Geometry;

/// A stride-1 convolution computed directly, for layers with very few
/// output channels (the decoder's last layer: 8 channels -> 1 at full
/// resolution). There im2col would build a `[C*k*k, B*H*W]` matrix (38 MB
/// at 64 x 64, batch 32) for a matrix product of one row; the direct form
/// adds shifted rows of the input (`axpy`, vectorised) and needs no
/// buffer beyond its output. Forward `(x [B,C,H,W], w [O,C,k,k])`.
#[derive(Clone, Copy, Debug)]
struct DirectConv {
    g: Geometry,
    o: usize,
}

/// `out[row(i, kh)-shifted] += a * src` over the valid window positions of
/// one `(kh, kw)` tap: `forward` reads the input at the shifted position and
/// writes the output grid; otherwise the reverse (the input gradient).
#[inline]
fn tap(g: &Geometry, kh: usize, kw: usize, a: f32, src: &[f32], dst: &mut [f32], forward: bool) {
    let (j0, j1, x0) = g.cols(kw);
    let len = j1 - j0;
    for i in 0..g.oh {
        let Some(y) = g.row(i, kh) else { continue };
        let (gi, xi) = (i * g.ow + j0, y * g.w + x0);
        let (from, to) = if forward { (&src[xi..xi + len], &mut dst[gi..gi + len]) } else { (&src[gi..gi + len], &mut dst[xi..xi + len]) };
        to.iter_mut().zip(from).for_each(|(d, s)| *d += a * s);
    }
}

impl CustomOp2 for DirectConv {
    fn name(&self) -> &'static str {
        "direct-conv"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, o) = (self.g, self.o);
        let (x, w) = (contiguous_f32(s1, l1, "direct conv")?, contiguous_f32(s2, l2, "direct conv")?);
        let (kk, hw, len) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
        let b = l1.dims()[0];
        let mut out = vec![0f32; b * o * len];
        out.par_chunks_mut(len).enumerate().for_each(|(bo, y)| {
            let (bi, oi) = (bo / o, bo % o);
            for c in 0..g.c {
                let img = &x[(bi * g.c + c) * hw..(bi * g.c + c + 1) * hw];
                for kh in 0..g.k {
                    for kw in 0..g.k {
                        tap(&g, kh, kw, w[(oi * g.c + c) * kk + kh * g.k + kw], img, y, true);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, o, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &DirectConvInputGrad(*self))?;
        let dw = x.apply_op2_no_bwd(&grad, &DirectConvWeightGrad(*self))?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `(dy [B,O,oh,ow], w)` -> `dx [B,C,H,W]` of [`DirectConv`].
struct DirectConvInputGrad(DirectConv);

impl CustomOp2 for DirectConvInputGrad {
    fn name(&self) -> &'static str {
        "direct-conv-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let DirectConv { g, o } = self.0;
        let (dy, w) = (contiguous_f32(s1, l1, "direct conv")?, contiguous_f32(s2, l2, "direct conv")?);
        let (kk, hw, len) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
        let b = l1.dims()[0];
        let mut dx = vec![0f32; b * g.c * hw];
        dx.par_chunks_mut(hw).enumerate().for_each(|(bc, d)| {
            let (bi, c) = (bc / g.c, bc % g.c);
            for oi in 0..o {
                let gy = &dy[(bi * o + oi) * len..(bi * o + oi + 1) * len];
                for kh in 0..g.k {
                    for kw in 0..g.k {
                        tap(&g, kh, kw, w[(oi * g.c + c) * kk + kh * g.k + kw], gy, d, false);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((b, g.c, g.h, g.w))))
    }
}

/// `(x, dy)` -> `dw [O,C,k,k]` of [`DirectConv`].
struct DirectConvWeightGrad(DirectConv);

impl CustomOp2 for DirectConvWeightGrad {
    fn name(&self) -> &'static str {
        "direct-conv-weight-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let DirectConv { g, o } = self.0;
        let (x, dy) = (contiguous_f32(s1, l1, "direct conv")?, contiguous_f32(s2, l2, "direct conv")?);
        let (kk, hw, len) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
        let b = l1.dims()[0];
        let dw: Vec<f32> = (0..o * g.c * kk)
            .into_par_iter()
            .map(|r| {
                let (oi, c, kh, kw) = (r / (g.c * kk), (r / kk) % g.c, (r % kk) / g.k, r % g.k);
                let (j0, j1, x0) = g.cols(kw);
                let n = j1 - j0;
                let mut acc = 0f64;
                for bi in 0..b {
                    let img = &x[(bi * g.c + c) * hw..(bi * g.c + c + 1) * hw];
                    let gy = &dy[(bi * o + oi) * len..(bi * o + oi + 1) * len];
                    let mut lanes = [0f32; 8];
                    let mut rest = 0f32;
                    for i in 0..g.oh {
                        let Some(y) = g.row(i, kh) else { continue };
                        let (a, v) = (&gy[i * g.ow + j0..i * g.ow + j0 + n], &img[y * g.w + x0..y * g.w + x0 + n]);
                        let (a8, v8) = (a.chunks_exact(8), v.chunks_exact(8));
                        rest += a8.remainder().iter().zip(v8.remainder()).map(|(p, q)| p * q).sum::<f32>();
                        for (p, q) in a8.zip(v8) {
                            for l in 0..8 {
                                lanes[l] += p[l] * q[l];
                            }
                        }
                    }
                    acc += lanes.iter().map(|&v| v as f64).sum::<f64>() + rest as f64;
                }
                acc as f32
            })
            .collect();
        Ok((CpuStorage::F32(dw), Shape::from((o, g.c, g.k, g.k))))
    }
}

/// A stride-1 conv2d of `x` `[B, C, H, W]` with `w` `[O, C, k, k]`, computed directly (see [`DirectConv`]).
pub fn conv2d_direct(x: &Tensor, w: &Tensor, pad: usize) -> Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (o, ci, k, k2) = w.dims4()?;
    if ci != c || k != k2 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!("conv2d_direct: input {:?}, kernel {:?}, padding {pad}", x.dims(), w.dims());
    }
    let g = Geometry { c, h, w: wd, k, stride: 1, pad, oh: h + 2 * pad - k + 1, ow: wd + 2 * pad - k + 1 };
    x.contiguous()?.apply_op2(&w.contiguous()?, DirectConv { g, o })
}
