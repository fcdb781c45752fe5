//! Convolutions whose CPU forward and backward passes are matrix products.
//!
//! candle 0.11 computes conv2d's input gradient, and conv_transpose2d's
//! forward, with a direct transposed-convolution loop (a dot product per
//! output element); on the CPU that loop was most of a training step here.
//! On the CPU these modules compute each convolution as one operation with
//! its own backward pass ([`kernels`]): per image an im2col / col2im
//! rearrangement ([`geometry`]) around one matrix product (`gemm`), the
//! images in parallel. Layers with one or two output channels (the
//! decoder's last) are computed directly instead ([`direct`]).
//!
//! On other devices, or with `DAE_CONV=candle` in the environment (to
//! compare, or as an escape hatch), they are candle's own `conv2d` /
//! `conv_transpose2d`. The weights are created by candle's `Conv2d` /
//! `ConvTranspose2d` (same names, shapes and initialisation), so
//! checkpoints and seeds do not change. Tested against candle's own
//! operators (values and gradients) below.
//!
//! A layer computes in its input's dtype: a bf16 input
//! ([`crate::Precision::Bf16`]) meets bf16 copies of the f32 weights. On
//! the CPU the kernels here are f32, so a bf16 layer is emulated
//! ([`on_f32`]): the input, weight and bias rounded to bf16, f32
//! arithmetic, the output rounded to bf16.

mod direct;
mod geometry;
mod kernels;

use candle_core::{CpuStorage, DType, Layout, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, VarBuilder};

pub use direct::conv2d_direct;
use geometry::Geometry;
use kernels::{ChannelBias, Conv2dOp, ConvTranspose2dOp};

/// The f32 data of a contiguous CPU tensor (the custom ops here and in [`crate::norm`]).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// Output channels up to which a stride-1 convolution is computed directly.
const DIRECT_MAX_OUT: usize = 2;

/// conv2d of `x` `[B, Ci, H, W]` with `w` `[Co, Ci, k, k]` (square kernel,
/// no dilation or groups) as one operation (see [`kernels`]).
pub fn conv2d_gemm(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (co, ci, k, k2) = w.dims4()?;
    if ci != c || k != k2 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!("conv2d_gemm: input {:?}, kernel {:?}, stride {stride}, padding {pad}", x.dims(), w.dims());
    }
    let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
    let g = Geometry { c, h, w: wd, k, stride, pad, oh, ow };
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv2dOp { g, o: co })
}

/// conv_transpose2d of `x` `[B, Ci, H, W]` with `w` `[Ci, Co, k, k]` as one
/// operation (see [`kernels`]).
pub fn conv_transpose2d_gemm(x: &Tensor, w: &Tensor, stride: usize, pad: usize, output_padding: usize) -> Result<Tensor> {
    let (_, ci, h, wd) = x.dims4()?;
    let (ci2, co, k, k2) = w.dims4()?;
    let full = |n: usize| ((n.max(1) - 1) * stride + k + output_padding).checked_sub(2 * pad);
    let (Some(oh), Some(ow)) = (full(h), full(wd)) else {
        candle_core::bail!("conv_transpose2d_gemm: input {:?}, kernel {:?}, padding {pad} larger than the output", x.dims(), w.dims());
    };
    if ci != ci2 || k != k2 || h == 0 || wd == 0 || output_padding >= stride.max(1) {
        candle_core::bail!("conv_transpose2d_gemm: input {:?}, kernel {:?}, output padding {output_padding}", x.dims(), w.dims());
    }
    let g = Geometry { c: co, h: oh, w: ow, k, stride, pad, oh: h, ow: wd };
    x.contiguous()?.apply_op2(&w.contiguous()?, ConvTranspose2dOp { g, ci })
}

/// Whether to use the gemm path for a tensor on this device.
fn use_gemm(x: &Tensor, transposed: bool) -> bool {
    static MODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mode = MODE.get_or_init(|| std::env::var("DAE_CONV").unwrap_or_default());
    x.device().is_cpu() && mode != "candle" && (transposed || mode != "transposed")
}

