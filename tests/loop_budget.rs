//! Every kernel family at the edge of the loop budget, against the f64 references.
//!
//! Mesa's software adapters end a shader invocation after 65 535 loop iterations, summed over
//! all its loops, without any error; the kernels plan for 60 000 there
//! (`wgpu_loss::SOFTWARE_LOOP_BUDGET`). For each loop that grows with the shape (a GEMM's k, a
//! row's columns, a strided dim, a reduction's element and partial counts), the tests run one
//! shape just inside the planned budget (whose invocations really run close to 60 000 trips:
//! an undercounted trip rule would be cut short there) and shapes just past it (which must be
//! split), on the adapters' real budgets. Then the same families on devices whose budget is
//! narrowed to 1 024 (`DeviceOptions::max_loop_trips`), where small shapes take every split:
//! pieces of k added in order, wider rows, more LM-head slices. On GPUs the real budget is
//! unlimited and only the narrowed tests split anything; the results must match everywhere.

use crate::common;

use common::{Rng, Tol, assert_close, devices, f64s, narrow_budget_devices, one_per_adapter};
use wgpu_loss::catalogue::Tolerance;
use wgpu_loss::reference::cross_entropy as ce_ref;
use wgpu_loss::reference::linear_cross_entropy::{self as lce_ref, Options};
use wgpu_loss::reference::log_softmax as ls_ref;
use wgpu_loss::{
    Accuracy, CrossEntropy, DType, Device, Error, Linear, LinearCrossEntropy, LinearKernel, LogSoftmax,
    Reduction, RowStrategy, Softmax, reference,
};

/// `linear` forward of x `(m, k)` and W `(n, k)` with a bias, by `kernel`.
fn check_linear(dev: &Device, kernel: LinearKernel, m: usize, n: usize, k: usize, rng: &mut Rng) {
    let (x, w, b) = (rng.values(m * k, 1.0), rng.values(n * k, 1.0), rng.values(n, 1.0));
    let got = Linear { kernel, ..Default::default() }
        .forward(
            &dev.tensor(&x, &[m, k]).unwrap(),
            &dev.tensor(&w, &[n, k]).unwrap(),
            Some(&dev.tensor(&b, &[n]).unwrap()),
        )
        .unwrap()
        .to_vec()
        .unwrap();
    let want = reference::linear::linear(&x, &w, Some(&b), k);
    // A dot product of k terms of size ≤ 1: the absolute error grows like √k·ε to k·ε.
    let tol = Tol { abs: 2e-6 * (k as f64).sqrt() * 8.0, rel: 1e-5 };
    assert_close(&format!("{} linear {kernel:?} m={m} n={n} k={k}", common::label(dev)), &got, &want, tol);
}

/// `linear` backward for x `(m, k)`, W `(n, k)`: dX sums over n, dW and db over m, with an
/// error growing like √terms·ε.
fn check_linear_backward(dev: &Device, m: usize, n: usize, k: usize, rng: &mut Rng) {
    let tol = |terms: usize| Tol { abs: 2e-6 * (terms as f64).sqrt() * 8.0, rel: 1e-5 };
    common::check_linear_backward(dev, (m, n, k), rng, tol);
}

/// log_softmax and softmax over `dim` of `shape`, forward and backward, with `strategy`.
fn check_rows(dev: &Device, shape: &[usize], dim: usize, strategy: RowStrategy, rng: &mut Rng) {
    let n: usize = shape.iter().product();
    let cols = shape[dim];
    let (x, g) = (rng.values(n, 4.0), rng.values(n, 1.0));
    let (xt, gt) = (dev.tensor(&x, shape).unwrap(), dev.tensor(&g, shape).unwrap());
    let what = format!("{} {shape:?} dim {dim} {strategy:?}", common::label(dev));
    let ls = LogSoftmax { dim: dim as isize, strategy, ..Default::default() };
    let y = ls.forward(&xt).unwrap();
    let yv = y.to_vec().unwrap();
    let tol = Tol::scaled(4.0).sum(cols);
    assert_close(&format!("log_softmax {what}"), &yv, &ls_ref::log_softmax_dim(&x, shape, dim), tol);
    let dx = ls.backward(&y, &gt).unwrap().to_vec().unwrap();
    let want = ls_ref::log_softmax_backward(&yv, &g, shape, dim);
    assert_close(&format!("log_softmax backward {what}"), &dx, &want, Tol::ELEMENT.sum(cols));
    let sm = Softmax { dim: dim as isize, strategy, ..Default::default() };
    let p = sm.forward(&xt).unwrap();
    let pv = p.to_vec().unwrap();
    let tol = Tol::ELEMENT.sum(cols);
    assert_close(&format!("softmax {what}"), &pv, &ls_ref::softmax_dim(&x, shape, dim), tol);
    let dx = sm.backward(&p, &gt).unwrap().to_vec().unwrap();
    let want = ls_ref::softmax_backward(&pv, &g, shape, dim);
    assert_close(&format!("softmax backward {what}"), &dx, &want, Tol::ELEMENT.sum(cols));
}

