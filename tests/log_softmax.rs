//! log_softmax and softmax on every adapter against the f64 reference, and
//! log_softmax + nll ≡ cross_entropy.

use crate::common;

use common::{Rng, Tol, assert_close, devices, f64s, small_binding_devices};
use wgpu_loss::reference::log_softmax as reference;
use wgpu_loss::{CrossEntropy, Device, LogSoftmax, Nll, Reduction, RowStrategy, Softmax};

const STRATEGIES: [RowStrategy; 5] = [
    RowStrategy::Auto,
    RowStrategy::ThreadPerRow,
    RowStrategy::Segment(8),
    RowStrategy::Segment(64),
    RowStrategy::WorkgroupPerRow,
];

fn check(dev: &Device, x: &[f32], shape: &[usize], strategy: RowStrategy, scale: f64) -> Vec<f32> {
    let cols = *shape.last().unwrap();
    let t = dev.tensor(x, shape).unwrap();
    let what = format!("{} {shape:?} {strategy:?}", common::label(dev));
    let got = LogSoftmax { strategy, dim: -1, ..Default::default() }.forward(&t).unwrap().to_vec().unwrap();
    assert_close(
        &format!("log_softmax {what}"),
        &got,
        &reference::log_softmax(x, cols),
        Tol::scaled(scale).sum(cols),
    );
    let sm = Softmax { strategy, dim: -1, ..Default::default() }.forward(&t).unwrap().to_vec().unwrap();
    assert_close(&format!("softmax {what}"), &sm, &reference::softmax(x, cols), Tol::ELEMENT.sum(cols));
    got
}

#[test]
fn pytorch_golden_values() {
    // F.log_softmax(torch.tensor([[1., 2, 3]]), -1) = [-2.4076059, -1.4076059, -0.40760596]
    // F.softmax(...) = [0.09003057, 0.24472847, 0.66524096]
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[1.0, 2.0, 3.0], &[1, 3]).unwrap();
        assert_close(
            "log_softmax",
            &wgpu_loss::log_softmax(&x).unwrap().to_vec().unwrap(),
            &[-2.40760596, -1.40760596, -0.40760596],
            Tol::ELEMENT,
        );
        assert_close(
            "softmax",
            &wgpu_loss::softmax(&x).unwrap().to_vec().unwrap(),
            &[0.09003057, 0.24472847, 0.66524096],
            Tol::ELEMENT,
        );
    });
}

#[test]
fn shape_matrix_and_strategies() {
    let shapes: [&[usize]; 7] = [&[1, 1], &[3, 7], &[5, 1000], &[2, 4099], &[2, 3, 129], &[64, 257], &[11]];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(10);
        for shape in shapes {
            let x = rng.values(shape.iter().product(), 5.0);
            for strategy in STRATEGIES {
                check(dev, &x, shape, strategy, 5.0);
            }
        }
    });
}

#[test]
fn value_regimes() {
    let shape = [9, 513];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(11);
        for scale in [80.0f32, 1e4] {
            let x = rng.values(9 * 513, scale);
            for strategy in STRATEGIES {
                check(dev, &x, &shape, strategy, scale as f64);
            }
        }
        let x = vec![-7.5f32; 9 * 513];
        for strategy in STRATEGIES {
            let got = check(dev, &x, &shape, strategy, 8.0);
            assert!(got.iter().all(|&v| (v as f64 + 513f64.ln()).abs() < 1e-5), "all-equal rows");
        }
        let x = rng.values(9 * 513, 2.0);
        let shifted: Vec<f32> = x.iter().map(|v| v - 300.0).collect();
        let a = check(dev, &x, &shape, RowStrategy::Auto, 2.0);
        let b = check(dev, &shifted, &shape, RowStrategy::Auto, 302.0);
        assert_close("shift invariance", &b, &f64s(&a), Tol::scaled(302.0));
    });
}

#[test]
fn more_rows_than_workgroups_per_dimension() {
    let mut rng = Rng::new(12);
    let x = rng.values(70_000 * 2, 3.0);
    common::on_each(devices(), |dev| {
        check(dev, &x, &[70_000, 2], RowStrategy::WorkgroupPerRow, 3.0);
    });
}