/// `f(x, w, b)` for an f32 CPU kernel `f` on an input of any float dtype:
/// an f32 input goes straight through; otherwise the input, weight and
/// bias are rounded to the input's dtype, `f` runs on them widened to f32
/// (products summed in f32, as bf16 tensor cores do), and its output is
/// rounded to the input's dtype. Gradients flow through the casts: the
/// weight's comes back in f32, rounded like a GPU's bf16 gradient.
fn on_f32(x: &Tensor, w: &Tensor, b: Option<&Tensor>, f: impl Fn(&Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>) -> Result<Tensor> {
    let dt = x.dtype();
    if dt == DType::F32 {
        return f(x, w, b);
    }
    let round = |t: &Tensor| t.to_dtype(dt)?.to_dtype(DType::F32);
    let b = b.map(round).transpose()?;
    f(&x.to_dtype(DType::F32)?, &round(w)?, b.as_ref())?.to_dtype(dt)
}

/// The layer's weight and bias in the input's dtype (candle's operators).
fn weights_as(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    Ok((w.to_dtype(x.dtype())?, b.map(|b| b.to_dtype(x.dtype())).transpose()?))
}

/// `y + bias` per channel (one operation on the CPU, see [`kernels::ChannelBias`]).
fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) if y.device().is_cpu() && y.dtype() == DType::F32 => y.apply_op2(&b.contiguous()?, ChannelBias),
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}