/// The shape's class-id targets' shape: dims other than 1.
fn target_shape(shape: &[usize]) -> Vec<usize> {
    let mut t = vec![shape[0]];
    t.extend_from_slice(&shape[2..]);
    t
}

/// cross_entropy over the class dim 1 of `shape`: class ids (weighted, smoothed, ignored rows)
/// and probabilities, forward (`forward`) and backward (`backward`).
fn check_cross_entropy(dev: &Device, shape: &[usize], forward: bool, backward: bool, rng: &mut Rng) {
    let n: usize = shape.iter().product();
    let c = shape[1];
    let ts = target_shape(shape);
    let rows: usize = ts.iter().product();
    let x = rng.values(n, 4.0);
    let mut t = rng.classes(rows, c);
    t[0] = -100;
    let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32 * 0.25).collect();
    let (xt, tt, wt) =
        (dev.tensor(&x, shape).unwrap(), dev.indices(&t, &ts).unwrap(), dev.tensor(&w, &[c]).unwrap());
    let what = format!("{} cross_entropy {shape:?}", common::label(dev));
    let ce = CrossEntropy::default().weight(wt).label_smoothing(0.1);
    let one = dev.tensor(&[1.0], &[]).unwrap();
    if forward {
        let got = ce.forward(&xt, &tt).unwrap().item().unwrap();
        let want = ce_ref::cross_entropy_nd(&x, shape, &t, Some(&w), -100, 0.1, Reduction::Mean).unwrap();
        assert_close(&format!("{what} ids forward"), &[got], &want, Tol::scaled(4.0).sum(n));
    }
    if backward {
        let dx = ce.backward(&xt, &tt, &one).unwrap().to_vec().unwrap();
        let want =
            ce_ref::cross_entropy_backward(&x, shape, &t, Some(&w), -100, 0.1, Reduction::Mean, &[1.0f32])
                .unwrap();
        assert_close(&format!("{what} ids backward"), &dx, &want, Tol::ELEMENT.sum(c));
    }
    // Probability targets: a softmax of random values along the class dim.
    let y: Vec<f32> = ls_ref::softmax_dim(&rng.values(n, 2.0), shape, 1).iter().map(|&v| v as f32).collect();
    let yt = dev.tensor(&y, shape).unwrap();
    let ce = CrossEntropy::default().reduction(Reduction::Sum);
    if forward {
        let got = ce.forward_probs(&xt, &yt).unwrap().item().unwrap();
        let want = ce_ref::cross_entropy_probs(&x, shape, &y, None, 0.0, Reduction::Sum);
        assert_close(&format!("{what} probs forward"), &[got], &want, Tol::scaled(4.0).sum(n));
    }
    if backward {
        let (dx, dy) = ce.backward_probs(&xt, &yt, &one).unwrap();
        let (want_dx, want_dy) =
            ce_ref::cross_entropy_probs_backward(&x, shape, &y, None, 0.0, Reduction::Sum, &[1.0f32]);
        assert_close(
            &format!("{what} probs backward dx"),
            &dx.to_vec().unwrap(),
            &want_dx,
            Tol::ELEMENT.sum(c),
        );
        assert_close(
            &format!("{what} probs backward dy"),
            &dy.to_vec().unwrap(),
            &want_dy,
            Tol::scaled(8.0).sum(c),
        );
    }
}

/// Top-k accuracy over class dim 1 of `shape`.
fn check_accuracy(dev: &Device, shape: &[usize], rng: &mut Rng) {
    let n: usize = shape.iter().product();
    let c = shape[1];
    let ts = target_shape(shape);
    let x = rng.values(n, 1.0);
    let t = rng.classes(ts.iter().product(), c);
    let (xt, tt) = (dev.tensor(&x, shape).unwrap(), dev.indices(&t, &ts).unwrap());
    for k in [1, c / 2] {
        let got = Accuracy::default().top_k(k).forward(&xt, &tt).unwrap().item().unwrap();
        let want = ce_ref::accuracy(&x, shape, &t, k, -100).unwrap();
        let what = format!("{} top-{k} accuracy {shape:?}", common::label(dev));
        assert_close(&what, &[got], &[want], Tol::ELEMENT);
    }
}

