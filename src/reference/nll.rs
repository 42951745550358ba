//! f64 twin of `nll` (negative log-likelihood from log-probabilities) and its gradient.

use super::{Real, Reduction, class_dim, f64s, reduce_with, rows_along, upstream};
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

/// Σ w[t] over the targets that count (not `ignore_index`): the weighted mean's denominator.
pub(crate) fn counted_weight<T: Real>(
    op: &'static str,
    targets: &[i64],
    classes: usize,
    weight: Option<&[T]>,
    ignore_index: i64,
) -> Result<f64> {
    let mut sum = 0.0;
    for (r, &t) in targets.iter().enumerate() {
        if let Some(c) = check_target(op, r, t, classes, ignore_index)? {
            sum += weight.map_or(1.0, |w| w[c].into());
        }
    }
    Ok(sum)
}

/// NLL of log-probabilities of `shape` ((N, C, d…) or (C)): per row `−w[t] · logp[t]`, same
/// rules as [`cross_entropy`](super::cross_entropy::cross_entropy_nd).
pub fn nll_nd<T: Real>(
    logp: &[T],
    shape: &[usize],
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    let logp = f64s(logp);
    let dim = class_dim(shape);
    let mut losses = Vec::with_capacity(targets.len());
    let mut denominator = 0.0;
    for (r, row) in rows_along(shape, dim).iter().enumerate() {
        let Some(c) = check_target("nll", r, targets[r], shape[dim], ignore_index)? else {
            losses.push(0.0);
            continue;
        };
        let w = weight.map_or(1.0, |w| w[c].into());
        losses.push(-w * logp[row[c]]);
        denominator += w;
    }
    Ok(reduce_with(losses, reduction, denominator))
}

/// NLL over `(rows, cols)` log-probabilities.
pub fn nll<T: Real>(
    logp: &[T],
    cols: usize,
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    nll_nd(logp, &[targets.len(), cols], targets, weight, ignore_index, reduction)
}

/// The gradient of [`nll_nd`] for upstream gradient `grad` (one value per row for `None`).
pub fn nll_backward<T: Real>(
    logp: &[T],
    shape: &[usize],
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    reduction: Reduction,
    grad: &[T],
) -> Result<Vec<f64>> {
    let dim = class_dim(shape);
    let rows = rows_along(shape, dim);
    let denominator = counted_weight("nll", targets, shape[dim], weight, ignore_index)?;
    let mut out = vec![0.0; logp.len()];
    for (r, row) in rows.iter().enumerate() {
        let Some(c) = check_target("nll", r, targets[r], shape[dim], ignore_index)? else { continue };
        let s = upstream(grad, r, reduction, denominator);
        out[row[c]] = -weight.map_or(1.0, |w| w[c].into()) * s;
    }
    Ok(out)
}
