//! f64 twin of `linear`.

/// `y[i, j] = Σ_k x[i, k] · w[j, k] + b[j]` for `x` `(m, k)` and `w` `(n, k)`.
pub fn linear<T: super::Real>(x: &[T], w: &[T], bias: Option<&[T]>, k: usize) -> Vec<f64> {
    let n = w.len().checked_div(k).unwrap_or(0);
    let mut y = Vec::with_capacity(x.len() / k.max(1) * n);
    for xr in x.chunks(k.max(1)) {
        for (j, wr) in w.chunks(k.max(1)).enumerate() {
            let dot: f64 = xr.iter().zip(wr).map(|(&a, &b)| a.into() * b.into()).sum();
            y.push(dot + bias.map_or(0.0, |b| b[j].into()));
        }
    }
    y
}

/// The gradients of [`linear`] for upstream gradient `g` `(m, n)`: `dX = g·W` `(m, k)`,
/// `dW = gᵀ·x` `(n, k)` and `db = Σ_rows g` `(n)`.
pub fn linear_backward<T: super::Real>(
    x: &[T],
    w: &[T],
    g: &[T],
    k: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = w.len().checked_div(k).unwrap_or(0);
    let m = x.len().checked_div(k).unwrap_or(0);
    let (x, w, g) = (super::f64s(x), super::f64s(w), super::f64s(g));
    let mut dx = vec![0.0; m * k];
    let mut dw = vec![0.0; n * k];
    let mut db = vec![0.0; n];
    for i in 0..m {
        for j in 0..n {
            let gij = g[i * n + j];
            db[j] += gij;
            for c in 0..k {
                dx[i * k + c] += gij * w[j * k + c];
                dw[j * k + c] += gij * x[i * k + c];
            }
        }
    }
    (dx, dw, db)
}