#[test]
fn linear_forward_k_at_the_budget() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(70);
        // Tiled: ⌈k/16⌉·21 + 20 trips, within 60 000 up to k = 45 696. Blocked: k + 1, up to
        // 59 968 in one piece (a multiple of 64). 70 000 and 100 000 were cut short before.
        for (kernel, ks) in [
            (LinearKernel::Tiled, [45_696, 45_760, 70_000]),
            (LinearKernel::Blocked, [59_968, 60_032, 100_000]),
        ] {
            for k in ks {
                check_linear(dev, kernel, 2, 3, k, &mut rng);
            }
        }
        // All ones: every output is exactly k (was 65 535 for k = 70 000).
        let k = 70_000;
        let x = dev.tensor(&vec![1.0; 2 * k], &[2, k]).unwrap();
        let w = dev.tensor(&vec![1.0; 3 * k], &[3, k]).unwrap();
        for kernel in [LinearKernel::Tiled, LinearKernel::Blocked] {
            let y = Linear { kernel, ..Default::default() }.forward(&x, &w, None).unwrap().to_vec().unwrap();
            assert_eq!(y, [k as f32; 6], "{} {kernel:?}", common::label(dev));
        }
    });
}

/// The staged GEMMs loop ⌈k/4⌉ + 129 times (the sum, then the block's stores): 4·(budget −
/// 129) is the longest sum one dispatch runs. One texel more is refused when they are forced
/// and runs on the blocked kernel under `Auto`; dW's sum over rows goes in pieces of that
/// length, added in order.
#[test]
fn staged_gemms_at_the_budget() {
    let mut rng = Rng::new(72);
    for dev in devices().iter().filter(|d| d.texture_inputs()) {
        let longest = 4 * (dev.loop_budget() as usize - 129);
        check_linear(dev, LinearKernel::Staged, 2, 4, longest, &mut rng);
        check_linear(dev, LinearKernel::Auto, 2, 4, longest + 4, &mut rng);
        let k = longest + 4;
        let x = dev.tensor(&vec![1.0; 2 * k], &[2, k]).unwrap();
        let w = dev.tensor(&vec![1.0; 4 * k], &[4, k]).unwrap();
        let err =
            Linear { kernel: LinearKernel::Staged, ..Default::default() }.forward(&x, &w, None).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { op: "linear", .. }), "{err}");
        check_linear_backward(dev, longest + 8, 4, 4, &mut rng);
    }
}

#[test]
fn linear_backward_long_sums_at_the_budget() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(71);
        // The gradient GEMMs loop k + 145 times: 59 840 is the longest piece of the budget.
        for long in [59_840, 59_904, 70_000] {
            check_linear_backward(dev, 2, long, 3, &mut rng); // dX sums over n
            check_linear_backward(dev, long, 2, 3, &mut rng); // dW and db sum over m
        }
    });
}

#[test]
fn rows_at_the_budget() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(72);
        // A strided row, one thread per row: the forward runs ⌈c/4⌉ + c + 10 trips (within the
        // budget up to c = 47 992), the backward 2c + 6 (up to 29 997). softmax --dim 0 of
        // [60 000, 2] summed to 0.84 before.
        for c in [29_990, 30_010, 47_990, 48_000, 70_000] {
            check_rows(dev, &[c, 2], 0, RowStrategy::Auto, &mut rng);
        }
        // Contiguous rows with the strategy asked for: quads (c/2 + 10 trips forward) and a
        // row of odd length, each widened as far as the budget needs.
        check_rows(dev, &[1, 119_976], 1, RowStrategy::ThreadPerRow, &mut rng);
        check_rows(dev, &[1, 120_000], 1, RowStrategy::ThreadPerRow, &mut rng);
        for strategy in [RowStrategy::ThreadPerRow, RowStrategy::Segment(2), RowStrategy::WorkgroupPerRow] {
            check_rows(dev, &[2, 300_001], 1, strategy, &mut rng);
        }
    });
}

#[test]
fn cross_entropy_strided_class_dim_at_the_budget() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(73);
        // The forward folds a strided row once: ⌈c/4⌉ + 9 trips, within the budget up to
        // c = 239 964; the backward also writes it: ⌈c/4⌉ + c + 10, up to 47 992.
        for c in [239_960, 240_000] {
            check_cross_entropy(dev, &[1, c, 2], true, false, &mut rng);
        }
        for c in [47_990, 48_000, 70_000] {
            check_cross_entropy(dev, &[1, c, 2], false, true, &mut rng);
        }
    });
}

#[test]
fn accuracy_at_the_budget() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(74);
        // One element a step: c + 5 trips per thread, within the budget up to c = 59 995.
        for c in [59_990, 60_010, 70_000] {
            check_accuracy(dev, &[1, c, 2], &mut rng);
        }
        check_accuracy(dev, &[3, 70_001], &mut rng);
    });
}

