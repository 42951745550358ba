//! f64 twins of `sum` and `mean`.

/// Σ x.
pub fn sum(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64).sum()
}

/// Σ x / n; NaN for an empty slice.
pub fn mean(x: &[f32]) -> f64 {
    if x.is_empty() { f64::NAN } else { sum(x) / x.len() as f64 }
}