#[test]
fn chunked_bindings() {
    let mut rng = Rng::new(13);
    let x = rng.values(257 * 101, 3.0);
    common::on_each(small_binding_devices(), |dev| {
        check(dev, &x, &[257, 101], RowStrategy::Auto, 3.0);
    });
}

#[test]
fn log_softmax_then_nll_equals_cross_entropy() {
    let mut rng = Rng::new(14);
    let (n, c) = (41, 77);
    let x = rng.values(n * c, 6.0);
    let mut t = rng.classes(n, c);
    t[3] = -100;
    t[9] = 5;
    let w: Vec<f32> = (0..c).map(|i| 0.25 + (i % 5) as f32 * 0.5).collect();
    common::on_each(devices(), |dev| {
        let logits = dev.tensor(&x, &[n, c]).unwrap();
        let weight = dev.tensor(&w, &[c]).unwrap();
        let logp = wgpu_loss::log_softmax(&logits).unwrap();
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            for (ignore, weighted) in [(-100, false), (-100, true), (5, false), (5, true)] {
                // Row 3 is ignored either way; with ignore_index 5, row 9 is ignored too.
                let ids: Vec<i64> = t.iter().map(|&v| if v == -100 { ignore } else { v }).collect();
                let targets = dev.indices(&ids, &[n]).unwrap();
                let mut ce = CrossEntropy::default().reduction(reduction).ignore_index(ignore);
                let mut nll = Nll::default().reduction(reduction).ignore_index(ignore);
                if weighted {
                    ce = ce.weight(weight.clone());
                    nll = nll.weight(weight.clone());
                }
                let a = ce.forward(&logits, &targets).unwrap().to_vec().unwrap();
                let b = nll.forward(&logp, &targets).unwrap().to_vec().unwrap();
                let what =
                    format!("{} {reduction:?} ignore={ignore} weighted={weighted}", common::label(dev));
                assert_close(&what, &b, &f64s(&a), Tol::scaled(6.0).sum(c));
            }
        }
    });
}

#[test]
fn vocabulary_sized_rows_beyond_the_binding_limit() {
    let (n, c) = (4096, 32000);
    let mut rng = Rng::new(15);
    let x = rng.values(n * c, 8.0);
    let want = reference::log_softmax(&x, c);
    common::on_each(devices(), |dev| {
        assert!((n * c * 4) as u64 > dev.binding_limit());
        let got = wgpu_loss::log_softmax(&dev.tensor(&x, &[n, c]).unwrap()).unwrap().to_vec().unwrap();
        assert_close(&format!("{} [4096, 32000]", common::label(dev)), &got, &want, Tol::scaled(8.0).sum(c));
        dev.clear_pool();
    });
}

#[test]
fn any_dim_forward_and_backward() {
    let mut rng = Rng::new(50);
    let shape = [3usize, 4, 5];
    let n: usize = shape.iter().product();
    let x = rng.values(n, 4.0);
    let g = rng.values(n, 1.0);
    common::on_each(devices(), |dev| {
        let (xt, gt) = (dev.tensor(&x, &shape).unwrap(), dev.tensor(&g, &shape).unwrap());
        for dim in [0isize, 1, 2, -1, -3] {
            let d = dim.rem_euclid(3) as usize;
            for strategy in [RowStrategy::Auto, RowStrategy::Segment(4)] {
                let what = format!("{} dim {dim} {strategy:?}", common::label(dev));
                let ls = LogSoftmax { strategy, dim, ..Default::default() };
                let y = ls.forward(&xt).unwrap();
                let yv = y.to_vec().unwrap();
                assert_close(
                    &format!("{what} log_softmax"),
                    &yv,
                    &reference::log_softmax_dim(&x, &shape, d),
                    Tol::scaled(4.0).sum(4),
                );
                let dx = ls.backward(&y, &gt).unwrap().to_vec().unwrap();
                assert_close(
                    &format!("{what} log_softmax backward"),
                    &dx,
                    &reference::log_softmax_backward(&yv, &g, &shape, d),
                    Tol::ELEMENT.sum(5),
                );
                let sm = Softmax { strategy, dim, ..Default::default() };
                let p = sm.forward(&xt).unwrap();
                let pv = p.to_vec().unwrap();
                assert_close(
                    &format!("{what} softmax"),
                    &pv,
                    &reference::softmax_dim(&x, &shape, d),
                    Tol::ELEMENT.sum(5),
                );
                let dx = sm.backward(&p, &gt).unwrap().to_vec().unwrap();
                assert_close(
                    &format!("{what} softmax backward"),
                    &dx,
                    &reference::softmax_backward(&pv, &g, &shape, d),
                    Tol::ELEMENT.sum(5),
                );
            }
        }
        assert!(LogSoftmax::default().dim(3).forward(&xt).is_err());
    });
}