#[test]
fn reductions_over_many_partials() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(75);
        // 262 144 elements give 4 096 partials, one finishing stage; one more element, two.
        for n in [262_144, 262_145, 5_000_000] {
            let x = rng.values(n, 1.0);
            let xt = dev.tensor(&x, &[n]).unwrap();
            let what = format!("{} n={n}", common::label(dev));
            let tol = Tol::ELEMENT.sum(n);
            let sum_tol = Tol { abs: 1e-6 * (n as f64).sqrt(), ..tol };
            assert_close(
                &format!("sum {what}"),
                &[wgpu_loss::sum(&xt).unwrap().item().unwrap()],
                &[reference::reduce::sum(&x)],
                sum_tol,
            );
            assert_close(
                &format!("mean {what}"),
                &[wgpu_loss::mean(&xt).unwrap().item().unwrap()],
                &[reference::reduce::mean(&x)],
                tol,
            );
        }
        // mse's fused partials: 64 per 16 384 elements, past 4 096 partials above 1 M elements.
        let n = 1_048_577;
        let (x, y) = (rng.values(n, 1.0), rng.values(n, 1.0));
        let got =
            wgpu_loss::mse(&dev.tensor(&x, &[n]).unwrap(), &dev.tensor(&y, &[n]).unwrap(), Reduction::Mean)
                .unwrap()
                .item()
                .unwrap();
        let want = reference::pointwise::forward(
            reference::pointwise::Pointwise::Mse,
            &x,
            &y,
            n,
            None,
            None,
            Reduction::Mean,
            n as f64,
        );
        assert_close(&format!("{} mse n={n}", common::label(dev)), &[got], &want, Tol::ELEMENT.sum(n));
    });
}

#[test]
fn sum_of_268_5_million_halves() {
    // The last stage used to loop over every partial: 268 500 000 halves summed to 4 194 240.
    let n = 268_500_000;
    common::on_each(one_per_adapter(), |dev| {
        let xt = dev.tensor(&vec![0.5; n], &[n]).unwrap();
        let what = common::label(dev);
        assert_eq!(wgpu_loss::sum(&xt).unwrap().item().unwrap(), 134_250_000.0, "{what}");
        assert_eq!(wgpu_loss::mean(&xt).unwrap().item().unwrap(), 0.5, "{what}");
    });
}

#[test]
fn narrowed_budget_splits_every_family() {
    common::on_each(narrow_budget_devices(), |dev| {
        let mut rng = Rng::new(76);
        assert_eq!(dev.loop_budget(), wgpu_loss::MIN_LOOP_BUDGET);
        for kernel in [LinearKernel::Tiled, LinearKernel::Blocked] {
            check_linear(dev, kernel, 37, 19, 3_000, &mut rng);
        }
        check_linear_backward(dev, 300, 2_000, 7, &mut rng);
        check_linear_backward(dev, 2_000, 300, 7, &mut rng);
        check_rows(dev, &[3_000, 3], 0, RowStrategy::Auto, &mut rng);
        for strategy in [RowStrategy::Auto, RowStrategy::ThreadPerRow, RowStrategy::Segment(4)] {
            check_rows(dev, &[2, 5_001], 1, strategy, &mut rng);
            check_rows(dev, &[3, 8_000], 1, strategy, &mut rng);
        }
        check_cross_entropy(dev, &[2, 5_000, 3], true, true, &mut rng);
        check_cross_entropy(dev, &[4, 5_001], true, true, &mut rng);
        check_accuracy(dev, &[2, 5_000, 3], &mut rng);
    });
}