/// A 2-D convolution (square kernel): on the CPU gemm-based (or direct,
/// for few output channels), candle's elsewhere or with `DAE_CONV=candle`.
///
/// Measurements of each path, and their history: `docs/performance.md`.
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
            let (w, b) = weights_as(x, self.inner.weight(), self.inner.bias())?;
            return add_bias(x.conv2d(&w, self.pad, self.stride, 1, 1)?, b.as_ref());
        }
        on_f32(x, self.inner.weight(), self.inner.bias(), |x, w, b| {
            let y = if self.stride == 1 && w.dim(0)? <= DIRECT_MAX_OUT {
                conv2d_direct(x, w, self.pad)?
            } else {
                conv2d_gemm(x, w, self.stride, self.pad)?
            };
            add_bias(y, b)
        })
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
        let c = self.cfg;
        if !use_gemm(x, true) {
            let (w, b) = weights_as(x, self.inner.weight(), self.inner.bias())?;
            return add_bias(x.conv_transpose2d(&w, c.padding, c.output_padding, c.stride, 1)?, b.as_ref());
        }
        on_f32(x, self.inner.weight(), self.inner.bias(), |x, w, b| {
            add_bias(conv_transpose2d_gemm(x, w, c.stride, c.padding, c.output_padding)?, b)
        })
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
        // Batches of several weight-gradient chunks, the last one partial.
        check(false, &[9, 3, 8, 6], &[4, 3, 3, 3], 2, 1, 0);
        check(true, &[6, 3, 3, 5], &[3, 2, 4, 4], 2, 1, 0);
    }

    /// Values and gradients of both convolutions, bit for bit.
    fn conv_values_and_grads() -> Vec<Vec<f32>> {
        let x = Var::from_tensor(&rand(&[9, 3, 10, 7], 1)).unwrap();
        let w = Var::from_tensor(&rand(&[4, 3, 3, 3], 2)).unwrap();
        let wt = Var::from_tensor(&rand(&[3, 2, 4, 4], 4)).unwrap();
        let y = conv2d_gemm(x.as_tensor(), w.as_tensor(), 2, 1).unwrap();
        let z = conv_transpose2d_gemm(x.as_tensor(), wt.as_tensor(), 2, 1, 0).unwrap();
        let loss = ((&y * &rand(y.dims(), 3)).unwrap().sum_all().unwrap() + (&z * &rand(z.dims(), 5)).unwrap().sum_all().unwrap()).unwrap();
        let g = loss.backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        vec![flat(&y), flat(&z), flat(g.get(&x).unwrap()), flat(g.get(&w).unwrap()), flat(g.get(&wt).unwrap())]
    }

    #[test]
    fn convolutions_give_the_same_bits_on_any_number_of_threads() {
        let on = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(conv_values_and_grads);
        assert_eq!(on(1), on(3));
    }

    #[test]
    fn the_network_input_gets_no_gradient_but_the_kernel_does() {
        let x = rand(&[2, 1, 9, 9], 1);
        let w = Var::from_tensor(&rand(&[4, 1, 3, 3], 2)).unwrap();
        let up = rand(&[2, 4, 9, 9], 3);
        let ours = (conv2d_gemm(&x, w.as_tensor(), 1, 1).unwrap() * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs = (x.conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap() * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(ours.get(&x).is_none());
        assert!(max_diff(ours.get(w.as_tensor()).unwrap(), theirs.get(w.as_tensor()).unwrap()) < 1e-3);
    }

    #[test]
    fn channel_bias_matches_broadcast_add_in_values_and_gradients() {
        let y = Var::from_tensor(&rand(&[3, 4, 5, 6], 1)).unwrap();
        let b = Var::from_tensor(&rand(&[4], 2)).unwrap();
        let ours = add_bias(y.as_tensor().clone(), Some(b.as_tensor())).unwrap();
        let theirs = y.as_tensor().broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap()).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let up = rand(ours.dims(), 3);
        let g1 = (&ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&y, &b] {
            assert!(max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap()) < 1e-4);
        }
    }

    #[test]
    fn kernels_reject_inputs_of_the_wrong_shape() {
        let x = rand(&[2, 3, 8, 8], 1);
        assert!(conv2d_gemm(&x, &rand(&[4, 2, 3, 3], 2), 1, 1).unwrap_err().to_string().contains("kernel"));
        assert!(conv2d_gemm(&x, &rand(&[4, 3, 3, 3], 2), 0, 1).is_err());
        assert!(conv_transpose2d_gemm(&x, &rand(&[2, 3, 4, 4], 2), 2, 1, 0).is_err());
        assert!(conv_transpose2d_gemm(&rand(&[1, 2, 1, 1], 1), &rand(&[2, 3, 1, 1], 2), 1, 2, 0)
            .unwrap_err()
            .to_string()
            .contains("padding"));
    }

    /// A layer's output and the gradients of its input and weight, on `x` cast to `dtype`.
    fn layer_run(layer: &dyn Module, vm: &candle_nn::VarMap, x: &Var, dtype: DType) -> (Tensor, Tensor, Tensor) {
        let y = layer.forward(&x.as_tensor().to_dtype(dtype).unwrap()).unwrap();
        let up = rand(y.dims(), 3);
        let g = (y.to_dtype(DType::F32).unwrap() * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let w = vm.data().lock().unwrap()["weight"].as_tensor().clone();
        (y, g.get(x.as_tensor()).unwrap().clone(), g.get(&w).unwrap().clone())
    }

    fn round_bf16(t: &Tensor) -> Tensor {
        t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()
    }

    #[test]
    fn bf16_layers_compute_on_rounded_operands_and_return_f32_gradients() {
        let x = Var::from_tensor(&rand(&[3, 4, 9, 9], 1)).unwrap();
        for transposed in [false, true] {
            let vm = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &candle_core::Device::Cpu);
            let layer: Box<dyn Module> = if transposed {
                Box::new(ConvTranspose::new(4, 5, 4, ConvTranspose2dConfig { padding: 1, stride: 2, ..Default::default() }, vb).unwrap())
            } else {
                Box::new(Conv::new(4, 5, 3, Conv2dConfig { padding: 1, stride: 2, ..Default::default() }, true, vb).unwrap())
            };
            let (y16, gx16, gw16) = layer_run(layer.as_ref(), &vm, &x, DType::BF16);
            let (y32, gx32, gw32) = layer_run(layer.as_ref(), &vm, &x, DType::F32);
            // The output is bf16, the gradients come back in their variables' dtype.
            assert_eq!((y16.dtype(), gx16.dtype(), gw16.dtype()), (DType::BF16, DType::F32, DType::F32));
            // Exactly the f32 layer on bf16-rounded input, weight and bias, rounded once.
            let w = vm.data().lock().unwrap()["weight"].as_tensor().clone();
            let b = vm.data().lock().unwrap()["bias"].as_tensor().clone();
            let xr = round_bf16(x.as_tensor());
            let expect = if transposed {
                conv_transpose2d_gemm(&xr, &round_bf16(&w), 2, 1, 0).unwrap()
            } else {
                conv2d_gemm(&xr, &round_bf16(&w), 2, 1).unwrap()
            };
            let expect = add_bias(expect, Some(&round_bf16(&b))).unwrap().to_dtype(DType::BF16).unwrap();
            let flat = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(flat(&y16), flat(&expect), "transposed={transposed}");
            // Close to f32 (bf16 keeps 8 bits of mantissa), and not equal to it.
            let rel = |a: &Tensor, b: &Tensor| max_diff(&a.to_dtype(DType::F32).unwrap(), b) / max_diff(b, &b.zeros_like().unwrap());
            for (what, a, b) in [("output", &y16, &y32), ("input grad", &gx16, &gx32), ("weight grad", &gw16, &gw32)] {
                let r = rel(a, b);
                assert!(r > 0.0 && r < 2e-2, "transposed={transposed} {what}: relative difference {r}");
            }
        }
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
