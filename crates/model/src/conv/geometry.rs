//! The window geometry of a convolution and the two rearrangements around
//! its matrix products, for one image at a time: `im2col` (an image to the
//! matrix of its windows) and `col2im` (the adjoint: windows added back).

use crate::lanes;

/// An image of `c` channels and `h x w` pixels, a `k x k` window with
/// `stride` and `pad`, and the `oh x ow` grid of window positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// Rows of the window matrix: `c * k * k`.
    pub fn window_len(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of the window matrix: `oh * ow`.
    pub fn grid_len(&self) -> usize {
        self.oh * self.ow
    }

    /// Values in one image: `c * h * w`.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// The image row under window row `kh` at grid row `i`, if inside.
    #[inline]
    pub fn row(&self, i: usize, kh: usize) -> Option<usize> {
        (i * self.stride + kh).checked_sub(self.pad).filter(|&y| y < self.h)
    }

    /// The grid columns `j0..j1` whose pixel under window column `kw`
    /// (`x = j * stride + kw - pad`) is inside the image, and `x` at `j0`.
    #[inline]
    pub fn cols(&self, kw: usize) -> (usize, usize, usize) {
        let s = self.stride;
        let j0 = if self.pad > kw { (self.pad - kw).div_ceil(s) } else { 0 };
        let j1 = if self.w + self.pad > kw { (self.w + self.pad - kw).div_ceil(s).min(self.ow) } else { 0 };
        let j0 = j0.min(j1);
        (j0, j1, (j0 * s + kw).saturating_sub(self.pad))
    }

    /// One image `[c, h, w]` -> its window matrix `[c*k*k, oh*ow]`: row
    /// `(c, kh, kw)`, column `(i, j)` holds the pixel under window offset
    /// `(kh, kw)` at grid position `(i, j)`, 0 in the padding. Overwrites
    /// all of `cols` (a buffer reused from image to image).
    pub fn im2col(&self, img: &[f32], cols: &mut [f32]) {
        let (kk, len, hw) = (self.k * self.k, self.grid_len(), self.h * self.w);
        for (r, dst) in cols.chunks_exact_mut(len).enumerate() {
            let (c, kh, kw) = (r / kk, (r % kk) / self.k, r % self.k);
            let src = &img[c * hw..(c + 1) * hw];
            let (j0, j1, x0) = self.cols(kw);
            for (i, d) in dst.chunks_exact_mut(self.ow).enumerate() {
                let Some(y) = self.row(i, kh) else {
                    d.fill(0.0);
                    continue;
                };
                d[..j0].fill(0.0);
                d[j1..].fill(0.0);
                let line = &src[y * self.w..(y + 1) * self.w];
                match self.stride {
                    1 => d[j0..j1].copy_from_slice(&line[x0..x0 + j1 - j0]),
                    2 => lanes::gather_even(&mut d[j0..j1], &line[x0..]),
                    s => d[j0..j1].iter_mut().zip(line[x0..].iter().step_by(s)).for_each(|(v, s)| *v = *s),
                }
            }
        }
    }

    /// The adjoint of [`Geometry::im2col`]: adds each window of `cols`
    /// `[c*k*k, oh*ow]` back into `img` `[c, h, w]` (overlaps add up; the
    /// caller zeroes `img` first).
    pub fn col2im(&self, cols: &[f32], img: &mut [f32]) {
        let (kk, len, hw) = (self.k * self.k, self.grid_len(), self.h * self.w);
        for (r, src) in cols.chunks_exact(len).enumerate() {
            let (c, kh, kw) = (r / kk, (r % kk) / self.k, r % self.k);
            let dst = &mut img[c * hw..(c + 1) * hw];
            let (j0, j1, x0) = self.cols(kw);
            for (i, s) in src.chunks_exact(self.ow).enumerate() {
                let Some(y) = self.row(i, kh) else { continue };
                let line = &mut dst[y * self.w..(y + 1) * self.w];
                match self.stride {
                    1 => line[x0..x0 + j1 - j0].iter_mut().zip(&s[j0..j1]).for_each(|(d, v)| *d += v),
                    2 => lanes::scatter_add_even(&mut line[x0..], &s[j0..j1]),
                    st => line[x0..].iter_mut().step_by(st).zip(&s[j0..j1]).for_each(|(d, v)| *d += v),
                }
            }
        }
    }
}
