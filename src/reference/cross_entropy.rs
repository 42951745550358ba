//! f64 twin of `cross_entropy` with class-id targets.

use super::{Reduction, logsumexp, nll::check_target, reduce_with};
use crate::error::Result;

/// Cross-entropy of `(rows, cols)` logits against `rows` targets: per row
/// `w[t] · (logsumexp − x[t])`, ignored rows 0; the mean divides by Σ w[t] over counted rows.
pub fn cross_entropy(
    logits: &[f32],
    cols: usize,
    targets: &[i64],
    weight: Option<&[f32]>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Vec<f64>> {
    let mut losses = Vec::with_capacity(targets.len());
    let mut denominator = 0.0;
    for (i, &t) in targets.iter().enumerate() {
        let Some(c) = check_target("cross_entropy", i, t, cols, ignore_index)? else {
            losses.push(0.0);
            continue;
        };
        let row = &logits[i * cols..(i + 1) * cols];
        let w = weight.map_or(1.0, |w| w[c] as f64);
        losses.push(w * (logsumexp(row) - row[c] as f64));
        denominator += w;
    }
    Ok(reduce_with(losses, reduction, denominator))
}
