//! cross_entropy on every adapter against the f64 reference.

use crate::common;

use common::classes::{class_count, ids, target_shape, upstream};
use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::reference::cross_entropy::cross_entropy as reference;
use wgpu_loss::{CrossEntropy, Device, Reduction, RowStrategy};

const STRATEGIES: [RowStrategy; 5] = [
    RowStrategy::Auto,
    RowStrategy::ThreadPerRow,
    RowStrategy::Segment(4),
    RowStrategy::Segment(32),
    RowStrategy::WorkgroupPerRow,
];
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// Runs the GPU loss and the reference on the same data and compares.
#[allow(clippy::too_many_arguments)]
fn check(
    dev: &Device,
    x: &[f32],
    shape: [usize; 2],
    t: &[i64],
    weight: Option<&[f32]>,
    reduction: Reduction,
    strategy: RowStrategy,
    scale: f64,
) -> Vec<f32> {
    let [n, c] = shape;
    let mut loss = CrossEntropy::default().reduction(reduction).strategy(strategy);
    if let Some(w) = weight {
        loss = loss.weight(dev.tensor(w, &[c]).unwrap());
    }
    let got = loss
        .forward(&dev.tensor(x, &shape).unwrap(), &dev.indices(t, &[n]).unwrap())
        .unwrap()
        .to_vec()
        .unwrap();
    let want = reference(x, c, t, weight, -100, reduction).unwrap();
    let what =
        format!("{} {shape:?} {reduction:?} {strategy:?} weight={}", common::label(dev), weight.is_some());
    assert_close(&what, &got, &want, Tol::scaled(scale).sum(c * n));
    got
}

#[test]
fn pytorch_golden_values() {
    // torch.nn.functional.cross_entropy(torch.tensor([[1.,2,3],[1,2,3],[1,2,3]]),
    //     torch.tensor([2,0,-100]), weight=None / torch.tensor([1.,2,3]), reduction=...)
    // none: [0.40760596, 2.4076059, 0.]   mean: 1.4076059   weighted none: [1.2228179, 2.4076059, 0.]
    // weighted mean: (1.2228179 + 2.4076059) / (w[2] + w[0] = 4) = 0.90760596
    let x = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
    let t = [2i64, 0, -100];
    common::on_each(devices(), |dev| {
        let logits = dev.tensor(&x, &[3, 3]).unwrap();
        let targets = dev.indices(&t, &[3]).unwrap();
        let w = dev.tensor(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let run = |l: CrossEntropy| l.forward(&logits, &targets).unwrap().to_vec().unwrap();
        let tol = Tol::ELEMENT;
        assert_close(
            "none",
            &run(CrossEntropy::default().reduction(Reduction::None)),
            &[0.40760596, 2.40760596, 0.0],
            tol,
        );
        assert_close("mean", &run(CrossEntropy::default()), &[1.40760596], tol);
        assert_close(
            "weighted none",
            &run(CrossEntropy::default().weight(w.clone()).reduction(Reduction::None)),
            &[1.22281789, 2.40760596, 0.0],
            tol,
        );
        assert_close("weighted mean", &run(CrossEntropy::default().weight(w)), &[0.90760596], tol);
    });
}

#[test]
fn large_logits_do_not_overflow() {
    // F.cross_entropy(torch.tensor([[1000., 0.], [1000., 0.]]), torch.tensor([1, 0]), reduction='none') = [1000., 0.]
    common::on_each(devices(), |dev| {
        for strategy in STRATEGIES {
            let got = CrossEntropy::default()
                .reduction(Reduction::None)
                .strategy(strategy)
                .forward(
                    &dev.tensor(&[1000.0, 0.0, 1000.0, 0.0], &[2, 2]).unwrap(),
                    &dev.indices(&[1i64, 0], &[2]).unwrap(),
                )
                .unwrap()
                .to_vec()
                .unwrap();
            assert_close(
                &format!("{} {strategy:?}", common::label(dev)),
                &got,
                &[1000.0, 0.0],
                Tol::scaled(1000.0),
            );
        }
    });
}

#[test]
fn all_ignored_mean_is_nan_and_sum_is_zero() {
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[0.5, -1.0, 2.0, 0.0], &[2, 2]).unwrap();
        let t = dev.indices(&[-100i64, -100], &[2]).unwrap();
        let mean = CrossEntropy::default().forward(&x, &t).unwrap().item().unwrap();
        assert!(mean.is_nan(), "{}: mean over no target is {mean}", common::label(dev));
        let sum = CrossEntropy::default().reduction(Reduction::Sum).forward(&x, &t).unwrap().item().unwrap();
        assert_eq!(sum, 0.0);
        let none =
            CrossEntropy::default().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec().unwrap();
        assert_eq!(none, [0.0, 0.0]);
    });
}

