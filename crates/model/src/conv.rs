//! Convolutions whose CPU backward passes are matrix products.
//!
//! candle 0.11 computes conv2d's input gradient, and conv_transpose2d's
//! forward, with a direct transposed-convolution loop (a dot product per
//! output element); on the CPU that loop was most of a training step here.
//! On the CPU these modules write both as an im2col / col2im rearrangement
//! around one matrix product (`gemm`), so forward and backward are all
//! matrix products plus two cheap scatter/gather loops:
//!
//! - conv2d: `y = W[co, ci*k*k] . im2col(x)`; its backward is two matrix
//!   products and `col2im` (the adjoint of `im2col`);
//! - conv_transpose2d: `y = col2im(W^T[co*k*k, ci] . x)`; its backward is
//!   `im2col` and two matrix products.
//!
//! On other devices, or with `DAE_CONV=candle` in the environment (to
//! compare, or as an escape hatch), they are candle's own `Conv2d` /
//! `ConvTranspose2d`. The
//! weights are created by those (same names, shapes and initialisation), so
//! checkpoints and seeds do not change. Tested against candle's own
//! operators (values and gradients) in this module's tests.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, VarBuilder};
use rayon::prelude::*;

/// Geometry shared by [`Im2Col`] and [`Col2Im`]: an image of `c` channels
/// and `h x w` pixels, a `k x k` window with `stride` and `pad`, and the
/// `oh x ow` grid of window positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    /// The image row under window row `kh` at grid row `i`, if inside.
    #[inline]
    fn row(&self, i: usize, kh: usize) -> Option<usize> {
        (i * self.stride + kh).checked_sub(self.pad).filter(|&y| y < self.h)
    }

    /// The grid columns `j0..j1` whose pixel under window column `kw`
    /// (`x = j * stride + kw - pad`) is inside the image, and `x` at `j0`.
    #[inline]
    fn cols(&self, kw: usize) -> (usize, usize, usize) {
        let s = self.stride;
        let j0 = if self.pad > kw { (self.pad - kw).div_ceil(s) } else { 0 };
        let j1 = if self.w + self.pad > kw { (self.w + self.pad - kw).div_ceil(s).min(self.ow) } else { 0 };
        let j0 = j0.min(j1);
        (j0, j1, (j0 * s + kw).saturating_sub(self.pad))
    }
}

/// The f32 data of a contiguous CPU tensor (the custom ops here and in [`crate::norm`]).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// `[B, C, H, W]` -> `[C*k*k, B*oh*ow]`: row `(c, kh, kw)`, column `(b, i, j)`
/// holds the pixel under window offset `(kh, kw)` at grid position `(i, j)`
/// of image `b`, channel `c` (0 in the padding).
#[derive(Clone, Copy, Debug)]
struct Im2Col(Geometry);

