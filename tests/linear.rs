//! linear on every adapter against the f64 reference.

mod common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::{Device, Linear, LinearKernel, reference};

/// The tests of this file run one at a time: the register-blocked GEMMs take seconds to compile
/// on llvmpipe-GL, during which wgpu holds the GL context, and a second thread waiting for it
/// longer than wgpu's 6 s lock timeout panics.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn check(dev: &Device, m: usize, n: usize, k: usize, bias: bool, rng: &mut Rng) {
    let x = rng.values(m * k, 1.0);
    let w = rng.values(n * k, 1.0);
    let b = rng.values(n, 1.0);
    let bias_t = bias.then(|| dev.tensor(&b, &[n]).unwrap());
    let want = reference::linear::linear(&x, &w, bias.then_some(b.as_slice()), k);
    // A dot product of k terms of size ≤ 1: absolute error grows like k·ε.
    let tol = Tol { abs: 2e-6 * k as f64, rel: 1e-5 };
    for kernel in [LinearKernel::Auto, LinearKernel::Tiled, LinearKernel::Blocked] {
        let got = Linear { kernel, ..Default::default() }
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
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
    // 64 KiB bindings: x (300, 80) and W (250, 80) are 96 KB and 80 KB, y (300, 250) 300 KB.
    let mut rng = Rng::new(42);
    for dev in small_binding_devices() {
        check(dev, 300, 250, 80, true, &mut rng);
    }
}

/// dX, dW, db on `dev` against the f64 reference: sums of n (dX) or m (dW, db) terms of size
/// ≤ 1.
fn check_backward(dev: &Device, m: usize, n: usize, k: usize, rng: &mut Rng) {
    common::check_linear_backward(dev, (m, n, k), rng, |terms| Tol { abs: 2e-6 * terms as f64, rel: 1e-5 });
}

#[test]
fn backward_ragged_shapes() {
    let _serial = serial();
    let mut rng = Rng::new(41);
    for dev in devices() {
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (65, 63, 17), (300, 130, 33), (7, 257, 129), (0, 3, 2)] {
            check_backward(dev, m, n, k, &mut rng);
        }
        // No input features: dX and dW are empty, db is still the column sums of dY.
        let g = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let r = Linear::default()
            .backward(
                &dev.tensor(&[], &[2, 0]).unwrap(),
                &dev.tensor(&[], &[3, 0]).unwrap(),
                &dev.tensor(&g, &[2, 3]).unwrap(),
            )
            .unwrap();
        assert_eq!(r.bias.to_vec().unwrap(), [5.0, 7.0, 9.0]);
        assert!(r.input.to_vec().unwrap().is_empty() && r.weight.to_vec().unwrap().is_empty());
    }
}

#[test]
fn backward_in_row_chunks_is_bitwise_the_unchunked_result() {
    let _serial = serial();
    // 64 KiB bindings: 700 rows of 40 floats split into chunks; dW and db accumulate in order.
    let mut rng = Rng::new(42);
    let (m, n, k) = (700, 40, 30);
    let x = rng.values(m * k, 1.0);
    let w = rng.values(n * k, 1.0);
    let g = rng.values(m * n, 1.0);
    for (small, dev) in small_binding_devices().iter().zip(devices()) {
        check_backward(small, m, n, k, &mut rng);
        let run = |d: &Device| {
            let r = Linear::default()
                .backward(
                    &d.tensor(&x, &[m, k]).unwrap(),
                    &d.tensor(&w, &[n, k]).unwrap(),
                    &d.tensor(&g, &[m, n]).unwrap(),
                )
                .unwrap();
            (r.input.to_vec().unwrap(), r.weight.to_vec().unwrap(), r.bias.to_vec().unwrap())
        };
        let (a, b) = (run(small), run(dev));
        assert_eq!(a.0, b.0, "dX");
        // dW and db sum the chunks' partial sums: within rounding of the unchunked sum.
        let want: Vec<f64> = b.1.iter().map(|&v| v as f64).collect();
        assert_close("dW chunked", &a.1, &want, Tol { abs: 1e-4, rel: 1e-5 });
    }
}
