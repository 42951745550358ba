//! Planning within the loop budget ([`Device::loop_budget`]).
//!
//! Mesa's software adapters end a shader invocation after 65 535 loop iterations, summed over
//! all of its loops, and report nothing: the invocation's results are simply short. So every
//! kernel's host side knows, for the shape it dispatches, the most loop iterations ("trips") one
//! invocation runs, and splits its work (more threads per row, more reduction stages, pieces of
//! a GEMM's k) until that fits the budget, or returns [`Error::Limit`] naming the shape.
//! `gpu::dispatch::dispatch` refuses any dispatch whose stated trips exceed the budget, so a
//! planning mistake is an error, never a wrong number.
//!
//! Trip counts are upper bounds: every loop counts, including those over compile-time
//! constants, whose back-edges the compiler may or may not remove.

use crate::error::Error;
use crate::gpu::device::Device;

/// Whether `trips` loop iterations fit one invocation on `dev`.
pub(crate) fn fits(dev: &Device, trips: u64) -> bool {
    trips <= dev.loop_budget()
}

/// The largest multiple of `step`, at most `cap` (rounded up to a multiple of `step`), whose
/// `trips` fit the budget; `None` when not even `step` does. `trips` must not decrease as its
/// argument grows. Unlimited budgets give `cap`.
pub(crate) fn largest_fitting(dev: &Device, step: u64, cap: u64, trips: impl Fn(u64) -> u64) -> Option<u64> {
    largest_within(dev.loop_budget(), step, cap, trips)
}

fn largest_within(budget: u64, step: u64, cap: u64, trips: impl Fn(u64) -> u64) -> Option<u64> {
    let step = step.max(1);
    let top = cap.max(1).div_ceil(step);
    if trips(step) > budget {
        return None;
    }
    if trips(top.saturating_mul(step)) <= budget {
        return Some(top.saturating_mul(step));
    }
    // The largest multiple m in [1, top) with trips(m·step) within the budget.
    let (mut lo, mut hi) = (1u64, top);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if trips(mid * step) <= budget { lo = mid } else { hi = mid }
    }
    Some(lo * step)
}

/// The error for `op` at `shape` needing `trips` loop iterations in one invocation.
pub(crate) fn exceeded(dev: &Device, op: &str, shape: &[usize], trips: u64) -> Error {
    Error::limit(
        format!("{op} on shape {shape:?}: loop iterations of one shader invocation"),
        trips,
        dev.loop_budget(),
    )
}

#[cfg(test)]
mod tests {
    use super::largest_within;
    use crate::kernels::log2_ceil;

    #[test]
    fn largest_fitting_pieces() {
        // linear_blocked (k + 1 trips) in pieces of 64 within 60 000: 59 968.
        assert_eq!(largest_within(60_000, 64, 100_000, |k| k + 1), Some(59_968));
        // The tiled GEMM: ⌈k/16⌉·21 + 20 trips.
        assert_eq!(largest_within(60_000, 64, 100_000, |k| k.div_ceil(16) * 21 + 20), Some(45_696));
        // Everything fits: the cap, rounded up to the step.
        assert_eq!(largest_within(u64::MAX, 64, 1_000, |k| k), Some(1_024));
        // Not even one step fits.
        assert_eq!(largest_within(100, 64, 1_000, |k| k * 2), None);
        // The smallest budget a device may have fits a piece of one block (64 f32s, 128 halves)
        // of every GEMM.
        let min = crate::gpu::device::MIN_LOOP_BUDGET;
        assert!(largest_within(min, 128, u32::MAX as u64, crate::kernels::linear::grad_trips).is_some());
    }

    #[test]
    fn log2_ceil_counts_tree_levels() {
        assert_eq!([1, 2, 3, 4, 64, 65, 256].map(log2_ceil), [0, 1, 2, 2, 6, 7, 8]);
    }
}
