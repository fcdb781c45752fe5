//! The gradients of the vendored candle-core's backward pass (its patch
//! stores a node's first gradient instead of adding it to zeros:
//! `vendor/README.md`), against values worked out by hand, on graphs where
//! the patch matters: one consumer, several consumers (fan-in), a gradient
//! that reaches a node through a view (non-contiguous), and the rules left
//! on candle's own path (subtraction, negation).

use candle_core::{Device, Tensor, Var};

fn var(v: &[f32], shape: &[usize]) -> Var {
    Var::from_tensor(&Tensor::from_slice(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn one_consumer_and_fan_in_give_the_hand_computed_gradients() {
    // loss = sum(x * w) + sum(x * x) + sum(3 x): x reaches the loss along
    // three paths, w along one. d/dx = w + 2x + 3, d/dw = x.
    let x = var(&[1.0, -2.0, 0.5, 4.0], &[2, 2]);
    let w = var(&[0.5, 1.5, -1.0, 2.0], &[2, 2]);
    let (xt, wt) = (x.as_tensor(), w.as_tensor());
    let loss = ((xt * wt).unwrap().sum_all().unwrap() + (xt * xt).unwrap().sum_all().unwrap()).unwrap();
    let loss = (loss + (xt * 3.0).unwrap().sum_all().unwrap()).unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(values(g.get(xt).unwrap()), vec![5.5, 0.5, 3.0, 13.0]);
    assert_eq!(values(g.get(wt).unwrap()), vec![1.0, -2.0, 0.5, 4.0]);
}

#[test]
fn gradients_through_views_are_contiguous_and_right() {
    // y = x^T . m: x's gradient arrives transposed (a strided view).
    // loss = sum(y * u) => dx = (m . u^T)^T, dm = x . u.
    let x = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let m = var(&[1.0, 0.0, -1.0, 2.0], &[2, 2]);
    let u = Tensor::from_slice(&[1.0f32, 2.0, 0.0, -1.0, 3.0, 1.0], &[3, 2], &Device::Cpu).unwrap();
    let y = x.as_tensor().t().unwrap().matmul(m.as_tensor()).unwrap();
    let g = (y * &u).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = g.get(x.as_tensor()).unwrap();
    assert!(dx.is_contiguous());
    // m . u^T = [[1, 0, 3], [-1 + 4, 0 - 2, -3 + 2]].
    assert_eq!(values(dx), vec![1.0, 0.0, 3.0, 3.0, -2.0, -1.0]);
    // x . u = [[1+0+9, 2-2+3], [4+0+18, 8-5+6]].
    assert_eq!(values(g.get(m.as_tensor()).unwrap()), vec![10.0, 3.0, 22.0, 9.0]);
}

#[test]
fn subtraction_and_negation_keep_their_signs() {
    // loss = sum(a - b) - sum(-(a * b)) => da = 1 + b, db = -1 + a.
    let a = var(&[2.0, -3.0], &[2]);
    let b = var(&[0.5, 4.0], &[2]);
    let (at, bt) = (a.as_tensor(), b.as_tensor());
    let loss = ((at - bt).unwrap().sum_all().unwrap() - (at * bt).unwrap().neg().unwrap().sum_all().unwrap()).unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(values(g.get(at).unwrap()), vec![1.5, 5.0]);
    assert_eq!(values(g.get(bt).unwrap()), vec![1.0, -4.0]);
}
