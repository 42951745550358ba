//! The f64 references against PyTorch golden values (no GPU needed).
//!
//! Values come from PyTorch 2.x (`torch.nn.functional`), printed with 8 significant digits;
//! the Python that produced each is in the comment above it.

use wgpu_loss::Reduction::{Mean, None as Keep, Sum};
use wgpu_loss::reference::pointwise::{Pointwise, forward};
use wgpu_loss::reference::{cross_entropy, linear, log_softmax, nll, reduce};

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g.is_nan() && w.is_nan()) || (g - w).abs() < 1e-7, "got {got:?} want {want:?}");
    }
}

const ROWS: [f32; 9] = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];

#[test]
fn cross_entropy_golden() {
    // x = torch.tensor([[1., 2, 3]] * 3); t = torch.tensor([2, 0, -100]); w = torch.tensor([1., 2, 3])
    // F.cross_entropy(x, t, reduction='none')            -> [0.40760596, 2.40760596, 0.]
    // F.cross_entropy(x, t)                              -> 1.40760596
    // F.cross_entropy(x, t, weight=w, reduction='none')  -> [1.22281789, 2.40760596, 0.]
    // F.cross_entropy(x, t, weight=w)                    -> 0.90760596   (sum / (w[2] + w[0]))
    // F.cross_entropy(x, t, weight=w, reduction='sum')   -> 3.63042386
    let t = [2, 0, -100];
    let w = [1.0, 2.0, 3.0];
    close(
        &cross_entropy::cross_entropy(&ROWS, 3, &t, None, -100, Keep).unwrap(),
        &[0.40760596, 2.40760596, 0.0],
    );
    close(&cross_entropy::cross_entropy(&ROWS, 3, &t, None, -100, Mean).unwrap(), &[1.40760596]);
    close(
        &cross_entropy::cross_entropy(&ROWS, 3, &t, Some(&w), -100, Keep).unwrap(),
        &[1.22281789, 2.40760596, 0.0],
    );
    close(&cross_entropy::cross_entropy(&ROWS, 3, &t, Some(&w), -100, Mean).unwrap(), &[0.90760596]);
    close(&cross_entropy::cross_entropy(&ROWS, 3, &t, Some(&w), -100, Sum).unwrap(), &[3.63042386]);
    // F.cross_entropy(torch.tensor([[1000., 0.]] * 2), torch.tensor([1, 0]), reduction='none') -> [1000., 0.]
    close(
        &cross_entropy::cross_entropy(&[1000.0, 0.0, 1000.0, 0.0], 2, &[1, 0], None, -100, Keep).unwrap(),
        &[1000.0, 0.0],
    );
    // F.cross_entropy(x[:1], torch.tensor([-100])) -> nan; reduction='sum' -> 0.
    assert!(cross_entropy::cross_entropy(&ROWS[..3], 3, &[-100], None, -100, Mean).unwrap()[0].is_nan());
    close(&cross_entropy::cross_entropy(&ROWS[..3], 3, &[-100], None, -100, Sum).unwrap(), &[0.0]);
    // F.cross_entropy(x[:1], torch.tensor([3])) -> IndexError: Target 3 is out of bounds.
    assert!(cross_entropy::cross_entropy(&ROWS[..3], 3, &[3], None, -100, Mean).is_err());
}

#[test]
fn log_softmax_nll_golden() {
    // F.log_softmax(torch.tensor([[1., 2, 3]]), -1) -> [-2.40760596, -1.40760596, -0.40760596]
    // F.softmax(...)                                -> [0.09003057, 0.24472847, 0.66524096]
    close(&log_softmax::log_softmax(&ROWS[..3], 3), &[-2.40760596, -1.40760596, -0.40760596]);
    close(&log_softmax::softmax(&ROWS[..3], 3), &[0.09003057, 0.24472847, 0.66524096]);
    // F.nll_loss(torch.tensor([[-1., -2, -3], [-4, -5, -6]]), torch.tensor([2, 0]), weight=torch.tensor([1., 1, 2]))
    //   -> (2*3 + 1*4) / (2 + 1) = 3.33333333
    let logp = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0];
    close(&nll::nll(&logp, 3, &[2, 0], Some(&[1.0, 1.0, 2.0]), -100, Mean).unwrap(), &[10.0 / 3.0]);
}

#[test]
fn bce_with_logits_golden() {
    // F.binary_cross_entropy_with_logits(torch.tensor([100., -100., 0.]), torch.tensor([0., 1., 1.]), reduction='none')
    //   -> [100., 100., 0.69314718]
    close(
        &forward(
            Pointwise::BceWithLogits,
            &[100.0f32, -100.0, 0.0],
            &[0.0, 1.0, 1.0],
            3,
            None,
            None,
            Keep,
            3.0,
        ),
        &[100.0, 100.0, std::f64::consts::LN_2],
    );
    // ... pos_weight=torch.tensor([3.]) with x = 0, y = 1 -> 2.07944154
    close(
        &forward(Pointwise::BceWithLogits, &[0.0f32], &[1.0], 1, None, Some(&[3.0]), Keep, 1.0),
        &[2.07944154],
    );
}