#[test]
fn empty_batch_follows_pytorch() {
    // F.cross_entropy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) -> nan; sum -> 0
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[], &[0, 5]).unwrap();
        let t = dev.indices::<i64>(&[], &[0]).unwrap();
        assert!(CrossEntropy::default().forward(&x, &t).unwrap().item().unwrap().is_nan());
        assert_eq!(
            CrossEntropy::default().reduction(Reduction::Sum).forward(&x, &t).unwrap().item().unwrap(),
            0.0
        );
        assert!(
            CrossEntropy::default()
                .reduction(Reduction::None)
                .forward(&x, &t)
                .unwrap()
                .to_vec()
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn shape_matrix_strategies_reductions_weights() {
    let shapes = [[1, 1], [3, 7], [5, 1000], [2, 4099], [33, 300], [130, 65]];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(1);
        for shape in shapes {
            let [n, c] = shape;
            let x = rng.values(n * c, 4.0);
            let mut t = rng.classes(n, c);
            if n > 2 {
                t[1] = -100;
            }
            let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32).collect();
            for strategy in STRATEGIES {
                for reduction in REDUCTIONS {
                    for weight in [None, Some(w.as_slice())] {
                        check(dev, &x, shape, &t, weight, reduction, strategy, 4.0);
                    }
                }
            }
        }
    });
}

#[test]
fn value_regimes() {
    let (n, c) = (17, 301);
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(2);
        for scale in [80.0f32, 1e4] {
            let x = rng.values(n * c, scale);
            let t = rng.classes(n, c);
            for strategy in STRATEGIES {
                check(dev, &x, [n, c], &t, None, Reduction::None, strategy, scale as f64);
            }
        }
        // All-equal rows: every loss is ln C.
        let x = vec![3.25f32; n * c];
        let t = rng.classes(n, c);
        for strategy in STRATEGIES {
            let got = check(dev, &x, [n, c], &t, None, Reduction::None, strategy, 4.0);
            assert!(got.iter().all(|&l| (l as f64 - (c as f64).ln()).abs() < 1e-5));
        }
        // Shift invariance: adding a constant to every logit changes nothing.
        let x = rng.values(n * c, 3.0);
        let shifted: Vec<f32> = x.iter().map(|v| v + 500.0).collect();
        let a = check(dev, &x, [n, c], &t, None, Reduction::None, RowStrategy::Auto, 3.0);
        let b = check(dev, &shifted, [n, c], &t, None, Reduction::None, RowStrategy::Auto, 503.0);
        assert_close("shift invariance", &b, &common::f64s(&a), Tol::scaled(503.0));
    });
}

#[test]
fn more_rows_than_workgroups_per_dimension() {
    // 70 000 rows: one workgroup per row needs a 2-D grid.
    let (n, c) = (70_000, 3);
    let mut rng = Rng::new(3);
    let x = rng.values(n * c, 5.0);
    let mut t = rng.classes(n, c);
    t[69_999] = -100;
    common::on_each(devices(), |dev| {
        for strategy in [RowStrategy::WorkgroupPerRow, RowStrategy::Auto] {
            for reduction in [Reduction::None, Reduction::Mean] {
                check(dev, &x, [n, c], &t, None, reduction, strategy, 5.0);
            }
        }
    });
}

