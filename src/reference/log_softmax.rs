//! f64 twins of `log_softmax` and `softmax` along a dim, and of their gradients.

use super::{Real, f64s, logsumexp, rows_along};

/// `x − logsumexp(x)` along `dim` of a tensor of `shape`.
pub fn log_softmax_dim<T: Real>(x: &[T], shape: &[usize], dim: usize) -> Vec<f64> {
    let x = f64s(x);
    let mut out = vec![0.0; x.len()];
    for row in rows_along(shape, dim) {
        let vals: Vec<f64> = row.iter().map(|&i| x[i]).collect();
        let lse = logsumexp(&vals);
        for &i in &row {
            out[i] = x[i] - lse;
        }
    }
    out
}

/// `exp(x − logsumexp(x))` along `dim`.
pub fn softmax_dim<T: Real>(x: &[T], shape: &[usize], dim: usize) -> Vec<f64> {
    log_softmax_dim(x, shape, dim).into_iter().map(f64::exp).collect()
}

/// `x − logsumexp(x)` per row of `cols` values (the last dim).
pub fn log_softmax<T: Real>(x: &[T], cols: usize) -> Vec<f64> {
    log_softmax_dim(x, &[x.len() / cols.max(1), cols], 1)
}

/// `exp(x − logsumexp(x))` per row of `cols` values (the last dim).
pub fn softmax<T: Real>(x: &[T], cols: usize) -> Vec<f64> {
    softmax_dim(x, &[x.len() / cols.max(1), cols], 1)
}

/// The gradient of log_softmax along `dim` from its output `y` and upstream gradient `g`:
/// `g − exp(y)·Σ g`.
pub fn log_softmax_backward<T: Real>(y: &[T], g: &[T], shape: &[usize], dim: usize) -> Vec<f64> {
    let (y, g) = (f64s(y), f64s(g));
    let mut out = vec![0.0; y.len()];
    for row in rows_along(shape, dim) {
        let s: f64 = row.iter().map(|&i| g[i]).sum();
        for &i in &row {
            out[i] = g[i] - y[i].exp() * s;
        }
    }
    out
}

/// The gradient of softmax along `dim` from its output `y` and upstream gradient `g`:
/// `y·(g − Σ g·y)`.
pub fn softmax_backward<T: Real>(y: &[T], g: &[T], shape: &[usize], dim: usize) -> Vec<f64> {
    let (y, g) = (f64s(y), f64s(g));
    let mut out = vec![0.0; y.len()];
    for row in rows_along(shape, dim) {
        let s: f64 = row.iter().map(|&i| g[i] * y[i]).sum();
        for &i in &row {
            out[i] = y[i] * (g[i] - s);
        }
    }
    out
}
