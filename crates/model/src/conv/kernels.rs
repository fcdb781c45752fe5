//! The CPU convolutions as whole operations (one autograd node each, with a
//! hand-written backward): per image, an [`Geometry::im2col`] or
//! [`Geometry::col2im`] into a buffer of the thread's own and one matrix
//! product (`gemm`, single-threaded; the images run in parallel). Nothing
//! but the output is allocated per call, the window matrices stay in the
//! cache, and no window matrix is kept for the backward pass (it is
//! rebuilt there from the input).
//!
//! Three kernels make both convolutions and both their backward passes
//! (`K = c*k*k` rows of the window matrix of `g`, `len = oh*ow` columns):
//! - [`Kernel::GatherGemm`]: `out_b [m, len] = w [m, K] . im2col(in_b)`;
//! - [`Kernel::GemmScatter`]: `out_b = col2im(w^T [K, m] . in_b [m, len])`;
//! - [`Kernel::WeightGrad`]: `out [m, K] = sum_b in2_b [m, len] . im2col(in1_b)^T`.
//!
//! conv2d is `GatherGemm(x, w)`, its input gradient `GemmScatter(dy, w)`
//! (skipped for the network's input) and its weight gradient
//! `WeightGrad(x, dy)`; conv_transpose2d is `GemmScatter(x, w)`, and its
//! backward `GatherGemm(dy, w)` and `WeightGrad(dy, x)` in one pass
//! ([`TransposeBackward`]: the window matrix of each image of `dy` built
//! once for both).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use super::geometry::Geometry;
use crate::{lanes, par};

/// A row-major view of a matrix with its strides (in elements).
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    /// Row and column strides.
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major `[rows, cols]` matrix.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }
    /// Whether element `(r, c)` is inside `data` for every `r < m`, `c < n`.
    fn covers(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rs + (n - 1) * self.cs < self.data.len()
    }
}

/// `dst [m, n] = (dst if accumulate) + a [m, k] . b [k, n]`, `dst` row-major, single-threaded.
fn matmul(dst: &mut [f32], accumulate: bool, a: Mat, b: Mat, (m, n, k): (usize, usize, usize)) {
    matmul_into(dst, (n, 1), accumulate, a, b, (m, n, k))
}

/// [`matmul`] with `dst`'s row and column strides `(rs, cs)`.
fn matmul_into(dst: &mut [f32], (rs, cs): (usize, usize), accumulate: bool, a: Mat, b: Mat, (m, n, k): (usize, usize, usize)) {
    let len = dst.len();
    // SAFETY: `dst` is initialised, so gemm may read it.
    unsafe { gemm_checked((dst.as_mut_ptr(), len), (rs, cs), accumulate, a, b, (m, n, k)) }
}

/// `dst [m, n] = a . b`, `dst` row-major and possibly uninitialised: gemm
/// writes each of its first `m * n` elements without reading it.
fn matmul_uninit(dst: &mut [MaybeUninit<f32>], a: Mat, b: Mat, (m, n, k): (usize, usize, usize)) {
    let len = dst.len();
    assert_eq!(len, m * n, "matmul_uninit: the output must be exactly `[m, n]`");
    // SAFETY: with `accumulate` false gemm does not read `dst` (MaybeUninit<f32> has f32's layout).
    unsafe { gemm_checked((dst.as_mut_ptr().cast::<f32>(), len), (n, 1), false, a, b, (m, n, k)) }
}