#[test]
fn backward_on_wide_rows_and_chunks() {
    let mut rng = Rng::new(51);
    let shape = [40usize, 1000];
    let n = 40_000;
    let x = rng.values(n, 3.0);
    let g = rng.values(n, 1.0);
    for dev in devices().iter().chain(small_binding_devices()) {
        for strategy in [RowStrategy::Auto, RowStrategy::WorkgroupPerRow] {
            let ls = LogSoftmax { strategy, dim: -1, ..Default::default() };
            let y = ls.forward(&dev.tensor(&x, &shape).unwrap()).unwrap();
            let yv = y.to_vec().unwrap();
            let dx = ls.backward(&y, &dev.tensor(&g, &shape).unwrap()).unwrap().to_vec().unwrap();
            let want = reference::log_softmax_backward(&yv, &g, &shape, 1);
            assert_close(
                &format!("{} {strategy:?}", common::label(dev)),
                &dx,
                &want,
                Tol { abs: 1e-5, rel: 1e-5 },
            );
        }
    }
}

#[test]
fn nan_rows_are_nan_throughout() {
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[1.0, f32::NAN, 3.0, 1.0, 2.0, 3.0], &[2, 3]).unwrap();
        for y in [wgpu_loss::log_softmax(&x).unwrap(), wgpu_loss::softmax(&x).unwrap()] {
            let v = y.to_vec().unwrap();
            assert!(v[..3].iter().all(|v| v.is_nan()) && v[3..].iter().all(|v| v.is_finite()), "{v:?}");
        }
        // a NaN upstream gradient spoils its row's sum, hence the whole row of the gradient
        let y =
            wgpu_loss::log_softmax(&dev.tensor(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3]).unwrap()).unwrap();
        let g = dev.tensor(&[0.0, 0.0, 0.0, 1.0, f32::NAN, 1.0], &[2, 3]).unwrap();
        let dx = LogSoftmax::default().backward(&y, &g).unwrap().to_vec().unwrap();
        assert!(dx[..3].iter().all(|v| *v == 0.0) && dx[3..].iter().all(|v| v.is_nan()), "{dx:?}");
    });
}

#[test]
fn rows_at_large_magnitude_are_exact_to_a_few_ulp_of_the_output() {
    // Rows whose max is about ±1e4: x − lse rounded at the max's magnitude (an f32 ulp of 1e4 is
    // 1e-3) would be wrong in the fourth digit of an output of −0.44; (x − max) − log Σ is not.
    let mut rng = Rng::new(13);
    let shape = [7, 301];
    for centre in [1e4f32, -1e4] {
        let x: Vec<f32> = rng.values(7 * 301, 3.0).iter().map(|v| centre + v).collect();
        let want = wgpu_loss::reference::log_softmax::log_softmax(&x, 301);
        common::on_each(devices(), |dev| {
            for strategy in STRATEGIES {
                let got = LogSoftmax { dim: -1, strategy, ..Default::default() }
                    .forward(&dev.tensor(&x, &shape).unwrap())
                    .unwrap()
                    .to_vec()
                    .unwrap();
                let what = format!("{} {strategy:?} centre {centre}", common::label(dev));
                assert_close(&what, &got, &want, Tol { abs: 0.0, rel: 1e-6 });
            }
        });
    }
}
