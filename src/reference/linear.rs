//! f64 twin of `linear`.

/// `y[i, j] = Σ_k x[i, k] · w[j, k] + b[j]` for `x` `(m, k)` and `w` `(n, k)`.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, k: usize) -> Vec<f64> {
    let n = w.len().checked_div(k).unwrap_or(0);
    let mut y = Vec::with_capacity(x.len() / k.max(1) * n);
    for xr in x.chunks(k.max(1)) {
        for (j, wr) in w.chunks(k.max(1)).enumerate() {
            let dot: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
            y.push(dot + bias.map_or(0.0, |b| b[j] as f64));
        }
    }
    y
}