#[test]
fn narrowed_budget_lm_head() {
    let mut rng = Rng::new(77);
    let (n, h, v) = (37, 300, 2_000);
    let (x, w, b) = (rng.values(n * h, 1.0), rng.values(v * h, 1.0), rng.values(v, 1.0));
    let mut t = rng.classes(n, v);
    t[3] = -100;
    let o = Options { label_smoothing: 0.1, z_loss: 1e-3, ..Options::default() };
    let (want_loss, want_lse) = lce_ref::linear_cross_entropy(&x, &w, Some(&b), &t, h, &o).unwrap();
    let (dx, dw, db) =
        lce_ref::linear_cross_entropy_backward(&x, &w, Some(&b), &t, h, &o, &[1.0f32]).unwrap();
    let tol_loss = Tol::scaled(h as f64).sum(v);
    let tol_grad = Tol { abs: 2e-6 * (v as f64).sqrt() * (h as f64).sqrt(), rel: 2e-4 };
    common::on_each(narrow_budget_devices(), |dev| {
        let what = common::label(dev);
        let (xt, wt, bt) = (
            dev.tensor(&x, &[n, h]).unwrap(),
            dev.tensor(&w, &[v, h]).unwrap(),
            dev.tensor(&b, &[v]).unwrap(),
        );
        let tt = dev.indices(&t, &[n]).unwrap();
        let one = dev.tensor(&[1.0], &[]).unwrap();
        // Slices of 16 columns (h + 2 trips each) and a fold over 125 of them per row.
        let l = LinearCrossEntropy::default().label_smoothing(0.1).z_loss(1e-3);
        let out = l.forward(&xt, &wt, Some(&bt), &tt).unwrap();
        assert_close(&format!("{what} loss"), &out.loss.to_vec().unwrap(), &want_loss, tol_loss);
        assert_close(&format!("{what} lse"), &out.lse.to_vec().unwrap(), &want_lse, tol_loss);
        let (_, grads) = l.forward_backward(&xt, &wt, Some(&bt), &tt, &one).unwrap();
        assert_close(&format!("{what} dX"), &grads.input.to_vec().unwrap(), &dx, tol_grad);
        assert_close(&format!("{what} dW"), &grads.weight.to_vec().unwrap(), &dw, tol_grad);
        assert_close(&format!("{what} db"), &grads.bias.to_vec().unwrap(), &db, tol_grad);
        // The fold merges a row's partials in one loop: with one 16-column block per slice at
        // k = 1 000, 16 400 classes make 1 025 slices, past the budget: a typed error. Staged
        // (texture inputs), W's shards merge into the first shard's slices, so the fold stays
        // short and the loss is right: all-zero logits give ln V, plus the z-loss λ·(ln V)².
        let (h, v) = (1_000, 16_400);
        let xs = dev.tensor(&vec![0.0; 2 * h], &[2, h]).unwrap();
        let ws = dev.tensor(&vec![0.0; v * h], &[v, h]).unwrap();
        let got = l.forward(&xs, &ws, None, &dev.indices(&[0i64, 1], &[2]).unwrap());
        if dev.texture_inputs() {
            let lse = (v as f64).ln();
            let want = [lse + 1e-3 * lse * lse];
            assert_close(
                &format!("{what} staged fold"),
                &got.unwrap().loss.to_vec().unwrap(),
                &want,
                tol_loss,
            );
        } else {
            let err = got.unwrap_err();
            assert!(matches!(&err, Error::Limit { what, .. } if what.contains("[2, 1000]")), "{what}: {err}");
        }
        // Past every split: one block of columns over k = 1 100 is 1 102 trips (staged, four
        // values a trip: k = 4 400 is 1 113 with the partial's store).
        let k = if dev.texture_inputs() { 4_400 } else { 1_100 };
        let wide = dev.tensor(&vec![0.0; 2 * k], &[2, k]).unwrap();
        let w_wide = dev.tensor(&vec![0.0; 3 * k], &[3, k]).unwrap();
        let err = l.forward(&wide, &w_wide, None, &dev.indices(&[0i64, 1], &[2]).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::Limit { what, .. } if what.contains(&format!("[2, {k}]"))),
            "{what}: {err}"
        );
    });
}

#[test]
fn narrowed_budget_half_precision_gemms() {
    // Half operands plan their pieces of k and of W in 128-row blocks (64 for f32): the LM head
    // in bf16 and f16 and linear in bf16 on a 1 024-trip budget, where every split is taken,
    // against the f64 reference on the rounded inputs; gradients come back in their operand's
    // type (the tolerance adds its rounding, `Tolerance::for_dtype`).
    let mut rng = Rng::new(78);
    let (n, h, v) = (37, 300, 2_000);
    for dtype in [DType::BF16, DType::F16] {
        let round = |v: Vec<f32>| v.into_iter().map(|a| dtype.round(a)).collect::<Vec<f32>>();
        let (x, w) = (round(rng.values(n * h, 1.0)), round(rng.values(v * h, 1.0)));
        let t = rng.classes(n, v);
        let o = Options { label_smoothing: 0.1, ..Options::default() };
        let (want_loss, _) = lce_ref::linear_cross_entropy(&x, &w, None, &t, h, &o).unwrap();
        let (want_dx, want_dw, _) =
            lce_ref::linear_cross_entropy_backward(&x, &w, None, &t, h, &o, &[1.0f32]).unwrap();
        let tol_loss = Tol::scaled(h as f64).sum(v);
        let f32_grad = (2e-6 * (v as f64).sqrt() * (h as f64).sqrt(), 2e-4);
        let (abs, rel) = Tolerance { forward: f32_grad, backward: f32_grad }.for_dtype(dtype).backward;
        let tol_grad = Tol { abs, rel };
        let want_y = reference::linear::linear(&x[..4 * h], &w, None, h);
        let (abs, rel) = Tolerance { forward: (2e-6 * (h as f64).sqrt() * 8.0, 1e-5), backward: (0.0, 0.0) }
            .for_dtype(dtype)
            .forward;
        common::on_each(narrow_budget_devices(), |dev| {
            let what = format!("{} {}", common::label(dev), dtype.name());
            let (xt, wt) =
                (dev.tensor_as(&x, &[n, h], dtype).unwrap(), dev.tensor_as(&w, &[v, h], dtype).unwrap());
            let tt = dev.indices(&t, &[n]).unwrap();
            let one = dev.tensor(&[1.0], &[]).unwrap();
            let l = LinearCrossEntropy::default().label_smoothing(0.1);
            let out = l.forward(&xt, &wt, None, &tt).unwrap();
            assert_close(&format!("{what} loss"), &out.loss.to_vec().unwrap(), &want_loss, tol_loss);
            let (_, grads) = l.forward_backward(&xt, &wt, None, &tt, &one).unwrap();
            assert_eq!((grads.input.dtype(), grads.weight.dtype()), (dtype, dtype), "{what}");
            assert_close(&format!("{what} dX"), &grads.input.to_vec().unwrap(), &want_dx, tol_grad);
            assert_close(&format!("{what} dW"), &grads.weight.to_vec().unwrap(), &want_dw, tol_grad);
            // linear's y in x's type: k = 300 in pieces of 128.
            let x4 = dev.tensor_as(&x[..4 * h], &[4, h], dtype).unwrap();
            let y = Linear::default().forward(&x4, &wt, None).unwrap();
            assert_eq!(y.dtype(), dtype, "{what}");
            assert_close(&format!("{what} linear"), &y.to_vec().unwrap(), &want_y, Tol { abs, rel });
        });
    }
}

