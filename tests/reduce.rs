//! The GPU `sum` and `mean` on every adapter: against the f64 reference across the stage sizes
//! (one workgroup, one finishing stage, two), bitwise reproducible, NaN carried, chunked equal
//! to unchunked, and PyTorch's values at the edges.

use crate::common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::reference::reduce as reference;

/// Sizes around the partition: below one 4096-element chunk, one chunk, a partial chunk, many
/// chunks with one finishing stage, and past 262 144 elements (two finishing stages).
const SIZES: [usize; 7] = [1, 7, 4096, 4097, 100_000, 262_145, 1_000_003];

#[test]
fn sum_and_mean_match_the_reference_at_every_stage_count() {
    let mut rng = Rng::new(60);
    for n in SIZES {
        let x = rng.values(n, 2.0);
        let (want_sum, want_mean) = (reference::sum(&x), reference::mean(&x));
        for dev in devices() {
            let xt = dev.tensor(&x, &[n]).unwrap();
            let what = format!("{} n = {n}", common::label(dev));
            let sum = wgpu_loss::sum(&xt).unwrap();
            assert!(sum.shape().is_empty(), "{what}: a 0-d result");
            let tol = Tol { abs: 1e-5 * (n as f64).sqrt(), rel: 1e-6 }.sum(n);
            assert_close(&format!("{what} sum"), &[sum.item().unwrap()], &[want_sum], tol);
            assert_close(
                &format!("{what} mean"),
                &[wgpu_loss::mean(&xt).unwrap().item().unwrap()],
                &[want_mean],
                tol,
            );
        }
    }
}

#[test]
fn results_are_bitwise_reproducible_and_chunking_does_not_change_them() {
    let x = Rng::new(61).values(300_001, 3.0);
    for (dev, small) in devices().iter().zip(small_binding_devices().iter().cycle()) {
        let (xt, xs) = (dev.tensor(&x, &[x.len()]).unwrap(), small.tensor(&x, &[x.len()]).unwrap());
        let first = wgpu_loss::sum(&xt).unwrap().item().unwrap().to_bits();
        for _ in 0..3 {
            assert_eq!(
                wgpu_loss::sum(&xt).unwrap().item().unwrap().to_bits(),
                first,
                "{}",
                common::label(dev)
            );
        }
        // 64 KiB bindings split the input into chunks of whole 4096-element partitions.
        let chunked = wgpu_loss::sum(&xs).unwrap().item().unwrap().to_bits();
        if dev.name() == small.name() {
            assert_eq!(chunked, first, "{}: chunked vs unchunked", common::label(dev));
        }
    }
}

#[test]
fn nan_and_infinities_follow_pytorch() {
    // torch.tensor([1., float('nan'), 2.]).sum() = nan; torch.tensor([1., float('inf')]).mean() = inf;
    // torch.tensor([float('inf'), -float('inf')]).sum() = nan
    for dev in devices() {
        let what = common::label(dev);
        let nan = dev.tensor(&[1.0, f32::NAN, 2.0], &[3]).unwrap();
        assert!(wgpu_loss::sum(&nan).unwrap().item().unwrap().is_nan(), "{what}");
        assert!(wgpu_loss::mean(&nan).unwrap().item().unwrap().is_nan(), "{what}");
        let inf = dev.tensor(&[1.0, f32::INFINITY], &[2]).unwrap();
        assert_eq!(wgpu_loss::mean(&inf).unwrap().item().unwrap(), f32::INFINITY, "{what}");
        let both = dev.tensor(&[f32::INFINITY, f32::NEG_INFINITY], &[2]).unwrap();
        assert!(wgpu_loss::sum(&both).unwrap().item().unwrap().is_nan(), "{what}");
    }
}
