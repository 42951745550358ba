//! CPU references in f64: a module for each kernel of [`crate::ops`], with the same name
//! (`class_rows` is shared by `cross_entropy` and `nll`, which have their own).
//!
//! They compute with the same stable formulas as the kernels, in f64 and plain loops, so that
//! they are easy to compare with the WGSL. They are public: check your own adapter with them.
//! Results of reduced losses are one-element vectors.

pub mod bandwidth;
pub mod class_margin;
pub mod cross_entropy;
pub mod ctc;
pub mod divergence;
pub mod embedding_rows;
pub mod linear;
pub mod linear_cross_entropy;
pub mod linear_jsd;
pub mod log_softmax;
pub mod nll;
pub mod pointwise;
pub mod reduce;

pub use crate::ops::Reduction;

/// The element types the references accept: f32 data as the kernels see it, or f64 (for
/// finite-difference checks of the gradients).
pub trait Real: Copy + Into<f64> {}
impl Real for f32 {}
impl Real for f64 {}

/// log(Σ exp(v)) computed with the maximum subtracted; NaN when a value is NaN.
pub(crate) fn logsumexp(row: &[f64]) -> f64 {
    if row.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

/// The rows of a tensor of `shape` along `dim`: for each row, the flat indices of its elements
/// in order. Rows come in the order (outer index, inner index).
pub(crate) fn rows_along(shape: &[usize], dim: usize) -> Vec<Vec<usize>> {
    let outer: usize = shape[..dim].iter().product();
    let cols = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let mut rows = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for d in 0..inner {
            rows.push((0..cols).map(|c| (o * cols + c) * inner + d).collect());
        }
    }
    rows
}

/// The rows along `dim` (public for tests and tools): see the crate's row layout.
pub fn rows_along_dim(shape: &[usize], dim: usize) -> Vec<Vec<usize>> {
    rows_along(shape, dim)
}

/// `data` of shape `from` broadcast to the shape `to` by numpy's rules (dims aligned from the
/// right, each 1 or equal, no more dims than `to`), element by element from its coordinates;
/// `None` where the rules refuse.
pub fn broadcast_to<T: Copy>(data: &[T], from: &[usize], to: &[usize]) -> Option<Vec<T>> {
    let index = broadcast_index(from, to)?;
    let n: usize = to.iter().product();
    Some((0..n).map(|i| data[index(i)]).collect())
}

/// The gradient of a broadcast: `data` of shape `to` summed into the shape `from` it was
/// broadcast from (the adjoint of [`broadcast_to`]); `None` where the rules refuse.
pub fn sum_to(data: &[f64], to: &[usize], from: &[usize]) -> Option<Vec<f64>> {
    let index = broadcast_index(from, to)?;
    let mut out = vec![0.0; from.iter().product()];
    for (i, v) in data.iter().enumerate() {
        out[index(i)] += v;
    }
    Some(out)
}

/// Where element `i` of shape `to` reads an operand of shape `from` broadcast to it.
fn broadcast_index(from: &[usize], to: &[usize]) -> Option<impl Fn(usize) -> usize> {
    let lead = to.len().checked_sub(from.len())?;
    if from.iter().zip(&to[lead..]).any(|(&f, &t)| f != 1 && f != t) {
        return None;
    }
    let (from, to) = (from.to_vec(), to.to_vec());
    Some(move |i: usize| {
        let (mut rest, mut at, mut stride) = (i, 0, 1);
        for d in (0..to.len()).rev() {
            let c = rest % to[d];
            rest /= to[d];
            if d >= lead && from[d - lead] != 1 {
                at += c * stride;
                stride *= from[d - lead];
            }
        }
        at
    })
}

/// The class dim of a loss input: 1, or 0 for an unbatched `(C)` input.
pub(crate) fn class_dim(shape: &[usize]) -> usize {
    if shape.len() == 1 { 0 } else { 1 }
}

pub(crate) fn f64s<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.into()).collect()
}

/// The upstream gradient reaching item `i` of a loss: `grad[i]` for `None`, the one value for
/// `Sum`, that value over `denominator` for `Mean`.
pub(crate) fn upstream<T: Real>(grad: &[T], i: usize, reduction: Reduction, denominator: f64) -> f64 {
    match reduction {
        Reduction::None => grad[i].into(),
        Reduction::Sum => grad[0].into(),
        Reduction::Mean => grad[0].into() / denominator,
    }
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