#[test]
fn shapes_past_every_split_are_limit_errors_naming_the_shape() {
    common::on_each(narrow_budget_devices(), |dev| {
        // 256 threads per row cannot bring a strided row of 300 000 under 1 024 trips.
        let x = dev.tensor(&vec![0.0; 600_000], &[300_000, 2]).unwrap();
        for result in [LogSoftmax::default().dim(0).forward(&x), Softmax::default().dim(0).forward(&x)] {
            let err = result.unwrap_err();
            assert!(matches!(&err, Error::Limit { what, .. } if what.contains("[300000, 2]")), "{err}");
        }
        // The device still works.
        let y = LogSoftmax::default().dim(0).forward(&dev.tensor(&[0.0; 4], &[2, 2]).unwrap()).unwrap();
        assert_close(
            "after a limit error",
            &y.to_vec().unwrap(),
            &f64s(&[-std::f32::consts::LN_2; 4]),
            Tol::ELEMENT,
        );
    });
}

/// A row loss of the class-margin, embedding or multilabel-margin kernels.
#[derive(Clone, Copy, Debug)]
enum RowLoss {
    MultiMargin,
    MultilabelSoftMargin,
    Cosine,
    Triplet,
    /// With this many targets listed a row (at least 5; then −1 and ids after it).
    MultilabelMargin(usize),
}

/// A result read back and its reference.
type Compared = (Vec<f32>, Vec<f64>);