#[test]
fn chunked_bindings_match_reference_and_unchunked_bitwise() {
    // 64 KiB bindings: 300 rows of 100 logits (120 KB) run in chunks; rows of 20 000 (80 KB)
    // cannot run at all (see errors.rs).
    let (n, c) = (300, 100);
    let mut rng = Rng::new(4);
    let x = rng.values(n * c, 6.0);
    let t = rng.classes(n, c);
    for (small, full) in small_binding_devices().iter().zip(devices()) {
        for reduction in REDUCTIONS {
            let a = check(small, &x, [n, c], &t, None, reduction, RowStrategy::Auto, 6.0);
            let b = check(full, &x, [n, c], &t, None, reduction, RowStrategy::Auto, 6.0);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{}: chunking changed the result",
                common::label(small)
            );
        }
    }
}

#[test]
fn reductions_are_bitwise_reproducible() {
    let (n, c) = (1000, 37);
    let mut rng = Rng::new(5);
    let x = rng.values(n * c, 10.0);
    let t = rng.classes(n, c);
    common::on_each(devices(), |dev| {
        let logits = dev.tensor(&x, &[n, c]).unwrap();
        let targets = dev.indices(&t, &[n]).unwrap();
        let runs: Vec<u32> = (0..4)
            .map(|_| CrossEntropy::default().forward(&logits, &targets).unwrap().item().unwrap().to_bits())
            .collect();
        assert!(runs.windows(2).all(|w| w[0] == w[1]), "{}: {runs:?}", common::label(dev));
    });
}

#[test]
fn vocabulary_sized_logits_beyond_the_binding_limit() {
    // [4096, 32000] f32 is 524 MB, four times the 128 MiB storage binding limit.
    let (n, c) = (4096, 32000);
    let mut rng = Rng::new(6);
    let x = rng.values(n * c, 8.0);
    let mut t = rng.classes(n, c);
    t[7] = -100;
    common::on_each(devices(), |dev| {
        assert!(
            (n * c * 4) as u64 > dev.binding_limit(),
            "{}: the test must cross the binding limit",
            common::label(dev)
        );
        check(dev, &x, [n, c], &t, None, Reduction::None, RowStrategy::Auto, 8.0);
        check(dev, &x, [n, c], &t, None, Reduction::Mean, RowStrategy::Auto, 8.0);
        dev.clear_pool();
    });
}

// ---- options beyond (N, C): label smoothing, probability targets, K-dim, unbatched, gradients

use wgpu_loss::Accuracy;
use wgpu_loss::reference::cross_entropy as ce_ref;

/// Options of one class-id evaluation.
#[derive(Clone, Copy, Debug)]
struct Opts {
    weighted: bool,
    smoothing: f32,
    reduction: Reduction,
    strategy: RowStrategy,
}

/// Forward and backward of cross_entropy with class ids against the references.
fn check_ids(dev: &Device, x: &[f32], shape: &[usize], t: &[i64], o: Opts, rng: &mut Rng) {
    let c = class_count(shape);
    let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
    let mut loss =
        CrossEntropy::default().reduction(o.reduction).strategy(o.strategy).label_smoothing(o.smoothing);
    if o.weighted {
        loss = loss.weight(dev.tensor(&w, &[c]).unwrap());
    }
    let ts = target_shape(shape);
    let (xt, tt) = (dev.tensor(x, shape).unwrap(), dev.indices(t, &ts).unwrap());
    let weight = o.weighted.then_some(w.as_slice());
    let eps = o.smoothing as f64;
    let what = format!("{} {shape:?} {o:?}", common::label(dev));
    let got = loss.forward(&xt, &tt).unwrap();
    let want = ce_ref::cross_entropy_nd(x, shape, t, weight, -100, eps, o.reduction).unwrap();
    if o.reduction == Reduction::None {
        assert_eq!(got.shape(), ts.as_slice(), "{what}");
    }
    assert_close(&format!("{what} forward"), &got.to_vec().unwrap(), &want, Tol::scaled(4.0).sum(x.len()));
    let (g, gt) = upstream(dev, rng, o.reduction, &ts);
    let dx = loss.backward(&xt, &tt, &gt).unwrap().to_vec().unwrap();
    let want = ce_ref::cross_entropy_backward(x, shape, t, weight, -100, eps, o.reduction, &g).unwrap();
    assert_close(&format!("{what} backward"), &dx, &want, Tol::ELEMENT.sum(c));
}

