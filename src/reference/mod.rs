//! CPU references in f64, one module per kernel with the same name as in [`crate::ops`].
//!
//! They compute with the same stable formulas as the kernels, in f64 and plain loops, so that
//! they are easy to compare with the WGSL. They are public: check your own adapter with them.
//! Results of reduced losses are one-element vectors.

pub mod bce_with_logits;
pub mod cross_entropy;
pub mod linear;
pub mod log_softmax;
pub mod mse;
pub mod nll;
pub mod reduce;

pub use crate::ops::Reduction;

/// log(Σ exp(v)) computed with the maximum subtracted.
pub(crate) fn logsumexp(row: &[f32]) -> f64 {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// Reduces per-item losses: `None` keeps them, `Sum` adds them, `Mean` divides the sum by
/// `denominator` (NaN when it is 0).
pub(crate) fn reduce_with(losses: Vec<f64>, reduction: Reduction, denominator: f64) -> Vec<f64> {
    match reduction {
        Reduction::None => losses,
        Reduction::Sum => vec![losses.iter().sum()],
        Reduction::Mean => {
            let s: f64 = losses.iter().sum();
            vec![if denominator == 0.0 { f64::NAN } else { s / denominator }]
        }
    }
}
