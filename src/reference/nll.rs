//! f64 twin of `nll` (negative log-likelihood from log-probabilities).

use super::{Reduction, reduce_with};
use crate::error::{Error, Result};

/// `Ok(None)` for an ignored target, `Ok(Some(class))` for a valid one, an error otherwise.
pub(crate) fn check_target(
    op: &'static str,
    position: usize,
    t: i64,
    classes: usize,
    ignore_index: i64,
) -> Result<Option<usize>> {
    if t == ignore_index {
        return Ok(None);
    }
    if t < 0 || t as u64 >= classes as u64 {
        return Err(Error::TargetOutOfRange { op, position, value: t, classes, ignore_index });
    }
    Ok(Some(t as usize))
}

/// NLL of `(rows, cols)` log-probabilities: per row `−w[t] · logp[t]`, same rules as
/// [`cross_entropy`](super::cross_entropy::cross_entropy).
pub fn nll(
    logp: &[f32],
    cols: usize,
    targets: &[i64],
    weight: Option<&[f32]>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    let mut losses = Vec::with_capacity(targets.len());
    let mut denominator = 0.0;
    for (i, &t) in targets.iter().enumerate() {
        let Some(c) = check_target("nll", i, t, cols, ignore_index)? else {
            losses.push(0.0);
            continue;
        };
        let w = weight.map_or(1.0, |w| w[c] as f64);
        losses.push(-w * logp[i * cols + c] as f64);
        denominator += w;
    }
    Ok(reduce_with(losses, reduction, denominator))
}