#[test]
fn class_ids_every_option_forward_and_backward() {
    let shapes: [&[usize]; 6] = [&[7], &[1, 1], &[5, 7], &[3, 5, 4], &[2, 6, 3, 2], &[9, 1000]];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(40);
        for shape in shapes {
            let n: usize = shape.iter().product();
            let c = class_count(shape);
            let x = rng.values(n, 4.0);
            let t = ids(&mut rng, n / c, c);
            for weighted in [false, true] {
                for smoothing in [0.0, 0.1] {
                    for reduction in REDUCTIONS {
                        let o = Opts { weighted, smoothing, reduction, strategy: RowStrategy::Auto };
                        check_ids(dev, &x, shape, &t, o, &mut rng);
                    }
                }
            }
            for strategy in [RowStrategy::ThreadPerRow, RowStrategy::Segment(4), RowStrategy::WorkgroupPerRow]
            {
                let o = Opts { weighted: true, smoothing: 0.2, reduction: Reduction::Mean, strategy };
                check_ids(dev, &x, shape, &t, o, &mut rng);
            }
        }
    });
}

#[test]
fn probability_targets_forward_and_backward() {
    let shapes: [&[usize]; 4] = [&[6], &[4, 7], &[3, 5, 4], &[5, 1000]];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(41);
        for shape in shapes {
            let n: usize = shape.iter().product();
            let c = class_count(shape);
            let x = rng.values(n, 4.0);
            let y: Vec<f32> = (0..n).map(|_| (rng.unit() + 1.0) * 0.5).collect();
            let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32).collect();
            for weighted in [false, true] {
                for smoothing in [0.0f32, 0.25] {
                    for reduction in REDUCTIONS {
                        let mut loss =
                            CrossEntropy::default().reduction(reduction).label_smoothing(smoothing);
                        if weighted {
                            loss = loss.weight(dev.tensor(&w, &[c]).unwrap());
                        }
                        let weight = weighted.then_some(w.as_slice());
                        let (xt, yt) = (dev.tensor(&x, shape).unwrap(), dev.tensor(&y, shape).unwrap());
                        let what = format!(
                            "{} {shape:?} probs weighted={weighted} eps={smoothing} {reduction:?}",
                            common::label(dev)
                        );
                        let got = loss.forward_probs(&xt, &yt).unwrap().to_vec().unwrap();
                        let want =
                            ce_ref::cross_entropy_probs(&x, shape, &y, weight, smoothing as f64, reduction);
                        assert_close(&format!("{what} forward"), &got, &want, Tol::scaled(4.0).sum(n));
                        let (g, gt) = upstream(dev, &mut rng, reduction, &target_shape(shape));
                        let (dx, dy) = loss.backward_probs(&xt, &yt, &gt).unwrap();
                        let (wx, wy) = ce_ref::cross_entropy_probs_backward(
                            &x,
                            shape,
                            &y,
                            weight,
                            smoothing as f64,
                            reduction,
                            &g,
                        );
                        // dx = s (p Σ w y' − w y') subtracts terms of size |s|·w·y' (up to ~5 here)
                        // and Σ w y' is an f32 sum over C terms: a few ulp of 5, times √C.
                        let tol = Tol { abs: 1e-6 * (c as f64).sqrt(), rel: 1e-5 };
                        assert_close(&format!("{what} dx"), &dx.to_vec().unwrap(), &wx, tol);
                        assert_close(&format!("{what} dy"), &dy.to_vec().unwrap(), &wy, Tol::scaled(4.0));
                    }
                }
            }
        }
    });
}

