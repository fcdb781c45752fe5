//! Inner loops written out in SIMD lanes because the compiler did not
//! vectorise them: SSE2 intrinsics on x86-64 (always present there), plain
//! Rust elsewhere, both giving the same bits.
//!
//! - The batch-norm backward's two loops, in eight f32 lanes: the ReLU's
//!   gate (`g`, or 0 where the layer's output was clipped) became a branch
//!   per element, mispredicted on about every other element of a ReLU's
//!   output, and the batch-norm backward was a sixth of a training step of
//!   the small CNN (`docs/performance.md`).
//! - The stride-2 copies of im2col and col2im (every second pixel of an
//!   image row), which compiled to one load and one store per element, and
//!   matrix transposes, in blocks of 4 x 4.

use std::mem::MaybeUninit;

/// `g`, or 0 where `relu` and `y <= 0`: the gradient through a ReLU whose output was `y`.
#[inline(always)]
fn relu_gate(g: f32, y: f32, relu: bool) -> f32 {
    if relu && y <= 0.0 {
        0.0
    } else {
        g
    }
}

/// `(sum(g'), sum(g' * (x - m)))` over equally long slices, `g' =
/// relu_gate(g, y, relu)`: eight f32 partial sums (element `i` in lane `i %
/// 8`), added in f64 in lane order, then the tail.
pub(crate) fn grad_sums(xs: &[f32], ys: &[f32], gs: &[f32], m: f32, relu: bool) -> (f64, f64) {
    assert!(xs.len() == ys.len() && xs.len() == gs.len(), "grad_sums: slices of different lengths");
    let body = xs.len() / 8 * 8;
    let (a, b) = imp::grad_lanes(&xs[..body], &ys[..body], &gs[..body], m, relu);
    let (mut sa, mut sb) = (a.iter().map(|&v| v as f64).sum::<f64>(), b.iter().map(|&v| v as f64).sum::<f64>());
    for i in body..xs.len() {
        let g = relu_gate(gs[i], ys[i], relu);
        sa += g as f64;
        sb += (g * (xs[i] - m)) as f64;
    }
    (sa, sb)
}

/// `d = k * (g' - c1 - (x - m) * c2)` element by element, `g' = relu_gate(g, y, relu)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_grad(d: &mut [MaybeUninit<f32>], xs: &[f32], ys: &[f32], gs: &[f32], m: f32, k: f32, (c1, c2): (f32, f32), relu: bool) {
    let n = d.len();
    assert!(xs.len() == n && ys.len() == n && gs.len() == n, "input_grad: slices of different lengths");
    let body = n / 8 * 8;
    imp::input_grad_lanes(&mut d[..body], &xs[..body], &ys[..body], &gs[..body], m, k, (c1, c2), relu);
    for i in body..n {
        d[i].write(k * (relu_gate(gs[i], ys[i], relu) - c1 - (xs[i] - m) * c2));
    }
}

/// `dst[t] = src[2 * t]` for every `t < dst.len()`.
pub(crate) fn gather_even(dst: &mut [f32], src: &[f32]) {
    let body = even_body(dst.len(), src.len(), "gather_even");
    imp::gather_even_lanes(&mut dst[..body], &src[..2 * body]);
    for t in body..dst.len() {
        dst[t] = src[2 * t];
    }
}

/// `dst[2 * t] += src[t]` for every `t < src.len()`.
pub(crate) fn scatter_add_even(dst: &mut [f32], src: &[f32]) {
    let body = even_body(src.len(), dst.len(), "scatter_add_even");
    imp::scatter_add_even_lanes(&mut dst[..2 * body], &src[..body]);
    for t in body..src.len() {
        dst[2 * t] += src[t];
    }
}

