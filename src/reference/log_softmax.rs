//! f64 twins of `log_softmax` and `softmax` over the last dimension of `(rows, cols)`.

use super::logsumexp;

/// `x − logsumexp(x)` per row of `cols` values.
pub fn log_softmax(x: &[f32], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols.max(1)) {
        let lse = logsumexp(row);
        out.extend(row.iter().map(|&v| v as f64 - lse));
    }
    out
}

/// `exp(x − logsumexp(x))` per row of `cols` values.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f64> {
    log_softmax(x, cols).into_iter().map(f64::exp).collect()
}