/// `loss` on `rows` rows of `cols` values on `dev`, forward (per row) and backward (for a
/// per-row upstream gradient) against the f64 reference.
fn check_row_loss(dev: &Device, loss: RowLoss, rows: usize, cols: usize, rng: &mut Rng) {
    use wgpu_loss::reference::{class_margin as cm, embedding_rows as er};
    use wgpu_loss::{CosineEmbedding, MultiMargin, MultilabelMargin, MultilabelSoftMargin, TripletMargin};
    let what = format!("{} {loss:?} rows={rows} cols={cols}", common::label(dev));
    let none = Reduction::None;
    let x = rng.values(rows * cols, 1.0);
    let g = rng.values(rows, 1.0);
    let (xt, gt) = (dev.tensor(&x, &[rows, cols]).unwrap(), dev.tensor(&g, &[rows]).unwrap());
    let (x64, g64) = (f64s(&x), f64s(&g));
    // Sums of `cols` terms: relative to each result's largest value (a few ulp of it), widened
    // for the sum's length.
    let tol = |want: &[f64]| {
        let largest = want.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
        Tol { abs: 1e-6 * largest, rel: 1e-5 }.sum(cols)
    };
    let (loss_got, loss_want, grads): (Vec<f32>, Vec<f64>, Vec<Compared>) = match loss {
        RowLoss::MultiMargin => {
            let t: Vec<i64> = rng.classes(rows, cols);
            let tt = dev.indices(&t, &[rows]).unwrap();
            let l = MultiMargin::default().reduction(none);
            let (out, dx) = (l.forward(&xt, &tt).unwrap(), l.backward(&xt, &tt, &gt).unwrap());
            let want = cm::multi_margin(&x64, cols, &t, 1, 1.0, None, none).unwrap();
            let dwant = cm::multi_margin_backward(&x64, cols, &t, 1, 1.0, None, &g64, none).unwrap();
            (out.to_vec().unwrap(), want, vec![(dx.to_vec().unwrap(), dwant)])
        }
        RowLoss::MultilabelSoftMargin => {
            let y = rng.uniform(rows * cols, 0.0, 1.0);
            let yt = dev.tensor(&y, &[rows, cols]).unwrap();
            let l = MultilabelSoftMargin::default().reduction(none);
            let (out, dx) = (l.forward(&xt, &yt).unwrap(), l.backward(&xt, &yt, &gt).unwrap());
            let y64 = f64s(&y);
            let want = cm::multilabel_soft_margin(&x64, &y64, cols, None, none);
            let dwant = cm::multilabel_soft_margin_backward(&x64, &y64, cols, None, &g64, none);
            (out.to_vec().unwrap(), want, vec![(dx.to_vec().unwrap(), dwant)])
        }
        RowLoss::Cosine => {
            let x2 = rng.values(rows * cols, 1.0);
            let y: Vec<f32> = (0..rows).map(|r| if r % 2 == 0 { 1.0 } else { -1.0 }).collect();
            let (x2t, yt) = (dev.tensor(&x2, &[rows, cols]).unwrap(), dev.tensor(&y, &[rows]).unwrap());
            let l = CosineEmbedding::default().margin(-0.5).reduction(none);
            let out = l.forward(&xt, &x2t, &yt).unwrap();
            let (d1, d2) = l.backward(&xt, &x2t, &yt, &gt).unwrap();
            let (x2_64, y64) = (f64s(&x2), f64s(&y));
            let want = er::cosine_embedding(&x64, &x2_64, cols, &y64, -0.5, none);
            let (w1, w2) = er::cosine_embedding_backward(&x64, &x2_64, cols, &y64, -0.5, &g64, none);
            let grads = vec![(d1.to_vec().unwrap(), w1), (d2.to_vec().unwrap(), w2)];
            (out.to_vec().unwrap(), want, grads)
        }
        RowLoss::Triplet => {
            let (p, n) = (rng.values(rows * cols, 1.0), rng.values(rows * cols, 1.0));
            let (pt, nt) = (dev.tensor(&p, &[rows, cols]).unwrap(), dev.tensor(&n, &[rows, cols]).unwrap());
            // A margin past the distances' differences, so every row's hinge is open.
            let margin = 2.0 * (cols as f32).sqrt();
            let l = TripletMargin::default().margin(margin).swap(true).reduction(none);
            let out = l.forward(&xt, &pt, &nt).unwrap();
            let (da, dp, dn) = l.backward(&xt, &pt, &nt, &gt).unwrap();
            let o = er::Triplet { margin: margin as f64, p: 2.0, eps: 1e-6, swap: true };
            let (p64, n64) = (f64s(&p), f64s(&n));
            let want = er::triplet_margin(&x64, &p64, &n64, cols, o, none);
            let (wa, wp, wn) = er::triplet_margin_backward(&x64, &p64, &n64, cols, o, &g64, none);
            let grads =
                vec![(da.to_vec().unwrap(), wa), (dp.to_vec().unwrap(), wp), (dn.to_vec().unwrap(), wn)];
            (out.to_vec().unwrap(), want, grads)
        }
        RowLoss::MultilabelMargin(listed) => {
            // `listed` targets a row (one repeated), then −1 and ids after it, which count for
            // nothing.
            let mut t = vec![0i64; rows * cols];
            for r in 0..rows {
                let row = &mut t[r * cols..(r + 1) * cols];
                let ids = rng.classes(row.len(), cols);
                row.copy_from_slice(&ids);
                row[..5].copy_from_slice(&[ids[0], ids[1], (cols - 1) as i64, ids[0], 0]);
                row[listed] = -1;
            }
            let tt = dev.indices(&t, &[rows, cols]).unwrap();
            let l = MultilabelMargin::default().reduction(none);
            let (out, dx) = (l.forward(&xt, &tt).unwrap(), l.backward(&xt, &tt, &gt).unwrap());
            let want = cm::multilabel_margin(&x64, &t, cols, none).unwrap();
            let dwant = cm::multilabel_margin_backward(&x64, &t, cols, &g64, none).unwrap();
            (out.to_vec().unwrap(), want, vec![(dx.to_vec().unwrap(), dwant)])
        }
    };
    assert_close(&format!("{what}: loss"), &loss_got, &loss_want, tol(&loss_want));
    for (k, (got, want)) in grads.iter().enumerate() {
        assert_close(&format!("{what}: gradient {k}"), got, want, tol(want));
    }
}

/// The rows' trips of a kernel that loops `passes` times over ⌈cols / tpr⌉ values and merges
/// `trees` times over the row's threads (`RowLoops` with plain passes): the rule that decides
/// how many threads a row gets.
fn row_trips(cols: usize, tpr: usize, passes: usize, trees: usize) -> usize {
    passes * (cols.div_ceil(tpr) + 1) + trees * tpr.trailing_zeros() as usize + 4
}

/// The most values a row may hold with `tpr` threads within `budget`.
fn most_cols(budget: usize, tpr: usize, passes: usize, trees: usize) -> usize {
    let mut c = (budget / passes) * tpr;
    while row_trips(c, tpr, passes, trees) > budget {
        c -= 1;
    }
    c
}

