//! 100 repetitions of cross-entropy over [1024, 32 000] logits, forward and backward, are
//! bitwise equal on each adapter: fixed-order reductions, no float atomics.

use crate::common;

use common::{Rng, one_per_adapter};
use wgpu_loss::CrossEntropy;

/// FNV-1a over the values' bits: equal sums for equal bit patterns.
fn fingerprint(values: &[f32]) -> u64 {
    values
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h ^ v.to_bits() as u64).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn cross_entropy_1024x32000_is_bitwise_reproducible() {
    let (n, c) = (1024, 32_000);
    let mut rng = Rng::new(93);
    let x = rng.values(n * c, 8.0);
    let t = rng.classes(n, c);
    // The adapters run side by side: each repetition is a large dispatch on one core.
    std::thread::scope(|scope| {
        for dev in one_per_adapter() {
            let (x, t) = (&x, &t);
            scope.spawn(move || repeat_on(dev, x, t, (n, c)));
        }
    });
}

/// Runs the loss and its gradient 100 times on `dev`, asserting every run equals the first.
fn repeat_on(dev: &wgpu_loss::Device, x: &[f32], t: &[i64], (n, c): (usize, usize)) {
    let what = common::label(dev);
    let (xt, tt) = (dev.tensor(x, &[n, c]).unwrap(), dev.indices(t, &[n]).unwrap());
    let one = dev.tensor(&[1.0], &[]).unwrap();
    let ce = CrossEntropy::default().label_smoothing(0.1);
    let run = || {
        let loss = ce.forward(&xt, &tt).unwrap().item().unwrap().to_bits();
        let grad = fingerprint(&ce.backward(&xt, &tt, &one).unwrap().to_vec().unwrap());
        (loss, grad)
    };
    let first = run();
    for i in 1..100 {
        assert_eq!(run(), first, "{what}: repetition {i} differs from the first");
    }
}
