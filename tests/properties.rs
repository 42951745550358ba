//! Property tests: random shapes and options against the references on every adapter.

use crate::common;

use common::{Rng, Tol, assert_close, devices};
use proptest::prelude::*;
use wgpu_loss::reference::pointwise::Pointwise;
use wgpu_loss::{BceWithLogits, CrossEntropy, Reduction, RowStrategy, reference};

fn reduction() -> impl Strategy<Value = Reduction> {
    prop_oneof![Just(Reduction::None), Just(Reduction::Mean), Just(Reduction::Sum)]
}

fn strategy() -> impl Strategy<Value = RowStrategy> {
    prop_oneof![
        Just(RowStrategy::Auto),
        Just(RowStrategy::ThreadPerRow),
        (1u32..8).prop_map(|p| RowStrategy::Segment(1 << p)),
        Just(RowStrategy::WorkgroupPerRow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn cross_entropy_and_log_softmax(
        n in 1usize..24, c in 1usize..300, seed in any::<u64>(), scale in 0.1f32..50.0,
        red in reduction(), strat in strategy(), weighted in any::<bool>(), ignore in -101i64..3,
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.values(n * c, scale);
        let t: Vec<i64> = (0..n).map(|_| if rng.below(4) == 0 { ignore } else { rng.below(c) as i64 }).collect();
        // Only ids in range or equal to ignore_index: the out-of-range path has its own test.
        let t: Vec<i64> = t.into_iter().map(|v| if v == ignore || (0..c as i64).contains(&v) { v } else { 0 }).collect();
        let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32).collect();
        for dev in devices() {
            let mut ce = CrossEntropy::default().reduction(red).strategy(strat).ignore_index(ignore);
            if weighted {
                ce = ce.weight(dev.tensor(&w, &[c]).unwrap());
            }
            let logits = dev.tensor(&x, &[n, c]).unwrap();
            let got = ce.forward(&logits, &dev.indices(&t, &[n]).unwrap()).unwrap().to_vec().unwrap();
            let want = reference::cross_entropy::cross_entropy(&x, c, &t, weighted.then_some(w.as_slice()), ignore, red).unwrap();
            assert_close(&format!("{} ce", common::label(dev)), &got, &want, Tol::scaled(scale as f64).sum(n * c));
            let ls = wgpu_loss::LogSoftmax { strategy: strat, dim: -1, ..Default::default() }.forward(&logits).unwrap().to_vec().unwrap();
            assert_close(&format!("{} log_softmax", common::label(dev)), &ls, &reference::log_softmax::log_softmax(&x, c), Tol::scaled(scale as f64).sum(c));
        }
    }

    #[test]
    fn bce_and_mse(
        n in 1usize..5000, cols in 1usize..40, seed in any::<u64>(), scale in 0.1f32..100.0,
        red in reduction(), pos in any::<bool>(), weighted in any::<bool>(),
    ) {
        let n = n.div_ceil(cols) * cols;
        let mut rng = Rng::new(seed);
        let x = rng.values(n, scale);
        let y: Vec<f32> = rng.values(n, 0.5).iter().map(|v| v + 0.5).collect();
        let pw: Vec<f32> = (0..cols).map(|i| 0.5 + i as f32 / 8.0).collect();
        let w: Vec<f32> = (0..cols).map(|i| 2.0 - i as f32 / 40.0).collect();
        let shape = [n / cols, cols];
        for dev in devices() {
            let (xt, yt) = (dev.tensor(&x, &shape).unwrap(), dev.tensor(&y, &shape).unwrap());
            let mut bce = BceWithLogits::default().reduction(red);
            if pos {
                bce = bce.pos_weight(dev.tensor(&pw, &[cols]).unwrap());
            }
            if weighted {
                bce = bce.weight(dev.tensor(&w, &[cols]).unwrap());
            }
            let got = bce.forward(&xt, &yt).unwrap().to_vec().unwrap();
            let want = reference::pointwise::forward(Pointwise::BceWithLogits, &x, &y, cols, weighted.then_some(w.as_slice()), pos.then_some(pw.as_slice()), red, n as f64);
            assert_close(&format!("{} bce", common::label(dev)), &got, &want, Tol::scaled(scale as f64).sum(n));
            let got = wgpu_loss::mse(&xt, &yt, red).unwrap().to_vec().unwrap();
            assert_close(&format!("{} mse", common::label(dev)), &got, &reference::pointwise::forward(Pointwise::Mse, &x, &y, cols, None, None, red, n as f64), Tol::ELEMENT.sum(n));
        }
    }

    #[test]
    fn class_losses_k_dim_smoothing_and_gradients(
        n in 1usize..6, c in 1usize..40, inner in 1usize..6, seed in any::<u64>(), red in reduction(),
        strat in strategy(), weighted in any::<bool>(), eps in prop_oneof![Just(0.0f32), 0.0f32..1.0],
    ) {
        let mut rng = Rng::new(seed);
        let shape = [n, c, inner];
        let x = rng.values(n * c * inner, 4.0);
        let t: Vec<i64> = (0..n * inner).map(|_| if rng.below(5) == 0 { -100 } else { rng.below(c) as i64 }).collect();
        let y: Vec<f32> = (0..n * c * inner).map(|_| (rng.unit() + 1.0) * 0.5).collect();
        let w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 3) as f32).collect();
        let weight = weighted.then_some(w.as_slice());
        let g: Vec<f32> = if red == Reduction::None { rng.values(n * inner, 1.0) } else { vec![1.0] };
        let g_shape: &[usize] = if red == Reduction::None { &[n, inner] } else { &[] };
        for dev in devices() {
            let mut ce = CrossEntropy::default().reduction(red).strategy(strat).label_smoothing(eps);
            if weighted {
                ce = ce.weight(dev.tensor(&w, &[c]).unwrap());
            }
            let (xt, gt) = (dev.tensor(&x, &shape).unwrap(), dev.tensor(&g, g_shape).unwrap());
            let tt = dev.indices(&t, &[n, inner]).unwrap();
            let what = format!("{} {shape:?} {red:?} {strat:?} eps={eps} weighted={weighted}", common::label(dev));
            let got = ce.forward(&xt, &tt).unwrap().to_vec().unwrap();
            let want = reference::cross_entropy::cross_entropy_nd(&x, &shape, &t, weight, -100, eps as f64, red).unwrap();
            assert_close(&format!("{what} ids"), &got, &want, Tol::scaled(4.0).sum(x.len()));
            let dx = ce.backward(&xt, &tt, &gt).unwrap().to_vec().unwrap();
            let want = reference::cross_entropy::cross_entropy_backward(&x, &shape, &t, weight, -100, eps as f64, red, &g).unwrap();
            assert_close(&format!("{what} ids backward"), &dx, &want, Tol::ELEMENT.sum(c));
            let yt = dev.tensor(&y, &shape).unwrap();
            let got = ce.forward_probs(&xt, &yt).unwrap().to_vec().unwrap();
            let want = reference::cross_entropy::cross_entropy_probs(&x, &shape, &y, weight, eps as f64, red);
            assert_close(&format!("{what} probs"), &got, &want, Tol::scaled(4.0 * c as f64).sum(x.len()));
            let (dx, dy) = ce.backward_probs(&xt, &yt, &gt).unwrap();
            let (wx, wy) = reference::cross_entropy::cross_entropy_probs_backward(&x, &shape, &y, weight, eps as f64, red, &g);
            let tol = Tol { abs: 1e-6 * (c as f64).sqrt() * 3.0, rel: 1e-5 };
            assert_close(&format!("{what} probs dx"), &dx.to_vec().unwrap(), &wx, tol);
            assert_close(&format!("{what} probs dy"), &dy.to_vec().unwrap(), &wy, Tol::scaled(12.0));
        }
    }

    #[test]
    fn pointwise_gradients(
        n in 1usize..3000, seed in any::<u64>(), red in reduction(), which in 0usize..7, param in 0.1f64..3.0,
    ) {
        let loss = [
            Pointwise::Mse, Pointwise::L1, Pointwise::SmoothL1(param), Pointwise::Huber(param),
            Pointwise::Bce, Pointwise::KlDiv(false), Pointwise::KlDiv(true),
        ][which];
        let mut rng = Rng::new(seed);
        let (x, y): (Vec<f32>, Vec<f32>) = match loss {
            Pointwise::Bce => ((0..n).map(|_| (rng.unit() + 1.0) * 0.5).collect(), (0..n).map(|_| (rng.unit() + 1.0) * 0.5).collect()),
            Pointwise::KlDiv(false) => (rng.values(n, 2.0), (0..n).map(|_| (rng.unit() + 1.0) * 0.5 + 0.01).collect()),
            _ => (rng.values(n, 3.0), rng.values(n, 3.0)),
        };
        // Keep |x − y| away from the kink at param, where f32 and f64 may take different sides.
        let y: Vec<f32> = x.iter().zip(y).map(|(&a, b)| if ((a - b).abs() as f64 - param).abs() < 1e-3 { b + 0.01 } else { b }).collect();
        let g: Vec<f32> = if red == Reduction::None { rng.values(n, 1.0) } else { vec![0.5] };
        let g_shape: &[usize] = if red == Reduction::None { &[n] } else { &[] };
        for dev in devices() {
            let (xt, yt, gt) = (dev.tensor(&x, &[n]).unwrap(), dev.tensor(&y, &[n]).unwrap(), dev.tensor(&g, g_shape).unwrap());
            let (dx, dy) = match loss {
                Pointwise::Mse => { let (a, b) = wgpu_loss::Mse::default().reduction(red).backward_with_target(&xt, &yt, &gt).unwrap(); (a, Some(b)) }
                Pointwise::L1 => { let (a, b) = wgpu_loss::L1::default().reduction(red).backward_with_target(&xt, &yt, &gt).unwrap(); (a, Some(b)) }
                Pointwise::SmoothL1(b) => { let (a, b) = wgpu_loss::SmoothL1::default().beta(b as f32).reduction(red).backward_with_target(&xt, &yt, &gt).unwrap(); (a, Some(b)) }
                Pointwise::Huber(d) => { let (a, b) = wgpu_loss::Huber::default().delta(d as f32).reduction(red).backward_with_target(&xt, &yt, &gt).unwrap(); (a, Some(b)) }
                Pointwise::Bce => (wgpu_loss::Bce::default().reduction(red).backward(&xt, &yt, &gt).unwrap(), None),
                Pointwise::KlDiv(lt) => {
                    let r = match red { Reduction::None => wgpu_loss::KlReduction::None, Reduction::Mean => wgpu_loss::KlReduction::Mean, Reduction::Sum => wgpu_loss::KlReduction::Sum };
                    let (a, b) = wgpu_loss::KlDiv { log_target: lt, reduction: r, ..Default::default() }.backward_with_target(&xt, &yt, &gt).unwrap();
                    (a, Some(b))
                }
                _ => unreachable!(),
            };
            // Parameters round to f32 on the GPU; the reference sees the same value.
            let loss = match loss {
                Pointwise::SmoothL1(b) => Pointwise::SmoothL1(b as f32 as f64),
                Pointwise::Huber(d) => Pointwise::Huber(d as f32 as f64),
                l => l,
            };
            let (wx, wy) = reference::pointwise::backward(loss, &x, &y, n, None, None, &g, red, n as f64);
            let what = format!("{} {loss:?} {red:?} n={n}", common::label(dev));
            assert_close(&format!("{what} dx"), &dx.to_vec().unwrap(), &wx, Tol::ELEMENT);
            if let Some(dy) = dy {
                assert_close(&format!("{what} dy"), &dy.to_vec().unwrap(), &wy, Tol::ELEMENT);
            }
        }
    }
}
