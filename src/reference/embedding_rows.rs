//! f64 twins of `cosine_embedding` and `triplet_margin` over rows of `cols` values.

use super::{Reduction, reduce_with, upstream};

fn rows_of(n: usize, cols: usize) -> usize {
    n.checked_div(cols).unwrap_or(0)
}

/// A row's ⟨x1, x2⟩, |x1|² + 1e-12 and |x2|² + 1e-12, as PyTorch sums them.
fn cosine_sums(x1: &[f64], x2: &[f64]) -> (f64, f64, f64) {
    let dot = x1.iter().zip(x2).map(|(u, v)| u * v).sum();
    let a = x1.iter().map(|u| u * u).sum::<f64>() + 1e-12;
    let b = x2.iter().map(|v| v * v).sum::<f64>() + 1e-12;
    (dot, a, b)
}

/// The row loss of cosine_embedding at `cos` for target `t`, and its derivative in `cos`. A NaN
/// cosine (a row holding a NaN or an infinity) is a NaN loss where the target is ±1, else 0, and
/// a NaN derivative either way, as PyTorch's.
fn cosine_row(cos: f64, t: f64, margin: f64) -> (f64, f64) {
    if cos.is_nan() {
        return (if t == 1.0 || t == -1.0 { f64::NAN } else { 0.0 }, f64::NAN);
    }
    if t == 1.0 {
        (1.0 - cos, -1.0)
    } else if t == -1.0 && cos - margin > 0.0 {
        (cos - margin, 1.0)
    } else {
        (0.0, 0.0)
    }
}

/// `1 − cos` where the target is 1, `max(0, cos − margin)` where it is −1, else 0, per row.
pub fn cosine_embedding(
    x1: &[f64],
    x2: &[f64],
    cols: usize,
    y: &[f64],
    margin: f64,
    reduction: Reduction,
) -> Vec<f64> {
    let rows = y.len();
    let losses = (0..rows)
        .map(|r| {
            let range = r * cols..(r + 1) * cols;
            let (dot, a, b) = cosine_sums(&x1[range.clone()], &x2[range]);
            cosine_row(dot / (a * b).sqrt(), y[r], margin).0
        })
        .collect();
    reduce_with(losses, reduction, rows as f64)
}

/// The gradients of [`cosine_embedding`] in `x1` and `x2`.
#[allow(clippy::too_many_arguments)]
pub fn cosine_embedding_backward(
    x1: &[f64],
    x2: &[f64],
    cols: usize,
    y: &[f64],
    margin: f64,
    grad: &[f64],
    reduction: Reduction,
) -> (Vec<f64>, Vec<f64>) {
    let rows = y.len();
    let (mut d1, mut d2) = (vec![0.0; x1.len()], vec![0.0; x2.len()]);
    for (r, &t) in y.iter().enumerate() {
        let range = r * cols..(r + 1) * cols;
        let (dot, a, b) = cosine_sums(&x1[range.clone()], &x2[range.clone()]);
        let root = (a * b).sqrt();
        let cos = dot / root;
        let dcos = cosine_row(cos, t, margin).1 * upstream(grad, r, reduction, rows as f64);
        for i in range {
            d1[i] = dcos * (x2[i] / root - cos * x1[i] / a);
            d2[i] = dcos * (x1[i] / root - cos * x2[i] / b);
        }
    }
    (d1, d2)
}

/// |u − v + eps|_p, and how many elements reach the max (the max norm's ties): p = ∞ is the
/// max norm, p = 0 the count of non-zeros.
fn distance(u: &[f64], v: &[f64], p: f64, eps: f64) -> (f64, f64) {
    let w = u.iter().zip(v).map(|(a, b)| (a - b + eps).abs());
    if p.is_infinite() {
        let d = w.clone().fold(0.0, f64::max);
        return (d, w.filter(|&x| x == d).count() as f64);
    }
    if p == 0.0 {
        return (w.filter(|&x| x != 0.0).count() as f64, 1.0);
    }
    (w.map(|x| x.powf(p)).sum::<f64>().powf(1.0 / p), 1.0)
}

