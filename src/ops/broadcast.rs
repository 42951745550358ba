//! An operand broadcast to a tensor's shape by numpy's (and PyTorch's) rules, indexed in a
//! kernel without materialising it.
//!
//! The operand's dims are aligned with the tensor's from the right; each is 1 (broadcast) or
//! the tensor's size, and the operand may not have more dims than the tensor (PyTorch refuses
//! that too: the result would outgrow the input). Dims of size 1 in the tensor are dropped and
//! neighbouring dims along which the operand varies are merged into one *run*, so element `i`
//! of the tensor reads the operand at `Σ over runs of (i / inner) % size · stride`. A `[5, 1, 1]`
//! weight of a `[2, 5, 3, 4]` input is one run (inner 12, size 5, stride 1); a `[C]` weight is
//! one run (inner 1, size C, stride 1); a `[1]` weight is none (index 0).

use crate::error::{Error, Result};
/// The most runs a kernel follows (4): every operand of a tensor of up to 8 dims, and any
/// operand whose varying dims form at most four separate groups.
use crate::kernels::pointwise::MAX_RUNS;

/// The runs of an operand, each `[inner, size, stride, 0]` (a `vec4<u32>` in a uniform), the
/// unused ones `[1, 1, 0, 0]`, which add nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Runs {
    pub(crate) runs: [[u32; 4]; MAX_RUNS],
    pub(crate) count: u32,
}

impl Runs {
    /// No operand: every run unused.
    pub(crate) const NONE: Runs = Runs { runs: [[1, 1, 0, 0]; MAX_RUNS], count: 0 };

    /// The runs of an operand of shape `operand` broadcast to `shape`, or an [`Error::Shape`]
    /// naming `what` when numpy's rules refuse it.
    pub(crate) fn of(op: &'static str, what: &str, operand: &[usize], shape: &[usize]) -> Result<Runs> {
        let refuse = |why: &str| {
            Error::shape(op, format!("{what} {operand:?} does not broadcast to the input {shape:?}: {why}"))
        };
        if operand.len() > shape.len() {
            return Err(refuse("it has more dims than the input"));
        }
        let lead = shape.len() - operand.len();
        let mut runs = Runs::NONE;
        let mut count = 0;
        // From the last dim: `inner` elements of the tensor and `stride` of the operand per step.
        let (mut inner, mut stride) = (1u64, 1u64);
        let mut open = false;
        for d in (0..shape.len()).rev() {
            let size = shape[d];
            let own = if d < lead { 1 } else { operand[d - lead] };
            if own != 1 && own != size {
                return Err(refuse(&format!("dim {d} is {own}, not 1 or {size}")));
            }
            if size == 1 {
                continue;
            }
            if own == 1 {
                open = false;
            } else {
                if !open {
                    if count == MAX_RUNS {
                        return Err(refuse(&format!(
                            "it varies along more than {MAX_RUNS} separate groups of dims"
                        )));
                    }
                    runs.runs[count] = [fit(op, inner)?, 1, fit(op, stride)?, 0];
                    count += 1;
                    open = true;
                }
                let run = &mut runs.runs[count - 1];
                run[1] = fit(op, run[1] as u64 * size as u64)?;
                stride *= size as u64;
            }
            inner *= size as u64;
        }
        runs.count = count as u32;
        Ok(runs)
    }

    /// The operand's index of the tensor's element `i` (what a kernel computes from the runs).
    pub(crate) fn locate(&self, i: usize) -> usize {
        self.runs.iter().map(|r| (i / r[0] as usize) % r[1] as usize * r[2] as usize).sum()
    }
}

fn fit(op: &'static str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("a broadcast extent of {v} elements exceeds u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_index_as_coordinates_do() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[5, 1, 1], &[2, 5, 3, 4]),
            (&[1], &[2, 5, 3, 4]),
            (&[], &[2, 3]),
            (&[4], &[2, 5, 3, 4]),
            (&[2, 1, 3, 1], &[2, 5, 3, 4]),
            (&[2, 5, 3, 4], &[2, 5, 3, 4]),
            (&[1, 5, 1, 4], &[2, 5, 3, 4]),
            (&[3, 1, 1], &[3, 1, 2]),
            (&[2, 1, 2, 1, 2, 1, 2], &[2, 3, 2, 3, 2, 3, 2]),
        ];
        for &(operand, shape) in cases {
            let runs = Runs::of("test", "weight", operand, shape).unwrap();
            // The definition: walk the coordinates as an odometer, last dim fastest, and read
            // the operand at its own coordinates (0 along its broadcast dims).
            let lead = shape.len() - operand.len();
            let mut at = vec![0usize; shape.len()];
            for i in 0..shape.iter().product::<usize>() {
                let want = (lead..shape.len()).fold(0, |acc, d| {
                    acc * operand[d - lead] + if operand[d - lead] == 1 { 0 } else { at[d] }
                });
                assert_eq!(runs.locate(i), want, "{operand:?} → {shape:?} at {i}");
                if let Some(d) = (0..shape.len()).rev().find(|&d| at[d] + 1 < shape[d]) {
                    at[d] += 1;
                    at[d + 1..].fill(0);
                }
            }
        }
        assert_eq!(Runs::of("t", "w", &[5, 1, 1], &[2, 5, 3, 4]).unwrap().count, 1);
    }

    #[test]
    fn numpy_refusals() {
        for (operand, shape) in [(&[4][..], &[2, 3][..]), (&[1, 2, 3], &[2, 3]), (&[2, 2], &[2, 3])] {
            let e = Runs::of("bce", "weight", operand, shape).unwrap_err();
            assert!(matches!(e, Error::Shape { .. }), "{e}");
        }
        let five = Runs::of("bce", "weight", &[2, 1, 2, 1, 2, 1, 2, 1, 2], &[2, 3, 2, 3, 2, 3, 2, 3, 2]);
        assert!(five.unwrap_err().to_string().contains("more than 4 separate groups"));
    }
}