/// The single-threaded gemm call behind [`matmul_into`] and [`matmul_uninit`],
/// after checking that every index it touches is inside `dst` (`len`
/// elements from the pointer) and the operands.
///
/// # Safety
/// `dst` points to `len` writable f32s, initialised where `accumulate` is set.
unsafe fn gemm_checked(
    (dst, len): (*mut f32, usize),
    (rs, cs): (usize, usize),
    accumulate: bool,
    a: Mat,
    b: Mat,
    (m, n, k): (usize, usize, usize),
) {
    let fits = m == 0 || n == 0 || (m - 1) * rs + (n - 1) * cs < len;
    assert!(fits && a.covers(m, k) && b.covers(k, n), "matmul: operand smaller than its shape");
    // SAFETY: every index gemm touches is inside the slices (checked just
    // above); the caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Images per task of [`Kernel::WeightGrad`]: fixed (not per thread), so
/// that the partial sums, and the order they are added in, depend on the
/// batch alone and the result is the same on any number of threads.
const WEIGHT_GRAD_CHUNK: usize = 4;

/// One of the three kernels (see the module doc), with the window geometry
/// `g` and `m` (the channels of the side that is not windowed).
#[derive(Clone, Copy, Debug)]
pub(super) enum Kernel {
    GatherGemm { g: Geometry, m: usize },
    GemmScatter { g: Geometry, m: usize },
    WeightGrad { g: Geometry, m: usize },
}

/// `out_b [m, len] = w [m, K] . im2col(in_b)` for every image.
fn gather_gemm(g: &Geometry, m: usize, input: &[f32], w: &[f32]) -> Vec<f32> {
    let (kk, len, il) = (g.window_len(), g.grid_len(), g.image_len());
    assert_eq!(input.len() % il, 0, "gather_gemm: input not whole images");
    // SAFETY: every chunk is one image's whole `[m, len]` output, which
    // `matmul_uninit` writes (or panics).
    unsafe {
        par::written(input.len() / il * m * len, m * len, |i, o| {
            par::with_scratch(kk * len, 0, |cols, _| {
                g.im2col(&input[i * il..(i + 1) * il], cols);
                matmul_uninit(o, Mat::rows(w, kk), Mat::rows(cols, len), (m, len, kk));
            })
        })
    }
}

/// `out_b = col2im(w^T [K, m] . in_b [m, len])` for every image.
fn gemm_scatter(g: &Geometry, m: usize, input: &[f32], w: &[f32]) -> Vec<f32> {
    let (kk, len, ml) = (g.window_len(), g.grid_len(), m * g.grid_len());
    par::filled(input.len() / ml * g.image_len(), g.image_len(), |i, img| {
        par::with_scratch(kk * len, 0, |cols, _| {
            matmul(cols, false, Mat::transposed(w, kk), Mat::rows(&input[i * ml..(i + 1) * ml], len), (kk, len, m));
            g.col2im(cols, img);
        })
    })
}

/// `sum_b small_b [m, len] . im2col(img_b)^T`, `[m, K]`.
fn weight_grad(g: &Geometry, m: usize, imgs: &[f32], small: &[f32]) -> Vec<f32> {
    let (il, len) = (g.image_len(), g.grid_len());
    let partials: Vec<Vec<f32>> = imgs
        .par_chunks(il * WEIGHT_GRAD_CHUNK)
        .zip(small.par_chunks(m * len * WEIGHT_GRAD_CHUNK))
        .map(|(imgs, small)| chunk_weight_grad(g, m, imgs, small, None))
        .collect();
    transpose(&sum_in_order(partials, m * g.window_len()), g.window_len(), m)
}

/// `[rows, cols]` row-major -> its transpose `[cols, rows]`.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    lanes::transpose(src, rows, cols, &mut out);
    out
}

/// [`gather_gemm`] of `(dy, w)` and [`weight_grad`] of `(dy, x)` together,
/// each image's window matrix of `dy` built once for both: the backward
/// pass of conv_transpose2d. Returns `(dx, dw)`.
fn gather_gemm_with_weight_grad(g: &Geometry, m: usize, dy: &[f32], w: &[f32], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (il, len) = (g.image_len(), g.grid_len());
    let mut dx = vec![0f32; dy.len() / il * m * len];
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(m * len * WEIGHT_GRAD_CHUNK)
        .zip(dy.par_chunks(il * WEIGHT_GRAD_CHUNK))
        .zip(x.par_chunks(m * len * WEIGHT_GRAD_CHUNK))
        .map(|((dxs, dys), xs)| chunk_weight_grad(g, m, dys, xs, Some((dxs, w))))
        .collect();
    (dx, transpose(&sum_in_order(partials, m * g.window_len()), g.window_len(), m))
}

