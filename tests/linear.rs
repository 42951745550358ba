//! linear on every adapter against the f64 reference.

use crate::common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::{DType, Device, Error, Linear, LinearKernel, Outputs, reference};

fn check(dev: &Device, m: usize, n: usize, k: usize, bias: bool, rng: &mut Rng) {
    let x = rng.values(m * k, 1.0);
    let w = rng.values(n * k, 1.0);
    let b = rng.values(n, 1.0);
    let bias_t = bias.then(|| dev.tensor(&b, &[n]).unwrap());
    let want = reference::linear::linear(&x, &w, bias.then_some(b.as_slice()), k);
    // A dot product of k terms of size ≤ 1: absolute error grows like k·ε.
    let tol = Tol { abs: 2e-6 * k as f64, rel: 1e-5 };
    // The staged GEMMs need a texture-staging adapter and rows of whole texels.
    let staged = dev.texture_inputs() && k.is_multiple_of(4);
    let kernels = [LinearKernel::Auto, LinearKernel::Tiled, LinearKernel::Blocked, LinearKernel::Staged];
    for kernel in kernels.into_iter().filter(|&kr| staged || kr != LinearKernel::Staged) {
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
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(40);
        for (m, n, k) in shapes {
            for bias in [false, true] {
                check(dev, m, n, k, bias, &mut rng);
            }
        }
    });
}

#[test]
fn leading_dimensions_flatten() {
    let mut rng = Rng::new(41);
    let x = rng.values(2 * 3 * 5, 1.0);
    let w = rng.values(4 * 5, 1.0);
    common::on_each(devices(), |dev| {
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
    });
}

#[test]
fn chunked_over_rows_of_x_and_of_weight() {
    // 64 KiB bindings: x (300, 80) and W (250, 80) are 96 KB and 80 KB, y (300, 250) 300 KB.
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(42);
        check(dev, 300, 250, 80, true, &mut rng);
    });
}

/// dX, dW, db on `dev` against the f64 reference: sums of n (dX) or m (dW, db) terms of size
/// ≤ 1.
fn check_backward(dev: &Device, m: usize, n: usize, k: usize, rng: &mut Rng) {
    common::check_linear_backward(dev, (m, n, k), rng, |terms| Tol { abs: 2e-6 * terms as f64, rel: 1e-5 });
}

#[test]
fn backward_ragged_shapes() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(41);
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
    });
}

#[test]
fn backward_in_row_chunks_is_bitwise_the_unchunked_result() {
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

/// The staged GEMMs (both operands in textures) forward and backward, forced, in every element
/// type, on shapes whose edges fall inside the 64 × 128 tiles and whose row counts are not
/// multiples of 4 (dW's sum reads zeros past its end).
#[test]
fn staged_gemms_forward_and_backward_in_every_type() {
    let mut rng = Rng::new(43);
    let shapes = [(1, 4, 8), (5, 36, 8), (65, 132, 24), (131, 12, 64)];
    let types = [(DType::F32, DType::F32), (DType::BF16, DType::BF16), (DType::F16, DType::F32)];
    for dev in devices().iter().filter(|d| d.texture_inputs()) {
        for (m, n, k) in shapes {
            for (xd, wd) in types {
                let (x, w, b, g) = (
                    rng.values(m * k, 1.0),
                    rng.values(n * k, 1.0),
                    rng.values(n, 1.0),
                    rng.values(m * n, 1.0),
                );
                let xt = dev.tensor_as(&x, &[m, k], xd).unwrap();
                let wt = dev.tensor_as(&w, &[n, k], wd).unwrap();
                // The reference sees the values the GPU holds (rounded to the half types).
                let (xr, wr) = (xt.to_vec().unwrap(), wt.to_vec().unwrap());
                let what = format!("{} staged m={m} n={n} k={k} {xd:?}/{wd:?}", common::label(dev));
                let op = Linear { kernel: LinearKernel::Staged, outputs: Outputs::F32 };
                let y = op.forward(&xt, &wt, Some(&dev.tensor(&b, &[n]).unwrap())).unwrap();
                let want = reference::linear::linear(&xr, &wr, Some(&b), k);
                let tol = |terms: usize| Tol { abs: 2e-6 * terms as f64, rel: 1e-5 };
                assert_close(&format!("{what}: y"), &y.to_vec().unwrap(), &want, tol(k));
                let grads = op.backward(&xt, &wt, &dev.tensor(&g, &[m, n]).unwrap()).unwrap();
                let (dx, dw, db) = reference::linear::linear_backward(&xr, &wr, &g, k);
                assert_close(&format!("{what}: dX"), &grads.input.to_vec().unwrap(), &dx, tol(n));
                assert_close(&format!("{what}: dW"), &grads.weight.to_vec().unwrap(), &dw, tol(m));
                assert_close(&format!("{what}: db"), &grads.bias.to_vec().unwrap(), &db, tol(m));
            }
        }
    }
}

/// In 64 KiB bindings the staged GEMMs run over chunks of rows (dW adding chunk by chunk), and
/// `Auto` picks them for rows of whole texels.
#[test]
fn staged_gemms_in_row_chunks() {
    let mut rng = Rng::new(44);
    for dev in small_binding_devices().iter().filter(|d| d.texture_inputs()) {
        check(dev, 300, 260, 80, true, &mut rng);
        check_backward(dev, 700, 40, 32, &mut rng);
    }
}

/// Forcing the staged GEMMs where they cannot run is a typed error, not a fallback.
#[test]
fn staged_gemms_refuse_what_they_cannot_run() {
    common::on_each(devices(), |dev| {
        let staged = Linear { kernel: LinearKernel::Staged, ..Default::default() };
        // Rows of 6 f32s do not start on whole texels; on storage inputs nothing is staged.
        let k = if dev.texture_inputs() { 6 } else { 8 };
        let x = dev.tensor(&vec![0.5; 3 * k], &[3, k]).unwrap();
        let w = dev.tensor(&vec![0.25; 2 * k], &[2, k]).unwrap();
        let err = staged.forward(&x, &w, None).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { op: "linear", .. }), "{err}");
        let g = dev.tensor(&[1.0; 6], &[3, 2]).unwrap();
        let err = staged.backward(&x, &w, &g).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { op: "linear", .. }), "{err}");
    });
}