#[test]
fn smoothing_and_gradient_golden_values() {
    // F.cross_entropy(torch.tensor([[1., 2, 3]]), torch.tensor([2]), label_smoothing=0.1) -> 0.50760596
    // x.grad of F.cross_entropy(x, [2]) -> [0.09003057, 0.24472847, -0.33475904]
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[1.0, 2.0, 3.0], &[1, 3]).unwrap();
        let t = dev.indices(&[2i64], &[1]).unwrap();
        let got = CrossEntropy::default().label_smoothing(0.1).forward(&x, &t).unwrap().item().unwrap();
        assert_close("smoothing", &[got], &[0.50760596], Tol::ELEMENT);
        let g = dev.tensor(&[1.0], &[]).unwrap();
        let dx = CrossEntropy::default().backward(&x, &t, &g).unwrap().to_vec().unwrap();
        assert_close("gradient", &dx, &[0.09003057, 0.24472847, -0.33475904], Tol::ELEMENT);
        // F.cross_entropy(torch.tensor([[1., 2, 3]]), torch.tensor([[0.1, 0.2, 0.7]])) -> 0.80760596
        let y = dev.tensor(&[0.1, 0.2, 0.7], &[1, 3]).unwrap();
        let got = CrossEntropy::default().forward_probs(&x, &y).unwrap().item().unwrap();
        assert_close("probability targets", &[got], &[0.80760596], Tol::ELEMENT);
        let empty = dev.tensor(&[], &[0, 3]).unwrap();
        assert!(CrossEntropy::default().forward_probs(&empty, &empty).unwrap().item().unwrap().is_nan());
        // unbatched (C) input with a 0-d target: the same value as the (1, C) row
        let xu = dev.tensor(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let tu = dev.indices(&[2i64], &[]).unwrap();
        let got = CrossEntropy::default().reduction(Reduction::None).forward(&xu, &tu).unwrap();
        assert!(got.shape().is_empty());
        assert_close("unbatched", &got.to_vec().unwrap(), &[0.40760596], Tol::ELEMENT);
    });
}

#[test]
fn k_dim_equals_the_permuted_two_dim_loss() {
    // (N, C, d1, d2) with targets (N, d1, d2) equals (N·d1·d2, C) after moving C last.
    let mut rng = Rng::new(42);
    let (n, c, d1, d2) = (2, 5, 3, 4);
    let x = rng.values(n * c * d1 * d2, 3.0);
    let t = ids(&mut rng, n * d1 * d2, c);
    let mut moved = Vec::with_capacity(x.len());
    for i in 0..n {
        for p in 0..d1 * d2 {
            for k in 0..c {
                moved.push(x[(i * c + k) * d1 * d2 + p]);
            }
        }
    }
    common::on_each(devices(), |dev| {
        for reduction in REDUCTIONS {
            let loss = CrossEntropy::default().reduction(reduction).label_smoothing(0.05);
            let a = loss
                .forward(&dev.tensor(&x, &[n, c, d1, d2]).unwrap(), &dev.indices(&t, &[n, d1, d2]).unwrap())
                .unwrap();
            let b = loss
                .forward(
                    &dev.tensor(&moved, &[n * d1 * d2, c]).unwrap(),
                    &dev.indices(&t, &[n * d1 * d2]).unwrap(),
                )
                .unwrap();
            let want: Vec<f64> = b.to_vec().unwrap().iter().map(|&v| v as f64).collect();
            assert_close(
                &format!("{} {reduction:?}", common::label(dev)),
                &a.to_vec().unwrap(),
                &want,
                Tol::ELEMENT.sum(x.len()),
            );
        }
    });
}

#[test]
fn top_k_accuracy_with_ignored_rows() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(44);
        for shape in [&[50usize, 10][..], &[4, 6, 5]] {
            let n: usize = shape.iter().product();
            let c = class_count(shape);
            let x = rng.values(n, 1.0);
            let t = ids(&mut rng, n / c, c);
            let rows = wgpu_loss::reference::rows_along_dim(shape, 1);
            for k in [1, 3, c] {
                let (mut right, mut counted) = (0.0, 0.0);
                for (r, row) in rows.iter().enumerate() {
                    if t[r] == -100 {
                        continue;
                    }
                    let xt = x[row[t[r] as usize]];
                    let above = row.iter().filter(|&&i| x[i] > xt).count();
                    counted += 1.0;
                    right += (above < k) as u8 as f64;
                }
                let got = Accuracy::default()
                    .top_k(k)
                    .forward(&dev.tensor(&x, shape).unwrap(), &dev.indices(&t, &target_shape(shape)).unwrap())
                    .unwrap()
                    .item()
                    .unwrap();
                assert_close(
                    &format!("{} top-{k} {shape:?}", common::label(dev)),
                    &[got],
                    &[right / counted],
                    Tol::ELEMENT,
                );
            }
        }
    });
}

