//! f64 twin of `mse`.

use super::{Reduction, reduce_with};

/// `(x − y)²` per element, reduced.
pub fn mse(x: &[f32], y: &[f32], reduction: Reduction) -> Vec<f64> {
    let losses: Vec<f64> = x.iter().zip(y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).collect();
    let n = losses.len() as f64;
    reduce_with(losses, reduction, n)
}
