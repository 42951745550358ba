//! Class-loss test data: target shapes, class ids with ignored rows, upstream gradients.

use super::Rng;
use wgpu_loss::{Device, Reduction, Tensor};

/// The targets' shape for an input shape: (N, d…) or () for (C).
pub fn target_shape(shape: &[usize]) -> Vec<usize> {
    if shape.len() == 1 { Vec::new() } else { [&shape[..1], &shape[2..]].concat() }
}

/// The class dim's size: dim 1, or dim 0 of an unbatched (C) input.
pub fn class_count(shape: &[usize]) -> usize {
    if shape.len() == 1 { shape[0] } else { shape[1] }
}

/// Class ids with every fifth ignored (−100).
pub fn ids(rng: &mut Rng, n: usize, classes: usize) -> Vec<i64> {
    (0..n).map(|i| if i % 5 == 3 { -100 } else { rng.below(classes) as i64 }).collect()
}

/// The upstream gradient for a loss with per-row values of `out_shape` under `reduction`.
pub fn upstream(
    dev: &Device,
    rng: &mut Rng,
    reduction: Reduction,
    out_shape: &[usize],
) -> (Vec<f32>, Tensor) {
    let (g, shape): (Vec<f32>, &[usize]) = match reduction {
        Reduction::None => (rng.values(out_shape.iter().product(), 2.0), out_shape),
        _ => (vec![0.75], &[]),
    };
    let t = dev.tensor(&g, shape).unwrap();
    (g, t)
}
