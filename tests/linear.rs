//! linear on every adapter against the f64 reference.

mod common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::{Device, Linear, LinearKernel, reference};

fn check(dev: &Device, m: usize, n: usize, k: usize, bias: bool, rng: &mut Rng) {
    let x = rng.values(m * k, 1.0);
    let w = rng.values(n * k, 1.0);
    let b = rng.values(n, 1.0);
    let bias_t = bias.then(|| dev.tensor(&b, &[n]).unwrap());
    let want = reference::linear::linear(&x, &w, bias.then_some(b.as_slice()), k);
    // A dot product of k terms of size ≤ 1: absolute error grows like k·ε.
    let tol = Tol { abs: 2e-6 * k as f64, rel: 1e-5 };
    for kernel in [LinearKernel::Auto, LinearKernel::Tiled, LinearKernel::Blocked] {
        let got = Linear { kernel }
            .forward(&dev.tensor(&x, &[m, k]).unwrap(), &dev.tensor(&w, &[n, k]).unwrap(), bias_t.as_ref())
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(
            &format!("{} m={m} n={n} k={k} bias={bias} {kernel:?}", common::label(dev)),
            &got,
            &want,
            tol,
        );
    }
}

#[test]
fn ragged_and_tiled_shapes() {
    let mut rng = Rng::new(40);
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (64, 64, 16),
        (65, 63, 17),
        (1, 130, 33),
        (129, 2, 100),
        (100, 70, 1),
        (300, 140, 20),
    ];
    for dev in devices() {
        for (m, n, k) in shapes {
            for bias in [false, true] {
                check(dev, m, n, k, bias, &mut rng);
            }
        }
    }
}

#[test]
fn leading_dimensions_flatten() {
    let mut rng = Rng::new(41);
    let x = rng.values(2 * 3 * 5, 1.0);
    let w = rng.values(4 * 5, 1.0);
    for dev in devices() {
        let y =
            wgpu_loss::linear(&dev.tensor(&x, &[2, 3, 5]).unwrap(), &dev.tensor(&w, &[4, 5]).unwrap(), None)
                .unwrap();
        assert_eq!(y.shape(), [2, 3, 4]);
        assert_close(
            "leading dims",
            &y.to_vec().unwrap(),
            &reference::linear::linear(&x, &w, None, 5),
            Tol::ELEMENT,
        );
    }
}

#[test]
fn chunked_over_rows_of_x_and_of_weight() {
    // 64 KiB bindings: x (300, 80) and W (250, 80) are 96 KB and 80 KB, y (300, 250) 300 KB.
    let mut rng = Rng::new(42);
    for dev in small_binding_devices() {
        check(dev, 300, 250, 80, true, &mut rng);
    }
}