/// `[C*k*k, B*oh*ow]` -> `[B, C, H, W]`: the adjoint of [`Im2Col`] (overlapping windows add up).
#[derive(Clone, Copy, Debug)]
struct Col2Im(Geometry);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s, l, "im2col")?;
        let b = l.dims()[0];
        let (kk, len, hw) = (g.k * g.k, g.oh * g.ow, g.h * g.w);
        let mut out = vec![0f32; g.c * kk * b * len];
        out.par_chunks_mut(b * len).enumerate().for_each(|(r, row)| {
            let (c, kh, kw) = (r / kk, (r % kk) / g.k, r % g.k);
            for bi in 0..b {
                let img = &x[(bi * g.c + c) * hw..(bi * g.c + c + 1) * hw];
                let dst = &mut row[bi * len..(bi + 1) * len];
                let (j0, j1, x0) = g.cols(kw);
                for i in 0..g.oh {
                    let Some(y) = g.row(i, kh) else { continue };
                    let (d, src) = (&mut dst[i * g.ow + j0..i * g.ow + j1], &img[y * g.w..(y + 1) * g.w]);
                    if g.stride == 1 {
                        d.copy_from_slice(&src[x0..x0 + d.len()]);
                    } else {
                        for (v, s) in d.iter_mut().zip(src[x0..].iter().step_by(g.stride)) {
                            *v = *s;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((g.c * kk, b * len))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = contiguous_f32(s, l, "col2im")?;
        let (kk, len, hw) = (g.k * g.k, g.oh * g.ow, g.h * g.w);
        let b = l.dims()[1] / len;
        let mut out = vec![0f32; b * g.c * hw];
        out.par_chunks_mut(hw).enumerate().for_each(|(bc, img)| {
            let (bi, c) = (bc / g.c, bc % g.c);
            for kh in 0..g.k {
                for kw in 0..g.k {
                    let r = c * kk + kh * g.k + kw;
                    let src = &cols[r * b * len + bi * len..r * b * len + (bi + 1) * len];
                    let (j0, j1, x0) = g.cols(kw);
                    for i in 0..g.oh {
                        let Some(y) = g.row(i, kh) else { continue };
                        let (from, dst) = (&src[i * g.ow + j0..i * g.ow + j1], &mut img[y * g.w..(y + 1) * g.w]);
                        if g.stride == 1 {
                            dst[x0..x0 + from.len()].iter_mut().zip(from).for_each(|(d, v)| *d += v);
                        } else {
                            dst[x0..].iter_mut().step_by(g.stride).zip(from).for_each(|(d, v)| *d += v);
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Im2Col(self.0))?))
    }
}

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

/// Output channels up to which a stride-1 convolution is computed directly.
const DIRECT_MAX_OUT: usize = 2;

/// conv2d of `x` `[B, Ci, H, W]` with `w` `[Co, Ci, k, k]` (square kernel,
/// no dilation or groups) as im2col + one matrix product over the whole batch.
pub fn conv2d_gemm(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (co, ci, k, k2) = w.dims4()?;
    if ci != c || k != k2 {
        candle_core::bail!("conv2d_gemm: input {:?}, kernel {:?}", x.dims(), w.dims());
    }
    let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
    let g = Geometry { c, h, w: wd, k, stride, pad, oh, ow };
    let cols = x.contiguous()?.apply_op1(Im2Col(g))?; // [c*k*k, b*oh*ow]
    w.reshape((co, c * k * k))?.matmul(&cols)?.reshape((co, b, oh, ow))?.transpose(0, 1)?.contiguous()
}

/// conv_transpose2d of `x` `[B, Ci, H, W]` with `w` `[Ci, Co, k, k]` as one
/// matrix product over the whole batch + col2im.
pub fn conv_transpose2d_gemm(x: &Tensor, w: &Tensor, stride: usize, pad: usize, output_padding: usize) -> Result<Tensor> {
    let (b, ci, h, wd) = x.dims4()?;
    let (ci2, co, k, k2) = w.dims4()?;
    if ci != ci2 || k != k2 || output_padding >= stride.max(1) {
        candle_core::bail!("conv_transpose2d_gemm: input {:?}, kernel {:?}, output padding {output_padding}", x.dims(), w.dims());
    }
    let (oh, ow) = ((h - 1) * stride + k + output_padding - 2 * pad, (wd - 1) * stride + k + output_padding - 2 * pad);
    let g = Geometry { c: co, h: oh, w: ow, k, stride, pad, oh: h, ow: wd };
    let xs = x.transpose(0, 1)?.contiguous()?.reshape((ci, b * h * wd))?;
    let cols = w.reshape((ci, co * k * k))?.t()?.matmul(&xs)?; // [co*k*k, b*h*w]
    cols.contiguous()?.apply_op1(Col2Im(g))
}

/// Whether to use the gemm path for a tensor on this device.
fn use_gemm(x: &Tensor, transposed: bool) -> bool {
    static MODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mode = MODE.get_or_init(|| std::env::var("DAE_CONV").unwrap_or_default());
    x.device().is_cpu() && mode != "candle" && (transposed || mode != "transposed")
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}

/// A 2-D convolution (square kernel): on the CPU gemm-based (or direct,
/// for few output channels), candle's elsewhere or with `DAE_CONV=candle`.
///
/// Measured on the 2-core CPU (`cargo bench -p dae-train --bench
/// throughput`, `DAE_CONV=candle` for candle's path, side by side in one
/// session): the small CNN at 64 x 64, batch 32, trains at 44-45 samples/s
/// with the gemm path against 25 with candle's (Table 2 row 1: 96-115
/// against 58-67), for 605-693 MB peak memory against 386 (the im2col
/// columns are kept for the backward pass). Later (fused batch norm in
/// place, `--one quick`, three runs each): the direct path for the
/// decoder's last layer took the quick setting from 56-60 to 73-78
/// samples/s and its peak memory from 460-510 to 316-320 MB. ResNet-34 at
/// 224 x 224, batch 8 (`--one resnet34-224`): 0.65 samples/s with candle's
/// operators, 0.91 with the gemm path in the encoder, 1.30 in encoder and
/// decoder, for 1.7 -> 2.8 GB peak memory (before the fused batch norm the
/// gemm path was not faster there and needed 6 GB, so it was off for the
/// ResNets until then).
#[derive(Clone, Debug)]
pub struct Conv {
    inner: Conv2d,
    stride: usize,
    pad: usize,
}

impl Conv {
    pub fn new(cin: usize, cout: usize, k: usize, cfg: Conv2dConfig, bias: bool, vb: VarBuilder) -> Result<Self> {
        let inner = if bias { candle_nn::conv2d(cin, cout, k, cfg, vb)? } else { candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)? };
        if cfg.dilation != 1 || cfg.groups != 1 {
            candle_core::bail!("Conv: dilation and groups are not supported");
        }
        Ok(Self { inner, stride: cfg.stride, pad: cfg.padding })
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !use_gemm(x, false) {
            return self.inner.forward(x);
        }
        let w = self.inner.weight();
        let y = if self.stride == 1 && w.dim(0)? <= DIRECT_MAX_OUT {
            conv2d_direct(x, w, self.pad)?
        } else {
            conv2d_gemm(x, w, self.stride, self.pad)?
        };
        add_bias(y, self.inner.bias())
    }
}

/// A 2-D transposed convolution (square kernel): gemm-based on the CPU, candle's elsewhere or with `DAE_CONV=candle`.
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    inner: ConvTranspose2d,
    cfg: ConvTranspose2dConfig,
}

impl ConvTranspose {
    pub fn new(cin: usize, cout: usize, k: usize, cfg: ConvTranspose2dConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.dilation != 1 {
            candle_core::bail!("ConvTranspose: dilation is not supported");
        }
        Ok(Self { inner: candle_nn::conv_transpose2d(cin, cout, k, cfg, vb)?, cfg })
    }
}

impl Module for ConvTranspose {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !use_gemm(x, true) {
            return self.inner.forward(x);
        }
        let y = conv_transpose2d_gemm(x, self.inner.weight(), self.cfg.stride, self.cfg.padding, self.cfg.output_padding)?;
        add_bias(y, self.inner.bias())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut r = dae_data::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| r.normal() as f32).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// Values and both gradients against candle's own operator.
    fn check(transposed: bool, x_shape: &[usize], w_shape: &[usize], stride: usize, pad: usize, out_pad: usize) {
        check_with(transposed, false, x_shape, w_shape, stride, pad, out_pad)
    }

    fn check_with(transposed: bool, direct: bool, x_shape: &[usize], w_shape: &[usize], stride: usize, pad: usize, out_pad: usize) {
        let x = Var::from_tensor(&rand(x_shape, 1)).unwrap();
        let w = Var::from_tensor(&rand(w_shape, 2)).unwrap();
        let ours = if transposed {
            conv_transpose2d_gemm(x.as_tensor(), w.as_tensor(), stride, pad, out_pad).unwrap()
        } else if direct {
            conv2d_direct(x.as_tensor(), w.as_tensor(), pad).unwrap()
        } else {
            conv2d_gemm(x.as_tensor(), w.as_tensor(), stride, pad).unwrap()
        };
        let theirs = if transposed {
            x.as_tensor().conv_transpose2d(w.as_tensor(), pad, out_pad, stride, 1).unwrap()
        } else {
            x.as_tensor().conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap()
        };
        let what = format!("transposed={transposed} direct={direct} x{x_shape:?} w{w_shape:?} s{stride} p{pad} op{out_pad}");
        assert!(max_diff(&ours, &theirs) < 1e-4, "values: {what}");
        // A fixed random upstream gradient.
        let up = rand(ours.dims(), 3);
        let g1 = (&ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("kernel", &w)] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, b) < 1e-3, "{name} gradient: {what}");
        }
    }

    #[test]
    fn gemm_convolutions_match_candle_in_values_and_gradients() {
        // The encoder's and decoder's shapes: 3x3 stride 1 and 2, the ResNet
        // stem (7x7/2) and shortcut (1x1/2), the decoder's 4x4/2 transposed.
        check(false, &[2, 3, 9, 9], &[4, 3, 3, 3], 1, 1, 0);
        check(false, &[2, 3, 10, 10], &[5, 3, 3, 3], 2, 1, 0);
        check(false, &[2, 1, 16, 16], &[4, 1, 7, 7], 2, 3, 0);
        check(false, &[2, 4, 8, 8], &[6, 4, 1, 1], 2, 0, 0);
        // Odd sizes with stride 2, wide padding, non-square images.
        check(false, &[3, 2, 7, 7], &[3, 2, 3, 3], 2, 1, 0);
        check(false, &[1, 2, 6, 11], &[2, 2, 5, 5], 1, 2, 0);
        check(false, &[1, 2, 9, 9], &[2, 2, 5, 5], 3, 2, 0); // (candle's own backward fails on non-square inputs here)
        check(true, &[2, 4, 4, 4], &[4, 3, 4, 4], 2, 1, 0);
        check(true, &[1, 2, 5, 5], &[2, 3, 3, 3], 2, 1, 1);
        check(true, &[2, 3, 6, 6], &[3, 2, 3, 3], 1, 1, 0);
        check(true, &[1, 2, 3, 7], &[2, 2, 4, 4], 2, 1, 0);
    }

    #[test]
    fn direct_convolution_matches_candle_in_values_and_gradients() {
        // The decoder's last layer (3x3, padding 1, to one channel), two
        // output channels, no padding, a wide kernel on a non-square image.
        check_with(false, true, &[3, 4, 9, 9], &[1, 4, 3, 3], 1, 1, 0);
        check_with(false, true, &[2, 3, 8, 8], &[2, 3, 3, 3], 1, 0, 0);
        check_with(false, true, &[2, 2, 6, 11], &[1, 2, 5, 5], 1, 2, 0);
        check_with(false, true, &[2, 2, 20, 21], &[2, 2, 3, 3], 1, 1, 0);
    }
}