/// `out [cols, rows] = src [rows, cols]` transposed (both row-major), in
/// tiles of 16 x 16 that stay in the cache and blocks of 4 x 4 in lanes
/// within them (the weight gradient's per-image transposes were 5% of a
/// training step of Table 2's row 1 as a scalar loop).
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 16;
    assert!(src.len() >= rows * cols && out.len() >= rows * cols, "transpose: buffer smaller than its shape");
    let (r4, c4) = (rows / 4 * 4, cols / 4 * 4);
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            let (r1, c1) = ((r0 + T).min(rows), (c0 + T).min(cols));
            for r in (r0..r1.min(r4)).step_by(4) {
                for c in (c0..c1.min(c4)).step_by(4) {
                    imp::transpose4(src, cols, (r, c), out, rows);
                }
            }
            // The edges a 4 x 4 block does not cover.
            for r in r0..r1 {
                let from = if r < r4 { c1.min(c4).max(c0) } else { c0 };
                for c in from..c1 {
                    out[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// How many of the `short` side's values a stride-2 copy takes four at a
/// time: each four span eight of the `long` side, as many as it holds
/// (which must reach index `2 * (short - 1)`); the rest is the tail.
fn even_body(short: usize, long: usize, what: &str) -> usize {
    assert!(short == 0 || long > 2 * (short - 1), "{what}: {long} values on the long side for {short} on the short");
    (long / 8).min(short / 4) * 4
}

#[cfg(target_arch = "x86_64")]
mod imp {
    //! SSE2 is part of x86-64, so every intrinsic here is available; they
    //! are `unsafe` to call only because this code is not compiled under
    //! `#[target_feature]`. The loads and stores go through bounds-checked
    //! slices of four.
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Four lanes of `s` from `at`.
    #[inline(always)]
    fn load(s: &[f32], at: usize) -> __m128 {
        let four = &s[at..at + 4];
        // SAFETY: `four` holds four f32s; the load is unaligned.
        unsafe { _mm_loadu_ps(four.as_ptr()) }
    }

    fn store(v: __m128, out: &mut [f32]) {
        let four = &mut out[..4];
        // SAFETY: `four` holds four f32s; the store is unaligned.
        unsafe { _mm_storeu_ps(four.as_mut_ptr(), v) }
    }

    /// [`store`] into memory that may be uninitialised (it is written, not read).
    fn store_uninit(v: __m128, out: &mut [MaybeUninit<f32>]) {
        let four = &mut out[..4];
        // SAFETY: `four` holds four f32s (MaybeUninit<f32> has f32's layout); the store is unaligned.
        unsafe { _mm_storeu_ps(four.as_mut_ptr().cast::<f32>(), v) }
    }

    /// [`super::relu_gate`] of four lanes: `!(y <= 0)` keeps `g`, as the scalar version does.
    #[inline(always)]
    fn gate(g: __m128, y: __m128, relu: bool) -> __m128 {
        // SAFETY: SSE2 intrinsics on registers (see the module doc).
        unsafe {
            if relu {
                _mm_and_ps(g, _mm_cmpnle_ps(y, _mm_setzero_ps()))
            } else {
                g
            }
        }
    }

    pub(super) fn grad_lanes(xs: &[f32], ys: &[f32], gs: &[f32], m: f32, relu: bool) -> ([f32; 8], [f32; 8]) {
        // SAFETY: SSE2 intrinsics on registers (see the module doc).
        unsafe {
            let mv = _mm_set1_ps(m);
            let mut acc = [_mm_setzero_ps(); 4];
            for i in (0..xs.len()).step_by(8) {
                for h in 0..2 {
                    let g = gate(load(gs, i + 4 * h), load(ys, i + 4 * h), relu);
                    acc[h] = _mm_add_ps(acc[h], g);
                    acc[2 + h] = _mm_add_ps(acc[2 + h], _mm_mul_ps(g, _mm_sub_ps(load(xs, i + 4 * h), mv)));
                }
            }
            let mut out = [0f32; 16];
            for (v, o) in acc.into_iter().zip(out.chunks_exact_mut(4)) {
                store(v, o);
            }
            let (a, b) = out.split_at(8);
            (a.try_into().expect("eight lanes"), b.try_into().expect("eight lanes"))
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn input_grad_lanes(
        d: &mut [MaybeUninit<f32>],
        xs: &[f32],
        ys: &[f32],
        gs: &[f32],
        m: f32,
        k: f32,
        (c1, c2): (f32, f32),
        relu: bool,
    ) {
        // SAFETY: SSE2 intrinsics on registers (see the module doc).
        unsafe {
            let (mv, kv, c1v, c2v) = (_mm_set1_ps(m), _mm_set1_ps(k), _mm_set1_ps(c1), _mm_set1_ps(c2));
            for (i, out) in d.chunks_exact_mut(4).enumerate() {
                let g = gate(load(gs, 4 * i), load(ys, 4 * i), relu);
                let v = _mm_mul_ps(kv, _mm_sub_ps(_mm_sub_ps(g, c1v), _mm_mul_ps(_mm_sub_ps(load(xs, 4 * i), mv), c2v)));
                store_uninit(v, out);
            }
        }
    }

    /// The 4 x 4 block at `(r, c)` of `src` (row stride `sc`) to `(c, r)`
    /// of `out` (row stride `so`).
    #[inline(always)]
    pub(super) fn transpose4(src: &[f32], sc: usize, (r, c): (usize, usize), out: &mut [f32], so: usize) {
        let [a, b, cc, d] = [0, 1, 2, 3].map(|i| load(src, (r + i) * sc + c));
        // SAFETY: SSE2 intrinsics on registers (see the module doc).
        let rows = unsafe {
            let (t0, t1) = (_mm_unpacklo_ps(a, b), _mm_unpacklo_ps(cc, d));
            let (t2, t3) = (_mm_unpackhi_ps(a, b), _mm_unpackhi_ps(cc, d));
            [_mm_movelh_ps(t0, t1), _mm_movehl_ps(t1, t0), _mm_movelh_ps(t2, t3), _mm_movehl_ps(t3, t2)]
        };
        for (i, v) in rows.into_iter().enumerate() {
            store(v, &mut out[(c + i) * so + r..]);
        }
    }

    /// `dst[t] = src[2t]`, four at a time (`src` twice as long as `dst`).
    pub(super) fn gather_even_lanes(dst: &mut [f32], src: &[f32]) {
        for (t, out) in dst.chunks_exact_mut(4).enumerate() {
            let (a, b) = (load(src, 8 * t), load(src, 8 * t + 4));
            // SAFETY: SSE2 intrinsics on registers (see the module doc).
            store(unsafe { _mm_shuffle_ps::<0b10_00_10_00>(a, b) }, out);
        }
    }

    /// `dst[2t] += src[t]`, four at a time; the odd elements get `-0.0`
    /// added, which leaves every value (and its bits) as it was.
    pub(super) fn scatter_add_even_lanes(dst: &mut [f32], src: &[f32]) {
        for (t, out) in dst.chunks_exact_mut(8).enumerate() {
            // SAFETY: SSE2 intrinsics on registers (see the module doc).
            let (lo, hi) = unsafe {
                let (v, z) = (load(src, 4 * t), _mm_set1_ps(-0.0));
                (_mm_add_ps(load(out, 0), _mm_unpacklo_ps(v, z)), _mm_add_ps(load(out, 4), _mm_unpackhi_ps(v, z)))
            };
            let (a, b) = out.split_at_mut(4);
            store(lo, a);
            store(hi, b);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::relu_gate;
    use std::mem::MaybeUninit;

    pub(super) fn transpose4(src: &[f32], sc: usize, (r, c): (usize, usize), out: &mut [f32], so: usize) {
        for i in 0..4 {
            for j in 0..4 {
                out[(c + j) * so + r + i] = src[(r + i) * sc + c + j];
            }
        }
    }

    pub(super) fn gather_even_lanes(dst: &mut [f32], src: &[f32]) {
        for (t, d) in dst.iter_mut().enumerate() {
            *d = src[2 * t];
        }
    }

    pub(super) fn scatter_add_even_lanes(dst: &mut [f32], src: &[f32]) {
        for (t, v) in src.iter().enumerate() {
            dst[2 * t] += v;
        }
    }

    pub(super) fn grad_lanes(xs: &[f32], ys: &[f32], gs: &[f32], m: f32, relu: bool) -> ([f32; 8], [f32; 8]) {
        let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
        for i in 0..xs.len() {
            let g = relu_gate(gs[i], ys[i], relu);
            a[i % 8] += g;
            b[i % 8] += g * (xs[i] - m);
        }
        (a, b)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn input_grad_lanes(
        d: &mut [MaybeUninit<f32>],
        xs: &[f32],
        ys: &[f32],
        gs: &[f32],
        m: f32,
        k: f32,
        (c1, c2): (f32, f32),
        relu: bool,
    ) {
        for i in 0..d.len() {
            d[i].write(k * (relu_gate(gs[i], ys[i], relu) - c1 - (xs[i] - m) * c2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length and slack of the source (or destination) around the
    /// four-lane body, against the plain loops, bit for bit.
    #[test]
    fn stride_two_copies_match_the_plain_loops() {
        let mut r = dae_data::rng::Rng::new(3);
        for n in 0..21 {
            for slack in 0..3 {
                let long = if n == 0 { slack } else { 2 * (n - 1) + 1 + slack };
                let src: Vec<f32> = (0..long).map(|_| r.normal() as f32).collect();
                let mut dst = vec![f32::NAN; n];
                gather_even(&mut dst, &src);
                assert!((0..n).all(|t| dst[t].to_bits() == src[2 * t].to_bits()), "gather n {n} slack {slack}");
                let small: Vec<f32> = (0..n).map(|_| r.normal() as f32).collect();
                let (mut ours, mut plain) = (src.clone(), src.clone());
                scatter_add_even(&mut ours, &small);
                for t in 0..n {
                    plain[2 * t] += small[t];
                }
                assert!(ours.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()), "scatter n {n} slack {slack}");
            }
        }
        // -0.0 stays -0.0 where nothing is added.
        let mut z = vec![-0.0f32; 8];
        scatter_add_even(&mut z, &[1.0; 4]);
        assert!(z.iter().skip(1).step_by(2).all(|v| v.to_bits() == (-0.0f32).to_bits()));
    }

    #[test]
    fn transposes_of_every_small_shape_move_each_value_once() {
        for rows in 0..23 {
            for cols in 0..37 {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
                let mut out = vec![f32::NAN; rows * cols + 3];
                transpose(&src, rows, cols, &mut out);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(out[c * rows + r], src[r * cols + c], "{rows} x {cols} at ({r}, {c})");
                    }
                }
                assert!(out[rows * cols..].iter().all(|v| v.is_nan()), "{rows} x {cols}: wrote past the end");
            }
        }
    }

    /// The lanes against the plain definition, element by element in the
    /// same lane order: the same bits, with and without the ReLU, over
    /// lengths with and without a tail.
    #[test]
    fn lanes_give_the_bits_of_the_plain_loops() {
        let mut r = dae_data::rng::Rng::new(7);
        for n in [0, 3, 8, 13, 64, 101] {
            let v = |r: &mut dae_data::rng::Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<_>>();
            let (xs, gs) = (v(&mut r), v(&mut r));
            // A ReLU's output: zero on about half the elements.
            let ys: Vec<f32> = v(&mut r).into_iter().map(|y| y.max(0.0)).collect();
            for relu in [false, true] {
                let (m, k, c) = (0.3f32, 1.7f32, (0.2f32, -0.6f32));
                let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
                let body = n / 8 * 8;
                for i in 0..body {
                    let g = if relu && ys[i] <= 0.0 { 0.0 } else { gs[i] };
                    a[i % 8] += g;
                    b[i % 8] += g * (xs[i] - m);
                }
                let (mut sa, mut sb) = (a.iter().map(|&v| v as f64).sum::<f64>(), b.iter().map(|&v| v as f64).sum::<f64>());
                for i in body..n {
                    let g = if relu && ys[i] <= 0.0 { 0.0 } else { gs[i] };
                    sa += g as f64;
                    sb += (g * (xs[i] - m)) as f64;
                }
                assert_eq!(grad_sums(&xs, &ys, &gs, m, relu), (sa, sb), "n {n} relu {relu}");
                let mut d = vec![MaybeUninit::new(f32::NAN); n];
                input_grad(&mut d, &xs, &ys, &gs, m, k, c, relu);
                // SAFETY: every element was initialised (NaN, then written).
                let d: Vec<f32> = d.into_iter().map(|v| unsafe { v.assume_init() }).collect();
                for i in 0..n {
                    let g = if relu && ys[i] <= 0.0 { 0.0 } else { gs[i] };
                    assert_eq!(d[i].to_bits(), (k * (g - c.0 - (xs[i] - m) * c.1)).to_bits(), "n {n} relu {relu} at {i}");
                }
            }
        }
    }
}
