//! Empty tensors whose other dims are huge (`[0, usize::MAX]`, `[0, 2^33, 2^33]`): every
//! operation plans with checked arithmetic, so a debug build returns PyTorch's result (an empty
//! tensor, a sum of 0, a mean of NaN, zero-sized gradients) instead of panicking on an overflow.

use crate::common;

use common::devices;
use wgpu_loss::{
    Accuracy, Bce, BceWithLogits, CrossEntropy, Device, Huber, KlDiv, L1, Linear, LinearCrossEntropy,
    LogSoftmax, Mse, Nll, Reduction, SmoothL1, Softmax, Tensor,
};

const BIG: usize = 1 << 33;

fn shapes() -> Vec<Vec<usize>> {
    vec![vec![0, usize::MAX], vec![0, BIG, BIG], vec![BIG, 0, BIG], vec![BIG, BIG, 0], vec![0, 5]]
}

fn empty(dev: &Device, shape: &[usize]) -> Tensor {
    dev.tensor(&[], shape).unwrap()
}

/// A reduced loss over nothing: NaN for a mean, 0 for a sum, an empty tensor for none.
fn check_reduced(what: &str, reduction: Reduction, t: wgpu_loss::Result<Tensor>) {
    let t = t.unwrap_or_else(|e| panic!("{what}: {e}"));
    match reduction {
        Reduction::Mean => assert!(t.item().unwrap().is_nan(), "{what}"),
        Reduction::Sum => assert_eq!(t.item().unwrap(), 0.0, "{what}"),
        Reduction::None => assert!(t.to_vec().unwrap().is_empty(), "{what}"),
    }
}

#[test]
fn class_losses_over_empty_inputs_with_huge_dims() {
    for dev in devices() {
        for shape in shapes() {
            // Class-id targets have the input's shape without dim 1.
            let mut ts = vec![shape[0]];
            ts.extend_from_slice(&shape[2..]);
            if shape[1] == 0 && ts.iter().all(|&d| d != 0) {
                continue; // rows without classes: an Empty error, tested elsewhere
            }
            let (x, t) = (empty(dev, &shape), dev.indices::<i64>(&[], &ts).unwrap());
            let what = format!("{} {shape:?}", common::label(dev));
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let ce = CrossEntropy::default().reduction(reduction);
                check_reduced(&format!("cross_entropy {what} {reduction:?}"), reduction, ce.forward(&x, &t));
                let g = if reduction == Reduction::None {
                    empty(dev, &ts)
                } else {
                    dev.tensor(&[1.0], &[]).unwrap()
                };
                let dx = ce.backward(&x, &t, &g).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(dx.to_vec().unwrap().is_empty(), "{what}");
                let (dx, dy) = ce.backward_probs(&x, &x, &g).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(dx.to_vec().unwrap().is_empty() && dy.to_vec().unwrap().is_empty(), "{what}");
                check_reduced(&format!("probs {what} {reduction:?}"), reduction, ce.forward_probs(&x, &x));
                let nll = Nll::default().reduction(reduction);
                check_reduced(&format!("nll {what} {reduction:?}"), reduction, nll.forward(&x, &t));
                assert!(nll.backward(&x, &t, &g).unwrap().to_vec().unwrap().is_empty(), "{what}");
            }
            let acc = Accuracy::default().forward(&x, &t);
            if shape[1] == 0 {
                assert!(acc.is_err(), "{what}: top-1 of no class");
            } else {
                assert!(acc.unwrap().item().unwrap().is_nan(), "{what}");
            }
        }
    }
}

#[test]
fn rows_over_empty_inputs_with_huge_dims() {
    for dev in devices() {
        for shape in shapes() {
            let x = empty(dev, &shape);
            for dim in 0..shape.len() as isize {
                let what = format!("{} {shape:?} dim {dim}", common::label(dev));
                let ls = LogSoftmax::default().dim(dim);
                let y = ls.forward(&x).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(y.shape(), shape.as_slice());
                assert!(ls.backward(&y, &x).unwrap().to_vec().unwrap().is_empty(), "{what}");
                let sm = Softmax::default().dim(dim);
                let y = sm.forward(&x).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(sm.backward(&y, &x).unwrap().to_vec().unwrap().is_empty(), "{what}");
            }
        }
    }
}

fn kl(r: Reduction) -> wgpu_loss::KlReduction {
    match r {
        Reduction::None => wgpu_loss::KlReduction::None,
        Reduction::Mean => wgpu_loss::KlReduction::Mean,
        Reduction::Sum => wgpu_loss::KlReduction::Sum,
    }
}

#[test]
fn pointwise_and_reductions_over_empty_inputs_with_huge_dims() {
    for dev in devices() {
        for shape in shapes() {
            let x = empty(dev, &shape);
            let what = format!("{} {shape:?}", common::label(dev));
            assert_eq!(wgpu_loss::sum(&x).unwrap().item().unwrap(), 0.0, "{what}");
            assert!(wgpu_loss::mean(&x).unwrap().item().unwrap().is_nan(), "{what}");
            assert!(wgpu_loss::binary_accuracy(&x, &x).unwrap().item().unwrap().is_nan(), "{what}");
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let g =
                    if reduction == Reduction::None { x.clone() } else { dev.tensor(&[1.0], &[]).unwrap() };
                macro_rules! check {
                    ($($l:expr),+) => {$(
                        let l = $l;
                        check_reduced(&format!("{what} {l:?}"), reduction, l.forward(&x, &x));
                        assert!(l.backward(&x, &x, &g).unwrap().to_vec().unwrap().is_empty(), "{what} {l:?}");
                    )+};
                }
                check!(
                    Mse::default().reduction(reduction),
                    L1::default().reduction(reduction),
                    SmoothL1::default().reduction(reduction),
                    Huber::default().reduction(reduction),
                    Bce::default().reduction(reduction),
                    BceWithLogits::default().reduction(reduction),
                    KlDiv::default().reduction(kl(reduction))
                );
            }
        }
    }
}

#[test]
fn linear_and_the_lm_head_over_empty_inputs_with_huge_dims() {
    for dev in devices() {
        let what = common::label(dev);
        // No rows of x, a huge number of them in leading dims, W with no rows.
        let x = empty(dev, &[0, BIG, 3]);
        let w = dev.tensor(&[0.5; 6], &[2, 3]).unwrap();
        let y = wgpu_loss::linear(&x, &w, None).unwrap();
        assert_eq!(y.shape(), [0, BIG, 2], "{what}");
        let grads = Linear::default().backward(&x, &w, &empty(dev, &[0, BIG, 2])).unwrap();
        assert_eq!(grads.weight.to_vec().unwrap(), [0.0; 6], "{what}");
        let w0 = empty(dev, &[0, 3]);
        let x1 = dev.tensor(&[1.0; 3], &[1, 3]).unwrap();
        assert!(wgpu_loss::linear(&x1, &w0, None).unwrap().to_vec().unwrap().is_empty(), "{what}");
        let t = dev.indices::<i64>(&[], &[0, BIG]).unwrap();
        let out = LinearCrossEntropy::default().forward(&x, &w, None, &t).unwrap();
        assert!(out.loss.item().unwrap().is_nan(), "{what}");
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let g = LinearCrossEntropy::default().backward(&x, &w, None, &t, &one, None).unwrap();
        assert_eq!(g.weight.to_vec().unwrap(), [0.0; 6], "{what}");
    }
}
