//! Property tests: random shapes and options against the references on every adapter.

mod common;

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
            let ls = wgpu_loss::LogSoftmax { strategy: strat, dim: -1 }.forward(&logits).unwrap().to_vec().unwrap();
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
}