#[test]
fn nan_rows_give_nan_loss_and_gradient() {
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[1.0, f32::NAN, 3.0, 1.0, 2.0, 3.0], &[2, 3]).unwrap();
        let t = dev.indices(&[0i64, 2], &[2]).unwrap();
        let none =
            CrossEntropy::default().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec().unwrap();
        assert!(none[0].is_nan(), "{none:?}");
        assert_close("clean row", &none[1..], &[0.40760596], Tol::ELEMENT);
        assert!(wgpu_loss::cross_entropy(&x, &t).unwrap().item().unwrap().is_nan());
        let g = dev.tensor(&[1.0], &[]).unwrap();
        let dx = CrossEntropy::default().backward(&x, &t, &g).unwrap().to_vec().unwrap();
        assert!(dx[..3].iter().all(|v| v.is_nan()) && dx[3..].iter().all(|v| v.is_finite()), "{dx:?}");
    });
}

#[test]
fn invalid_options_are_typed_errors() {
    use wgpu_loss::Error;
    let dev = &devices()[0];
    let x = dev.tensor(&[0.0; 6], &[2, 3]).unwrap();
    let t = dev.indices(&[0i64, 1], &[2]).unwrap();
    let y = dev.tensor(&[0.0; 6], &[2, 3]).unwrap();
    assert!(matches!(
        CrossEntropy::default().label_smoothing(1.5).forward(&x, &t),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        CrossEntropy::default().ignore_index(0).forward_probs(&x, &y),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        CrossEntropy::default().forward_probs(&x, &dev.tensor(&[0.0; 3], &[3]).unwrap()),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        CrossEntropy::default().forward(&x, &dev.indices(&[0i64], &[1]).unwrap()),
        Err(Error::Shape { .. })
    ));
    let g = dev.tensor(&[1.0, 1.0], &[2]).unwrap();
    assert!(matches!(CrossEntropy::default().backward(&x, &t, &g), Err(Error::Shape { .. })));
    assert!(matches!(Accuracy::default().top_k(0).forward(&x, &t), Err(Error::InvalidArgument { .. })));
    // a bad target in the backward is reported on read, like the forward
    let bad = dev.indices(&[0i64, 7], &[2]).unwrap();
    let dx = CrossEntropy::default().backward(&x, &bad, &dev.tensor(&[1.0], &[]).unwrap()).unwrap();
    assert!(matches!(dx.to_vec(), Err(Error::TargetOutOfRange { position: 1, value: 7, .. })));
}

#[test]
fn k_dim_chunked_bindings() {
    // 64 KiB bindings: (12, 50, 40) f32 = 96 KB is split over the batch dim.
    let mut rng = Rng::new(45);
    let shape = [12usize, 50, 40];
    let n: usize = shape.iter().product();
    let x = rng.values(n, 3.0);
    let t = ids(&mut rng, 12 * 40, 50);
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(45);
        for reduction in REDUCTIONS {
            let o = Opts { weighted: true, smoothing: 0.1, reduction, strategy: RowStrategy::Auto };
            check_ids(dev, &x, &shape, &t, o, &mut rng);
        }
    });
}

#[test]
fn infinite_logits_and_all_ignored_gradients() {
    common::on_each(devices(), |dev| {
        let inf = f32::INFINITY;
        // A +inf logit makes the row NaN (PyTorch: inf - inf); a -inf logit that is not the
        // target adds nothing; a -inf target logit gives +inf.
        let x = dev
            .tensor(&[inf, 0.0, 1.0, f32::NEG_INFINITY, 1.0, 2.0, f32::NEG_INFINITY, 0.0, 0.0], &[3, 3])
            .unwrap();
        let t = dev.indices(&[1i64, 2, 0], &[3]).unwrap();
        let got =
            CrossEntropy::default().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec().unwrap();
        assert!(got[0].is_nan(), "{got:?}");
        assert_close("-inf non-target", &got[1..2], &[0.31326169], Tol::ELEMENT);
        assert_eq!(got[2], inf);
        // All targets ignored: the mean is NaN and its gradient is zero (PyTorch's backward).
        let x = dev.tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let t = dev.indices(&[-100i64, -100], &[2]).unwrap();
        assert!(wgpu_loss::cross_entropy(&x, &t).unwrap().item().unwrap().is_nan());
        let dx = CrossEntropy::default().backward(&x, &t, &dev.tensor(&[1.0], &[]).unwrap()).unwrap();
        assert_eq!(dx.to_vec().unwrap(), [0.0; 4]);
    });
}

