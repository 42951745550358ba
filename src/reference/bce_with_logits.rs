//! f64 twin of `bce_with_logits`.

use super::{Reduction, reduce_with};

/// Per element `w · [(1 − y)·x + (1 + (p − 1)·y)·softplus(−x)]` over `cols`-wide rows;
/// `weight` has one value per element or one per column, `pos_weight` one per column.
pub fn bce_with_logits(
    x: &[f32],
    y: &[f32],
    cols: usize,
    weight: Option<&[f32]>,
    pos_weight: Option<&[f32]>,
    reduction: Reduction,
) -> Vec<f64> {
    let softplus = |v: f64| v.max(0.0) + (-v.abs()).exp().ln_1p();
    let losses: Vec<f64> = x
        .iter()
        .zip(y)
        .enumerate()
        .map(|(i, (&xi, &yi))| {
            let (xi, yi) = (xi as f64, yi as f64);
            let p = pos_weight.map_or(1.0, |p| p[i % cols] as f64);
            let w = weight.map_or(1.0, |w| if w.len() == x.len() { w[i] } else { w[i % cols] } as f64);
            w * ((1.0 - yi) * xi + (1.0 + (p - 1.0) * yi) * softplus(-xi))
        })
        .collect();
    let n = losses.len() as f64;
    reduce_with(losses, reduction, n)
}