/// The row losses across their splits on devices whose budget is narrowed to 1 024 trips, against
/// the f64 references: each row on one thread up to the budget and on two just past it (256 rows,
/// which the planner starts at one thread each), on 64, 128 and 256 threads at the edges between
/// them (two rows, which it starts at 64 threads), and one value past 256 threads a typed error
/// naming the kernel; multilabel_margin in one, two and three pieces of the row. On the real
/// budget these are the splits that rows of a million values take.
#[test]
fn narrowed_budget_row_losses() {
    use wgpu_loss::{MultiMargin, TripletMargin};
    let budget = wgpu_loss::MIN_LOOP_BUDGET as usize;
    common::on_each(narrow_budget_devices(), |dev| {
        let mut rng = Rng::new(23);
        // The class-margin kernel loops once and merges once; the embedding kernel's backward
        // loops three times and merges three times (its forward less: the backward decides).
        for (losses, passes, trees) in [
            (&[RowLoss::MultiMargin, RowLoss::MultilabelSoftMargin][..], 1, 1),
            (&[RowLoss::Cosine, RowLoss::Triplet][..], 3, 3),
        ] {
            let one = most_cols(budget, 1, passes, trees);
            let mut shapes = vec![(256, one), (256, one + 1)];
            for tpr in [64, 128] {
                let most = most_cols(budget, tpr, passes, trees);
                shapes.extend([(2, most), (2, most + 1)]);
            }
            shapes.push((2, most_cols(budget, 256, passes, trees)));
            for &loss in losses {
                for &(rows, cols) in &shapes {
                    check_row_loss(dev, loss, rows, cols, &mut rng);
                }
            }
            // One value past a row on 256 threads: an error naming the kernel, before anything runs.
            let past = most_cols(budget, 256, passes, trees) + 1;
            let x = dev.tensor(&vec![0.5; 2 * past], &[2, past]).unwrap();
            let err = if passes == 1 {
                let t = dev.indices(&[0i64, 1], &[2]).unwrap();
                MultiMargin::default().forward(&x, &t).unwrap_err()
            } else {
                let g = dev.tensor(&[1.0], &[]).unwrap();
                TripletMargin::default().backward(&x, &x, &x, &g).map(|_| ()).unwrap_err()
            };
            assert!(matches!(&err, Error::Limit { .. }), "{}: {err}", common::label(dev));
        }
        // multilabel_margin's pieces: the whole row fits one piece up to budget − 1 classes.
        for cols in [budget - 1, budget, 2 * (budget - 1) + 1] {
            check_row_loss(dev, RowLoss::MultilabelMargin(5), 3, cols, &mut rng);
        }
    });
}

/// On each adapter's own budget, the sizes the split exists for: a million classes for
/// multi_margin and multilabel_soft_margin, a million values for cosine_embedding and
/// triplet_margin, 100 000 classes for multilabel_margin, forward and backward against the f64
/// reference (on a GPU, whose budget is unlimited, they run without splitting).
#[test]
fn row_losses_at_a_million_values() {
    common::on_each(one_per_adapter(), |dev| {
        let mut rng = Rng::new(24);
        for loss in [RowLoss::MultiMargin, RowLoss::MultilabelSoftMargin, RowLoss::Cosine, RowLoss::Triplet] {
            check_row_loss(dev, loss, 2, 1_000_000, &mut rng);
        }
        check_row_loss(dev, RowLoss::MultilabelMargin(5), 2, 100_000, &mut rng);
    });
}

/// multilabel_margin's gradient over a piece of 60 000 classes with 5 600 targets listed: a
/// thread's loop over the piece (a listed class) and its loop over the targets (another) once
/// ran in two branches, and lanes that diverge run both, past Mesa's 65 535 iterations: the
/// counts came out silently short. The cost is C × targets (20 s an adapter), so the first
/// adapter only: the limit is gallivm's, the same in lavapipe and llvmpipe.
#[test]
fn multilabel_margin_with_thousands_of_targets() {
    use wgpu_loss::MultilabelMargin;
    use wgpu_loss::reference::class_margin as cm;
    let dev = one_per_adapter()[0];
    let mut rng = Rng::new(25);
    let (cols, listed) = (60_000, 5_600);
    let x = rng.values(cols, 1.0);
    let mut t = rng.classes(cols, cols);
    t[listed] = -1;
    let (xt, tt) = (dev.tensor(&x, &[1, cols]).unwrap(), dev.indices(&t, &[1, cols]).unwrap());
    let g = dev.tensor(&[1.0], &[1]).unwrap();
    let got = MultilabelMargin::default().reduction(Reduction::None).backward(&xt, &tt, &g).unwrap();
    let want = cm::multilabel_margin_backward(&f64s(&x), &t, cols, &[1.0], Reduction::None).unwrap();
    let largest = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = Tol { abs: 1e-6 * largest, rel: 1e-5 };
    assert_close(
        &format!("{} multilabel_margin C={cols} with {listed} targets", common::label(dev)),
        &got.to_vec().unwrap(),
        &want,
        tol,
    );
}