#[test]
fn rows_at_large_magnitude_are_exact_to_a_few_ulp_of_the_loss() {
    // log Σ − (x[t] − max) at rows whose max is about ±1e4: the loss and its gradient to 1e-6
    // relative of the f64 reference (lse − x[t] would round at the max's magnitude first).
    let mut rng = Rng::new(14);
    let (n, c) = (11, 301);
    for centre in [1e4f32, -1e4] {
        let x: Vec<f32> = rng.values(n * c, 3.0).iter().map(|v| centre + v).collect();
        let t = rng.classes(n, c);
        let want = reference(&x, c, &t, None, -100, Reduction::None).unwrap();
        let g = vec![1.0f32; n];
        let want_dx =
            ce_ref::cross_entropy_backward(&x, &[n, c], &t, None, -100, 0.0, Reduction::None, &g).unwrap();
        common::on_each(devices(), |dev| {
            let (xt, tt) = (dev.tensor(&x, &[n, c]).unwrap(), dev.indices(&t, &[n]).unwrap());
            let gt = dev.tensor(&g, &[n]).unwrap();
            for strategy in STRATEGIES {
                let loss = CrossEntropy::default().reduction(Reduction::None).strategy(strategy);
                let what = format!("{} {strategy:?} centre {centre}", common::label(dev));
                let got = loss.forward(&xt, &tt).unwrap().to_vec().unwrap();
                assert_close(&format!("{what} loss"), &got, &want, Tol { abs: 0.0, rel: 1e-6 });
                let dx = loss.backward(&xt, &tt, &gt).unwrap().to_vec().unwrap();
                assert_close(&format!("{what} gradient"), &dx, &want_dx, Tol { abs: 1e-7, rel: 1e-5 });
            }
        });
    }
}

#[test]
fn label_smoothing_and_probabilities_at_large_magnitude() {
    // The smoothing sum Σ w (lse − x) and the probability targets' Σ w y' (lse − x) at rows whose
    // max is about ±1e4: sums of x − x0 (the row's first element) keep their digits, where
    // lse · Σw − Σ w x would cancel at the max's magnitude.
    let mut rng = Rng::new(15);
    let (n, c) = (9, 257);
    let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32 * 0.25).collect();
    for centre in [1e4f32, -1e4] {
        let x: Vec<f32> = rng.values(n * c, 3.0).iter().map(|v| centre + v).collect();
        let t = rng.classes(n, c);
        let y: Vec<f32> = rng.values(n * c, 0.5).iter().map(|v| v + 0.5).collect();
        let want_smooth =
            ce_ref::cross_entropy_nd(&x, &[n, c], &t, Some(&w), -100, 0.1, Reduction::None).unwrap();
        let want_probs = ce_ref::cross_entropy_probs(&x, &[n, c], &y, Some(&w), 0.1, Reduction::None);
        common::on_each(devices(), |dev| {
            let (xt, tt, yt) = (
                dev.tensor(&x, &[n, c]).unwrap(),
                dev.indices(&t, &[n]).unwrap(),
                dev.tensor(&y, &[n, c]).unwrap(),
            );
            for strategy in STRATEGIES {
                let loss = CrossEntropy::default()
                    .reduction(Reduction::None)
                    .strategy(strategy)
                    .label_smoothing(0.1)
                    .weight(dev.tensor(&w, &[c]).unwrap());
                let what = format!("{} {strategy:?} centre {centre}", common::label(dev));
                let got = loss.forward(&xt, &tt).unwrap().to_vec().unwrap();
                assert_close(&format!("{what} smoothing"), &got, &want_smooth, Tol { abs: 0.0, rel: 1e-6 });
                let got = loss.forward_probs(&xt, &yt).unwrap().to_vec().unwrap();
                assert_close(
                    &format!("{what} probabilities"),
                    &got,
                    &want_probs,
                    Tol { abs: 0.0, rel: 1e-5 },
                );
            }
        });
    }
}

