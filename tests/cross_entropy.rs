//! cross_entropy on every adapter against the f64 reference.

mod common;

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
    for dev in devices() {
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
    }
}

#[test]
fn large_logits_do_not_overflow() {
    // F.cross_entropy(torch.tensor([[1000., 0.], [1000., 0.]]), torch.tensor([1, 0]), reduction='none') = [1000., 0.]
    for dev in devices() {
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
    }
}

#[test]
fn all_ignored_mean_is_nan_and_sum_is_zero() {
    for dev in devices() {
        let x = dev.tensor(&[0.5, -1.0, 2.0, 0.0], &[2, 2]).unwrap();
        let t = dev.indices(&[-100i64, -100], &[2]).unwrap();
        let mean = CrossEntropy::default().forward(&x, &t).unwrap().item().unwrap();
        assert!(mean.is_nan(), "{}: mean over no target is {mean}", common::label(dev));
        let sum = CrossEntropy::default().reduction(Reduction::Sum).forward(&x, &t).unwrap().item().unwrap();
        assert_eq!(sum, 0.0);
        let none =
            CrossEntropy::default().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec().unwrap();
        assert_eq!(none, [0.0, 0.0]);
    }
}

#[test]
fn empty_batch_follows_pytorch() {
    // F.cross_entropy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) -> nan; sum -> 0
    for dev in devices() {
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
    }
}

#[test]
fn shape_matrix_strategies_reductions_weights() {
    let shapes = [[1, 1], [3, 7], [5, 1000], [2, 4099], [33, 300], [130, 65]];
    let mut rng = Rng::new(1);
    for dev in devices() {
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
    }
}

#[test]
fn value_regimes() {
    let mut rng = Rng::new(2);
    let (n, c) = (17, 301);
    for dev in devices() {
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
    }
}

#[test]
fn more_rows_than_workgroups_per_dimension() {
    // 70 000 rows: one workgroup per row needs a 2-D grid.
    let (n, c) = (70_000, 3);
    let mut rng = Rng::new(3);
    let x = rng.values(n * c, 5.0);
    let mut t = rng.classes(n, c);
    t[69_999] = -100;
    for dev in devices() {
        for strategy in [RowStrategy::WorkgroupPerRow, RowStrategy::Auto] {
            for reduction in [Reduction::None, Reduction::Mean] {
                check(dev, &x, [n, c], &t, None, reduction, strategy, 5.0);
            }
        }
    }
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
    for dev in devices() {
        let logits = dev.tensor(&x, &[n, c]).unwrap();
        let targets = dev.indices(&t, &[n]).unwrap();
        let runs: Vec<u32> = (0..4)
            .map(|_| CrossEntropy::default().forward(&logits, &targets).unwrap().item().unwrap().to_bits())
            .collect();
        assert!(runs.windows(2).all(|w| w[0] == w[1]), "{}: {runs:?}", common::label(dev));
    }
}

#[test]
fn vocabulary_sized_logits_beyond_the_binding_limit() {
    // [4096, 32000] f32 is 524 MB, four times the 128 MiB storage binding limit.
    let (n, c) = (4096, 32000);
    let mut rng = Rng::new(6);
    let x = rng.values(n * c, 8.0);
    let mut t = rng.classes(n, c);
    t[7] = -100;
    for dev in devices() {
        assert!(
            (n * c * 4) as u64 > dev.binding_limit(),
            "{}: the test must cross the binding limit",
            common::label(dev)
        );
        check(dev, &x, [n, c], &t, None, Reduction::None, RowStrategy::Auto, 8.0);
        check(dev, &x, [n, c], &t, None, Reduction::Mean, RowStrategy::Auto, 8.0);
        dev.clear_pool();
    }
}