#[test]
fn mse_linear_reduce_golden() {
    // F.mse_loss(torch.tensor([1., 2.]), torch.tensor([0., 4.])) -> 2.5
    close(&forward(Pointwise::Mse, &[1.0f32, 2.0], &[0.0, 4.0], 2, None, None, Mean, 2.0), &[2.5]);
    // F.linear(torch.tensor([[1., 2.]]), torch.tensor([[1., 0.], [0., 1.], [1., 1.]]), torch.tensor([.5, .5, .5]))
    //   -> [[1.5, 2.5, 3.5]]
    close(
        &linear::linear(&[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], Some(&[0.5, 0.5, 0.5]), 2),
        &[1.5, 2.5, 3.5],
    );
    // torch.tensor([]).mean() -> nan
    assert!(reduce::mean(&[]).is_nan());
    assert_eq!(reduce::sum(&[1.0, 2.0]), 3.0);
}

/// Central finite differences in f64, step `h`, of `f` at `x`.
fn central(mut f: impl FnMut(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

#[test]
fn pointwise_gradients_match_finite_differences() {
    // Points away from the kinks (|x − y| = β or δ, x = y for l1) where the derivative jumps;
    // the kinks themselves are fixed by the golden-value tests (sign(0) = 0).
    let losses = [
        Pointwise::Mse,
        Pointwise::L1,
        Pointwise::SmoothL1(1.0),
        Pointwise::SmoothL1(0.5),
        Pointwise::Huber(2.0),
        Pointwise::Bce,
        Pointwise::BceWithLogits,
        Pointwise::KlDiv(false),
        Pointwise::KlDiv(true),
    ];
    let points = [(0.3, 0.7), (0.9, 0.2), (0.05, 0.95), (0.6, 0.6001), (0.45, 0.1)];
    for loss in losses {
        for &(x, y) in &points {
            for pw in [1.0, 2.5] {
                let pw = if loss == Pointwise::BceWithLogits { pw } else { 1.0 };
                let (dx, dy) = loss.grad(x, y, pw);
                let fx = central(|v| loss.value(v, y, pw), x, 1e-6);
                assert!(
                    (dx - fx).abs() < 1e-6 * (1.0 + fx.abs()),
                    "{loss:?} d/dx at ({x}, {y}): {dx} vs {fx}"
                );
                if !dy.is_nan() {
                    let fy = central(|v| loss.value(x, v, pw), y, 1e-6);
                    assert!(
                        (dy - fy).abs() < 1e-6 * (1.0 + fy.abs()),
                        "{loss:?} d/dy at ({x}, {y}): {dy} vs {fy}"
                    );
                }
            }
        }
    }
}

/// The central-difference gradient of `f` at `x` (every coordinate), in f64.
fn numeric_gradient(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut v = x.to_vec();
            central(
                |t| {
                    v[i] = t;
                    f(&v)
                },
                x[i],
                1e-6,
            )
        })
        .collect()
}

fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!((a - n).abs() < 1e-6 * (1.0 + n.abs()), "{what}: element {i}: analytic {a} numeric {n}");
    }
}

/// Seeded f64 values in [-scale, scale), from the project's one generator.
fn data(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    wgpu_loss::data::Rng::new(seed).values_f64(n, scale)
}

#[test]
fn class_loss_gradients_match_finite_differences() {
    use cross_entropy::{
        cross_entropy_backward, cross_entropy_nd, cross_entropy_probs, cross_entropy_probs_backward,
    };
    // (N, C, d) = (2, 4, 3) with an ignored row, class weights, smoothing, every reduction; the
    // upstream gradient g is one value, or one per row for `None` (then the loss is Σ g·l).
    let shape = [2usize, 4, 3];
    let x = data(24, 1, 2.0);
    let t = [0i64, 3, -100, 2, 1, 1];
    let w = [0.5, 1.0, 1.5, 2.0];
    let y: Vec<f64> = data(24, 2, 0.5).iter().map(|v| v + 0.5).collect();
    for reduction in [Keep, Mean, Sum] {
        let g: Vec<f64> = if reduction == Keep { data(6, 3, 1.0) } else { vec![0.7] };
        let weigh = |l: Vec<f64>| l.iter().zip(g.iter().cycle()).map(|(a, b)| a * b).sum::<f64>();
        for (weight, eps) in [(None, 0.0), (Some(&w[..]), 0.0), (Some(&w[..]), 0.2), (None, 0.3)] {
            let what = format!("cross_entropy {reduction:?} weighted={} eps={eps}", weight.is_some());
            let analytic = cross_entropy_backward(&x, &shape, &t, weight, -100, eps, reduction, &g).unwrap();
            let numeric = numeric_gradient(
                |v| weigh(cross_entropy_nd(v, &shape, &t, weight, -100, eps, reduction).unwrap()),
                &x,
            );
            assert_grad(&what, &analytic, &numeric);
            let (dx, dy) = cross_entropy_probs_backward(&x, &shape, &y, weight, eps, reduction, &g);
            let nx =
                numeric_gradient(|v| weigh(cross_entropy_probs(v, &shape, &y, weight, eps, reduction)), &x);
            let ny =
                numeric_gradient(|v| weigh(cross_entropy_probs(&x, &shape, v, weight, eps, reduction)), &y);
            assert_grad(&format!("{what} probs dx"), &dx, &nx);
            assert_grad(&format!("{what} probs dy"), &dy, &ny);
        }
        let what = format!("nll {reduction:?}");
        let analytic = nll::nll_backward(&x, &shape, &t, Some(&w[..]), -100, reduction, &g).unwrap();
        let numeric = numeric_gradient(
            |v| weigh(nll::nll_nd(v, &shape, &t, Some(&w[..]), -100, reduction).unwrap()),
            &x,
        );
        assert_grad(&what, &analytic, &numeric);
    }
}