/// d|w|_p / dw_i for w = u − v + eps whose norm is `d` with `ties` elements at the max; 0 where
/// `d` or `w` is 0, and for p = 0.
fn distance_grad(w: f64, (d, ties): (f64, f64), p: f64) -> f64 {
    if d == 0.0 || w == 0.0 || p == 0.0 {
        0.0
    } else if p.is_infinite() {
        if w.abs() == d { w.signum() / ties } else { 0.0 }
    } else {
        w.signum() * (w.abs() / d).powf(p - 1.0)
    }
}

/// triplet_margin's options.
#[derive(Clone, Copy, Debug)]
pub struct Triplet {
    pub margin: f64,
    pub p: f64,
    pub eps: f64,
    pub swap: bool,
}

/// A row's distances d(a, p), d(a, n), d(p, n) (each with its ties), and the weights of the last
/// two in the negative distance (SWAP's minimum, halves on a tie).
#[allow(clippy::type_complexity)]
fn triplet_row(
    a: &[f64],
    p: &[f64],
    n: &[f64],
    o: Triplet,
) -> ((f64, f64), (f64, f64), (f64, f64), f64, f64) {
    let (ap, an) = (distance(a, p, o.p, o.eps), distance(a, n, o.p, o.eps));
    let pn = if o.swap { distance(p, n, o.p, o.eps) } else { (0.0, 1.0) };
    let (wan, wpn) = if !o.swap || an.0 < pn.0 {
        (1.0, 0.0)
    } else if pn.0 < an.0 {
        (0.0, 1.0)
    } else {
        (0.5, 0.5)
    };
    (ap, an, pn, wan, wpn)
}

/// `max(0, margin + d(a, p) − d(a, n))` per row.
pub fn triplet_margin(
    a: &[f64],
    p: &[f64],
    n: &[f64],
    cols: usize,
    o: Triplet,
    reduction: Reduction,
) -> Vec<f64> {
    let rows = rows_of(a.len(), cols);
    let losses = (0..rows)
        .map(|r| {
            let s = r * cols..(r + 1) * cols;
            let (ap, an, pn, wan, wpn) = triplet_row(&a[s.clone()], &p[s.clone()], &n[s], o);
            let z = o.margin + ap.0 - (wan * an.0 + wpn * pn.0);
            // A NaN distance makes the loss NaN, as PyTorch's clamp keeps it (f64::max would not).
            if z.is_nan() { f64::NAN } else { z.max(0.0) }
        })
        .collect();
    reduce_with(losses, reduction, rows as f64)
}

/// The gradients of [`triplet_margin`] in the anchor, the positive and the negative.
#[allow(clippy::type_complexity)]
pub fn triplet_margin_backward(
    a: &[f64],
    p: &[f64],
    n: &[f64],
    cols: usize,
    o: Triplet,
    grad: &[f64],
    reduction: Reduction,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = rows_of(a.len(), cols);
    let (mut da, mut dp, mut dn) = (vec![0.0; a.len()], vec![0.0; p.len()], vec![0.0; n.len()]);
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        let (ap, an, pn, wan, wpn) = triplet_row(&a[s.clone()], &p[s.clone()], &n[s.clone()], o);
        if o.margin + ap.0 - (wan * an.0 + wpn * pn.0) <= 0.0 {
            continue;
        }
        let g = upstream(grad, r, reduction, rows as f64);
        for i in s {
            let g_ap = distance_grad(a[i] - p[i] + o.eps, ap, o.p);
            let g_an = wan * distance_grad(a[i] - n[i] + o.eps, an, o.p);
            let g_pn = if o.swap { wpn * distance_grad(p[i] - n[i] + o.eps, pn, o.p) } else { 0.0 };
            da[i] = g * (g_ap - g_an);
            dp[i] = g * (-g_ap - g_pn);
            dn[i] = g * (g_an + g_pn);
        }
    }
    (da, dp, dn)
}