#[test]
fn confident_rows_keep_their_digits() {
    // Logits [0, 0, g, 0] with target 2: the loss is log1p(3·e^−g), 1.3619e-4 at g = 10 and
    // 3.2e-30 at g = 69. PyTorch float32 gives 1.36247e-4 at g = 10 (1.4e-3 relative off, as
    // log near 1 would) and 0 from g = 20 on:
    //   F.cross_entropy(torch.tensor([[0., 0., 10., 0.]]), torch.tensor([2])) = 1.3624693e-4
    // The online state keeps the sum of the non-maximal terms apart (the max's term is 1), so
    // log Σ = log1p(t) adds no error of its own: the loss is as exact as exp(−g). That is 1e-6
    // relative of the f64 reference up to g = 40 (a loss of 1.3e-17); beyond, WGSL bounds exp's
    // error at 3 + 2|x| ulp (lavapipe's is 2.6e-6 at −60, 1.0e-6 at −69), and so does the test.
    let gaps = [10.0f32, 20.0, 40.0, 50.0, 60.0, 69.0];
    let x: Vec<f32> = gaps.iter().flat_map(|&g| [0.0, 0.0, g, 0.0]).collect();
    let t = vec![2i64; gaps.len()];
    let want: Vec<f64> = gaps.iter().map(|&g| (3.0 * (-(g as f64)).exp()).ln_1p()).collect();
    common::on_each(devices(), |dev| {
        let rows = gaps.len();
        let (xt, tt) = (dev.tensor(&x, &[rows, 4]).unwrap(), dev.indices(&t, &[rows]).unwrap());
        for strategy in STRATEGIES {
            let what = format!("{} {strategy:?}", common::label(dev));
            let loss = CrossEntropy::default().reduction(Reduction::None).strategy(strategy);
            let got = loss.forward(&xt, &tt).unwrap().to_vec().unwrap();
            // log_softmax's log-probability of the dominant class is −log1p(3·e^−g).
            let lp = wgpu_loss::LogSoftmax { dim: -1, strategy, ..Default::default() }
                .forward(&xt)
                .unwrap()
                .to_vec()
                .unwrap();
            // The gradient: p[c] = e^−g / (1 + 3e^−g) elsewhere and p[t] − 1 = −3e^−g / (1 + 3e^−g)
            // at the target, taken as expm1(x[t] − lse): p[t] − 1 would keep only the digits of
            // p[t]'s rounding near 1 (1.1e-4 relative off at g = 10, 0 from g = 19 on).
            let ones = dev.tensor(&vec![1.0; rows], &[rows]).unwrap();
            let dx = loss.backward(&xt, &tt, &ones).unwrap().to_vec().unwrap();
            for (r, &g) in gaps.iter().enumerate() {
                let tol = Tol { abs: 0.0, rel: confident_tolerance(g) };
                assert_close(&format!("{what} cross_entropy g = {g}"), &got[r..r + 1], &want[r..r + 1], tol);
                assert_close(&format!("{what} log_softmax g = {g}"), &[-lp[r * 4 + 2]], &want[r..r + 1], tol);
                let e = (-(g as f64)).exp();
                let want_dx = [e, e, -3.0 * e, e].map(|v| v / (1.0 + 3.0 * e));
                assert_close(&format!("{what} gradient g = {g}"), &dx[r * 4..r * 4 + 4], &want_dx, tol);
            }
        }
    });
}

/// 1e-6 relative, or WGSL's bound on exp(−g) where that is larger: (3 + 2g) ulp.
fn confident_tolerance(g: f32) -> f64 {
    1e-6f64.max((3.0 + 2.0 * g as f64) * f32::EPSILON as f64)
}
