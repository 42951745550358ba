//! f64 twins of `cross_entropy` (class ids or probabilities, label smoothing, K-dim) and of
//! its gradients.

use super::nll::{check_target, counted_weight};
use super::{Real, Reduction, class_dim, f64s, logsumexp, reduce_with, rows_along, upstream};
use crate::error::Result;

/// Cross-entropy of logits of `shape` ((N, C, d…) or (C)) against class ids (one per row):
/// per row `(1 − ε)·w[t]·(lse − x[t]) + ε/C·Σ_c w[c]·(lse − x[c])`, ignored rows 0; the mean
/// divides by `Σ w[t]` over counted rows.
pub fn cross_entropy_nd<T: Real>(
    logits: &[T],
    shape: &[usize],
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    let x = f64s(logits);
    let dim = class_dim(shape);
    let cols = shape[dim];
    let w = |c: usize| weight.map_or(1.0, |w| w[c].into());
    let mut losses = Vec::with_capacity(targets.len());
    let mut denominator = 0.0;
    for (r, row) in rows_along(shape, dim).iter().enumerate() {
        let Some(t) = check_target("cross_entropy", r, targets[r], cols, ignore_index)? else {
            losses.push(0.0);
            continue;
        };
        let vals: Vec<f64> = row.iter().map(|&i| x[i]).collect();
        let lse = logsumexp(&vals);
        let smooth: f64 = (0..cols).map(|c| w(c) * (lse - vals[c])).sum();
        let eps = label_smoothing;
        losses.push((1.0 - eps) * w(t) * (lse - vals[t]) + eps / cols as f64 * smooth);
        denominator += w(t);
    }
    Ok(reduce_with(losses, reduction, denominator))
}

/// Cross-entropy of `(rows, cols)` logits against class ids, without smoothing.
pub fn cross_entropy<T: Real>(
    logits: &[T],
    cols: usize,
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    cross_entropy_nd(logits, &[targets.len(), cols], targets, weight, ignore_index, 0.0, reduction)
}

/// The gradient of [`cross_entropy_nd`] in the logits for upstream gradient `grad` (one value
/// per row for `None`).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward<T: Real>(
    logits: &[T],
    shape: &[usize],
    targets: &[i64],
    weight: Option<&[T]>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
    grad: &[T],
) -> Result<Vec<f64>> {
    let x = f64s(logits);
    let dim = class_dim(shape);
    let cols = shape[dim];
    let w = |c: usize| weight.map_or(1.0, |w| w[c].into());
    let total_w: f64 = (0..cols).map(w).sum();
    let denominator = counted_weight("cross_entropy", targets, cols, weight, ignore_index)?;
    let eps = label_smoothing;
    let mut out = vec![0.0; x.len()];
    for (r, row) in rows_along(shape, dim).iter().enumerate() {
        let vals: Vec<f64> = row.iter().map(|&i| x[i]).collect();
        let lse = logsumexp(&vals);
        let Some(t) = check_target("cross_entropy", r, targets[r], cols, ignore_index)? else {
            // PyTorch: zeros, or NaN where the row holds a NaN (its softmax is NaN).
            for &i in row {
                out[i] = if lse.is_nan() { f64::NAN } else { 0.0 };
            }
            continue;
        };
        let s = upstream(grad, r, reduction, denominator);
        for (c, &i) in row.iter().enumerate() {
            let p = (vals[c] - lse).exp();
            let hit = (c == t) as u8 as f64;
            out[i] = s * ((1.0 - eps) * w(t) * (p - hit) + eps / cols as f64 * (total_w * p - w(c)));
        }
    }
    Ok(out)
}

/// Cross-entropy against probability targets of the logits' shape: per row
/// `Σ_c w[c]·y'[c]·(lse − x[c])`, `y' = (1 − ε)·y + ε/C`; the mean divides by the row count.
pub fn cross_entropy_probs<T: Real>(
    logits: &[T],
    shape: &[usize],
    targets: &[T],
    weight: Option<&[T]>,
    label_smoothing: f64,
    reduction: Reduction,
) -> Vec<f64> {
    let (x, y) = (f64s(logits), f64s(targets));
    let dim = class_dim(shape);
    let cols = shape[dim] as f64;
    let w = |c: usize| weight.map_or(1.0, |w| w[c].into());
    let losses: Vec<f64> = rows_along(shape, dim)
        .iter()
        .map(|row| {
            let vals: Vec<f64> = row.iter().map(|&i| x[i]).collect();
            let lse = logsumexp(&vals);
            row.iter()
                .enumerate()
                .map(|(c, &i)| {
                    w(c) * (y[i] * (1.0 - label_smoothing) + label_smoothing / cols) * (lse - x[i])
                })
                .sum()
        })
        .collect();
    let n = losses.len() as f64;
    reduce_with(losses, reduction, n)
}

/// The gradients of [`cross_entropy_probs`] in the logits and in the targets.
pub fn cross_entropy_probs_backward<T: Real>(
    logits: &[T],
    shape: &[usize],
    targets: &[T],
    weight: Option<&[T]>,
    label_smoothing: f64,
    reduction: Reduction,
    grad: &[T],
) -> (Vec<f64>, Vec<f64>) {
    let (x, y) = (f64s(logits), f64s(targets));
    let dim = class_dim(shape);
    let cols = shape[dim] as f64;
    let eps = label_smoothing;
    let w = |c: usize| weight.map_or(1.0, |w| w[c].into());
    let rows = rows_along(shape, dim);
    let n = rows.len() as f64;
    let (mut dx, mut dy) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    for (r, row) in rows.iter().enumerate() {
        let s = upstream(grad, r, reduction, n);
        let vals: Vec<f64> = row.iter().map(|&i| x[i]).collect();
        let lse = logsumexp(&vals);
        let ys = |i: usize| y[i] * (1.0 - eps) + eps / cols;
        let k: f64 = row.iter().enumerate().map(|(c, &i)| w(c) * ys(i)).sum();
        for (c, &i) in row.iter().enumerate() {
            dx[i] = s * ((x[i] - lse).exp() * k - w(c) * ys(i));
            dy[i] = -s * (1.0 - eps) * w(c) * (x[i] - lse);
        }
    }
    (dx, dy)
}

/// Top-k accuracy of logits of `shape` ((N, C, d…) or (C)) against class ids: the fraction of
/// counted rows (target ≠ `ignore_index`) where fewer than `top_k` logits exceed the target's;
/// NaN when no row counts.
pub fn accuracy<T: Real>(
    logits: &[T],
    shape: &[usize],
    targets: &[i64],
    top_k: usize,
    ignore_index: i64,
) -> Result<f64> {
    let x = f64s(logits);
    let dim = class_dim(shape);
    let (mut right, mut counted) = (0.0, 0.0);
    for (r, row) in rows_along(shape, dim).iter().enumerate() {
        let Some(t) = check_target("accuracy", r, targets[r], shape[dim], ignore_index)? else {
            continue;
        };
        let xt = x[row[t]];
        let above = row.iter().filter(|&&i| x[i] > xt).count();
        counted += 1.0;
        right += (above < top_k) as u8 as f64;
    }
    Ok(if counted == 0.0 { f64::NAN } else { right / counted })
}