/// One chunk of images of [`weight_grad`]: `sum_b small_b . im2col(img_b)^T`
/// in image order, transposed (`[K, m]`); with `gather = Some((out, w))`,
/// also [`gather_gemm`]'s `out_b = w . im2col(img_b)` from the same window
/// matrix.
///
/// Each `small_b` is transposed first, and the sum is kept as its
/// transpose: so both of gemm's operands are column-major and neither needs
/// packing (with `small_b` as it is and the sum `[m, K]`, gemm gathered the
/// whole window matrix across rows for every image: 12% of the CPU time of
/// a training step of the small CNN).
fn chunk_weight_grad(g: &Geometry, m: usize, imgs: &[f32], small: &[f32], mut gather: Option<(&mut [f32], &[f32])>) -> Vec<f32> {
    let (kk, len, il) = (g.window_len(), g.grid_len(), g.image_len());
    let mut acc_t = vec![0f32; m * kk];
    par::with_scratch(kk * len, m * len, |cols, small_t| {
        for (i, (img, s)) in imgs.chunks_exact(il).zip(small.chunks_exact(m * len)).enumerate() {
            g.im2col(img, cols);
            if let Some((out, w)) = gather.as_mut() {
                matmul(&mut out[i * m * len..(i + 1) * m * len], false, Mat::rows(w, kk), Mat::rows(cols, len), (m, len, kk));
            }
            lanes::transpose(s, m, len, small_t);
            // acc_t [K, m] row-major is `[m, K]` column-major: strides (1, m).
            matmul_into(&mut acc_t, (1, m), i > 0, Mat::transposed(small_t, m), Mat::transposed(cols, len), (m, kk, len));
        }
    });
    acc_t
}

/// The sum of equally long partial sums, added in their order.
fn sum_in_order(partials: Vec<Vec<f32>>, n: usize) -> Vec<f32> {
    let mut parts = partials.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0f32; n]);
    for p in parts {
        sum.iter_mut().zip(&p).for_each(|(s, v)| *s += v);
    }
    sum
}

impl Kernel {
    fn parts(&self) -> (&'static str, Geometry, usize) {
        match *self {
            Kernel::GatherGemm { g, m } => ("conv-gather-gemm", g, m),
            Kernel::GemmScatter { g, m } => ("conv-gemm-scatter", g, m),
            Kernel::WeightGrad { g, m } => ("conv-weight-grad", g, m),
        }
    }

    /// The expected `[B, channels, rows, cols]` of the first input, and its batch.
    fn batch(&self, l: &Layout) -> Result<usize> {
        let (name, g, m) = self.parts();
        let want = match self {
            Kernel::GatherGemm { .. } | Kernel::WeightGrad { .. } => (g.c, g.h, g.w),
            Kernel::GemmScatter { .. } => (m, g.oh, g.ow),
        };
        match l.dims() {
            &[b, c, h, w] if (c, h, w) == want => Ok(b),
            d => candle_core::bail!("{name}: input {d:?}, expected [B, {}, {}, {}]", want.0, want.1, want.2),
        }
    }
}

impl CustomOp2 for Kernel {
    fn name(&self) -> &'static str {
        self.parts().0
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (name, g, m) = self.parts();
        let b = self.batch(l1)?;
        let (a, w) = (contiguous_f32(s1, l1, name)?, contiguous_f32(s2, l2, name)?);
        let second = match self {
            Kernel::WeightGrad { .. } => b * m * g.grid_len(),
            _ => m * g.window_len(),
        };
        if w.len() != second {
            candle_core::bail!("{name}: second input of {} values, expected {second}", w.len());
        }
        let (out, shape) = match self {
            Kernel::GatherGemm { .. } => (gather_gemm(&g, m, a, w), Shape::from((b, m, g.oh, g.ow))),
            Kernel::GemmScatter { .. } => (gemm_scatter(&g, m, a, w), Shape::from((b, g.c, g.h, g.w))),
            Kernel::WeightGrad { .. } => (weight_grad(&g, m, a, w), Shape::from((m, g.c, g.k, g.k))),
        };
        Ok((CpuStorage::F32(out), shape))
    }
}

