//! f64 twins of `multi_margin` and `multilabel_soft_margin` over rows of `cols` classes.

use super::{Real, Reduction, reduce_with, upstream};

/// `Σ_{i ≠ t} w[t]·max(0, margin − x[t] + x[i])^p / C` for each row; a target outside
/// `[0, C)` is an error naming its row.
pub fn multi_margin<T: Real>(
    x: &[T],
    cols: usize,
    targets: &[i64],
    p: u32,
    margin: f64,
    weight: Option<&[T]>,
    reduction: Reduction,
) -> Result<Vec<f64>, usize> {
    let rows = targets.len();
    let mut losses = Vec::with_capacity(rows);
    for (r, &t) in targets.iter().enumerate() {
        let t = usize::try_from(t).ok().filter(|&t| t < cols).ok_or(r)?;
        let row: Vec<f64> = x[r * cols..(r + 1) * cols].iter().map(|&v| v.into()).collect();
        let w = weight.map_or(1.0, |w| w[t].into());
        let sum: f64 =
            (0..cols).filter(|&i| i != t).map(|i| (margin - row[t] + row[i]).max(0.0).powi(p as i32)).sum();
        losses.push(w * sum / cols as f64);
    }
    Ok(reduce_with(losses, reduction, rows as f64))
}

/// The gradient of [`multi_margin`] in `x` for the upstream gradient `grad` (0 on the hinge).
#[allow(clippy::too_many_arguments)]
pub fn multi_margin_backward<T: Real>(
    x: &[T],
    cols: usize,
    targets: &[i64],
    p: u32,
    margin: f64,
    weight: Option<&[T]>,
    grad: &[T],
    reduction: Reduction,
) -> Result<Vec<f64>, usize> {
    let rows = targets.len();
    let mut dx = vec![0.0; x.len()];
    for (r, &t) in targets.iter().enumerate() {
        let t = usize::try_from(t).ok().filter(|&t| t < cols).ok_or(r)?;
        let s = upstream(grad, r, reduction, rows as f64) * weight.map_or(1.0, |w| w[t].into()) / cols as f64;
        let xt: f64 = x[r * cols + t].into();
        for i in (0..cols).filter(|&i| i != t) {
            let z = margin - xt + x[r * cols + i].into();
            let d = if z > 0.0 { s * if p == 2 { 2.0 * z } else { 1.0 } } else { 0.0 };
            dx[r * cols + i] = d;
            dx[r * cols + t] -= d;
        }
    }
    Ok(dx)
}

/// `Σ_c w[c]·(max(x, 0) − x·y + log(1 + e^−|x|)) / C` for each row.
pub fn multilabel_soft_margin<T: Real>(
    x: &[T],
    y: &[T],
    cols: usize,
    weight: Option<&[T]>,
    reduction: Reduction,
) -> Vec<f64> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let losses = (0..rows)
        .map(|r| {
            let sum: f64 = (0..cols)
                .map(|c| {
                    let (v, t): (f64, f64) = (x[r * cols + c].into(), y[r * cols + c].into());
                    weight.map_or(1.0, |w| w[c].into()) * (v.max(0.0) - v * t + (-v.abs()).exp().ln_1p())
                })
                .sum();
            sum / cols as f64
        })
        .collect();
    reduce_with(losses, reduction, rows as f64)
}

/// The gradient of [`multilabel_soft_margin`] in `x`: `w[c]·(σ(x) − y) / C`, times the row's
/// upstream gradient.
pub fn multilabel_soft_margin_backward<T: Real>(
    x: &[T],
    y: &[T],
    cols: usize,
    weight: Option<&[T]>,
    grad: &[T],
    reduction: Reduction,
) -> Vec<f64> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    (0..x.len())
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let (v, t): (f64, f64) = (x[i].into(), y[i].into());
            let sigmoid = if v >= 0.0 { 1.0 / (1.0 + (-v).exp()) } else { v.exp() / (1.0 + v.exp()) };
            let s = upstream(grad, r, reduction, rows as f64) / cols as f64;
            weight.map_or(1.0, |w| w[c].into()) * (sigmoid - t) * s
        })
        .collect()
}

/// A row's listed targets: the class ids before the first −1; a value outside `[−1, C)`
/// anywhere in the row, after the first −1 too (PyTorch checks them all), is an error naming its
/// flat position.
fn listed(targets: &[i64], row: usize, cols: usize) -> Result<Vec<usize>, usize> {
    let ids = &targets[row * cols..(row + 1) * cols];
    if let Some(j) = ids.iter().position(|&t| t < -1 || t >= cols as i64) {
        return Err(row * cols + j);
    }
    Ok(ids.iter().take_while(|&&t| t != -1).map(|&t| t as usize).collect())
}

/// The classes of a row of `cols` that are not among its listed targets `ys`.
fn not_listed(ys: &[usize], cols: usize) -> Vec<usize> {
    let mut listed = vec![false; cols];
    for &y in ys {
        listed[y] = true;
    }
    (0..cols).filter(|&i| !listed[i]).collect()
}

/// `Σ_j Σ_{i ∉ T} max(0, 1 − x[y_j] + x[i]) / C` for each row (a repeated target counts twice).
pub fn multilabel_margin<T: Real>(
    x: &[T],
    targets: &[i64],
    cols: usize,
    reduction: Reduction,
) -> Result<Vec<f64>, usize> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut losses = Vec::with_capacity(rows);
    for r in 0..rows {
        let ys = listed(targets, r, cols)?;
        let others = not_listed(&ys, cols);
        let row: Vec<f64> = x[r * cols..(r + 1) * cols].iter().map(|&v| v.into()).collect();
        let sum: f64 =
            ys.iter().map(|&y| others.iter().map(|&i| (1.0 - row[y] + row[i]).max(0.0)).sum::<f64>()).sum();
        losses.push(sum / cols as f64);
    }
    Ok(reduce_with(losses, reduction, rows as f64))
}

/// The gradient of [`multilabel_margin`] in `x` (0 on a hinge at 0).
pub fn multilabel_margin_backward<T: Real>(
    x: &[T],
    targets: &[i64],
    cols: usize,
    grad: &[T],
    reduction: Reduction,
) -> Result<Vec<f64>, usize> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut dx = vec![0.0; x.len()];
    for r in 0..rows {
        let ys = listed(targets, r, cols)?;
        let others = not_listed(&ys, cols);
        let row: Vec<f64> = x[r * cols..(r + 1) * cols].iter().map(|&v| v.into()).collect();
        let s = upstream(grad, r, reduction, rows as f64) / cols as f64;
        for &y in &ys {
            for &i in &others {
                if 1.0 - row[y] + row[i] > 0.0 {
                    dx[r * cols + i] += s;
                    dx[r * cols + y] -= s;
                }
            }
        }
    }
    Ok(dx)
}