#[test]
fn softmax_gradients_match_finite_differences() {
    // d/dx of Σ g·log_softmax(x) is log_softmax_backward(y, g), likewise for softmax.
    let shape = [3usize, 4, 2];
    let x = data(24, 4, 2.0);
    let g = data(24, 5, 1.0);
    for dim in 0..3 {
        let dot = |a: Vec<f64>| a.iter().zip(&g).map(|(p, q)| p * q).sum::<f64>();
        let y = log_softmax::log_softmax_dim(&x, &shape, dim);
        let analytic = log_softmax::log_softmax_backward(&y, &g, &shape, dim);
        let numeric = numeric_gradient(|v| dot(log_softmax::log_softmax_dim(v, &shape, dim)), &x);
        assert_grad(&format!("log_softmax dim {dim}"), &analytic, &numeric);
        let p = log_softmax::softmax_dim(&x, &shape, dim);
        let analytic = log_softmax::softmax_backward(&p, &g, &shape, dim);
        let numeric = numeric_gradient(|v| dot(log_softmax::softmax_dim(v, &shape, dim)), &x);
        assert_grad(&format!("softmax dim {dim}"), &analytic, &numeric);
    }
}

#[test]
fn linear_gradients_match_finite_differences() {
    // d/dθ of Σ g·linear(x, W, b) for θ = x, W, b.
    let (m, n, k) = (3, 4, 5);
    let x = data(m * k, 6, 1.0);
    let w = data(n * k, 7, 1.0);
    let b = data(n, 8, 1.0);
    let g = data(m * n, 9, 1.0);
    let dot = |y: Vec<f64>| y.iter().zip(&g).map(|(p, q)| p * q).sum::<f64>();
    let (dx, dw, db) = linear::linear_backward(&x, &w, &g, k);
    assert_grad("linear dX", &dx, &numeric_gradient(|v| dot(linear::linear(v, &w, Some(&b), k)), &x));
    assert_grad("linear dW", &dw, &numeric_gradient(|v| dot(linear::linear(&x, v, Some(&b), k)), &w));
    assert_grad("linear db", &db, &numeric_gradient(|v| dot(linear::linear(&x, &w, Some(v), k)), &b));
}

#[test]
fn linear_cross_entropy_gradients_match_finite_differences() {
    // Every option at once (weights, smoothing, softcap, z-loss, an ignored row), each reduction.
    use wgpu_loss::reference::linear_cross_entropy::{
        Options, linear_cross_entropy, linear_cross_entropy_backward,
    };
    let (m, v, k) = (4, 5, 3);
    let x = data(m * k, 10, 2.0);
    let w = data(v * k, 11, 2.0);
    let b = data(v, 12, 1.0);
    let cw: Vec<f64> = data(v, 13, 0.5).iter().map(|c| c + 1.0).collect();
    let t = [1, -100, 4, 0];
    for reduction in [Mean, Sum, Keep] {
        let o = Options {
            weight: Some(&cw),
            reduction,
            label_smoothing: 0.2,
            softcap: Some(1.5),
            z_loss: 0.1,
            ..Options::default()
        };
        let g = if reduction == Keep { data(m, 14, 1.0) } else { vec![0.7] };
        let dot = |l: Vec<f64>| l.iter().zip(&g).map(|(p, q)| p * q).sum::<f64>();
        let f =
            |x: &[f64], w: &[f64], b: &[f64]| dot(linear_cross_entropy(x, w, Some(b), &t, k, &o).unwrap().0);
        let (dx, dw, db) = linear_cross_entropy_backward(&x, &w, Some(&b), &t, k, &o, &g).unwrap();
        assert_grad("lce dX", &dx, &numeric_gradient(|v| f(v, &w, &b), &x));
        assert_grad("lce dW", &dw, &numeric_gradient(|v| f(&x, v, &b), &w));
        assert_grad("lce db", &db, &numeric_gradient(|v| f(&x, &w, v), &b));
    }
    // Without softcap and z-loss it is cross_entropy(linear(x, W, b)).
    let o = Options { label_smoothing: 0.1, ..Options::default() };
    let fused = linear_cross_entropy(&x, &w, Some(&b), &t, k, &o).unwrap().0;
    let logits = linear::linear(&x, &w, Some(&b), k);
    let unfused = cross_entropy::cross_entropy_nd(&logits, &[m, v], &t, None, -100, 0.1, Mean).unwrap();
    close(&fused, &unfused);
}