/// conv2d as one operation: `(x [B, C, H, W], w [O, C, k, k])` -> `[B, O, oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Conv2dOp {
    pub g: Geometry,
    pub o: usize,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Kernel::GatherGemm { g: self.g, m: self.o }.cpu_fwd(s1, l1, s2, l2)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, m) = (self.g, self.o);
        let dy = dy.contiguous()?;
        // The network's input needs no gradient: the stem skips it.
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &Kernel::GemmScatter { g, m })?) } else { None };
        let dw = x.apply_op2_no_bwd(&dy, &Kernel::WeightGrad { g, m })?;
        Ok((dx, Some(dw)))
    }
}

/// conv_transpose2d as one operation: `(x [B, Ci, h, w], w [Ci, Co, k, k])`
/// -> `[B, Co, H, W]`; `g` is the geometry of the output image (`c = Co`,
/// grid `h x w`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvTranspose2dOp {
    pub g: Geometry,
    pub ci: usize,
}

impl CustomOp2 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        "conv-transpose2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Kernel::GemmScatter { g: self.g, m: self.ci }.cpu_fwd(s1, l1, s2, l2)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = dy.contiguous()?.apply_op3_no_bwd(w, x, &TransposeBackward { g: self.g, m: self.ci })?;
        let nx = x.elem_count();
        let dx = both.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// The backward pass of [`ConvTranspose2dOp`]: `(dy, w, x)` -> `dx` and
/// `dw` flattened one after the other (see [`gather_gemm_with_weight_grad`]).
#[derive(Clone, Copy, Debug)]
struct TransposeBackward {
    g: Geometry,
    m: usize,
}

impl CustomOp3 for TransposeBackward {
    fn name(&self) -> &'static str {
        "conv-transpose2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (name, g, m) = ("conv-transpose2d backward", self.g, self.m);
        let b = Kernel::GatherGemm { g, m }.batch(l1)?;
        let (dy, w, x) = (contiguous_f32(s1, l1, name)?, contiguous_f32(s2, l2, name)?, contiguous_f32(s3, l3, name)?);
        if w.len() != m * g.window_len() || x.len() != b * m * g.grid_len() {
            candle_core::bail!(
                "{name}: weights of {} values and input of {}, expected {} and {}",
                w.len(),
                x.len(),
                m * g.window_len(),
                b * m * g.grid_len()
            );
        }
        let (mut dx, dw) = gather_gemm_with_weight_grad(&g, m, dy, w, x);
        dx.extend_from_slice(&dw);
        let n = dx.len();
        Ok((CpuStorage::F32(dx), Shape::from(n)))
    }
}

/// `y + b` per channel of `y [B, C, ...]`, with a backward that sums the
/// gradient per channel in one pass (candle's broadcast add reduces it
/// over three dimensions with a generic strided loop).
#[derive(Clone, Copy, Debug)]
pub(super) struct ChannelBias;

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "channel-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, b) = (contiguous_f32(s1, l1, "channel bias")?, contiguous_f32(s2, l2, "channel bias")?);
        let d = l1.dims();
        if d.len() < 2 || d[1] != b.len() {
            candle_core::bail!("channel bias: input {d:?}, bias of {} values", b.len());
        }
        let (c, hw) = (d[1], d[2..].iter().product::<usize>().max(1));
        let mut out = y.to_vec();
        out.par_chunks_mut(hw).enumerate().for_each(|(bc, o)| o.iter_mut().for_each(|v| *v += b[bc % c]));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad.contiguous()?.apply_op1_no_bwd(&ChannelSums)?.reshape(b.shape())?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// `[B, C, ...]` -> `[C]`: the sum of each channel (in f64, in a fixed order).
#[derive(Clone, Copy, Debug)]
struct ChannelSums;

impl candle_core::CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "channel-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s, l, "channel sums")?;
        let d = l.dims();
        if d.len() < 2 {
            candle_core::bail!("channel sums: input {d:?}, expected [B, C, ...]");
        }
        let (c, hw) = (d[1], d[2..].iter().product::<usize>());
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                g.chunks_exact(hw.max(1)).skip(ch).step_by(c.max(1)).map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}
