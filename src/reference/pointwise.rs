//! f64 twins of the pointwise losses and their gradients.
//!
//! [`Pointwise::value`] and [`Pointwise::grad`] are the per-element formulas (in f64 all the way,
//! so that the gradients can be checked against finite differences); [`forward`] and
//! [`backward`] apply them to f32 (or f64) data with weights and a reduction.

use super::{Real, Reduction, reduce_with, upstream};

/// A pointwise loss and its parameter, as the kernels know them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pointwise {
    /// `(x − y)²`.
    Mse,
    /// `|x − y|`.
    L1,
    /// Smooth L1 with threshold β ≥ 0 (β = 0 is L1).
    SmoothL1(f64),
    /// Huber with threshold δ > 0.
    Huber(f64),
    /// Binary cross-entropy on probabilities, logs clamped at −100.
    Bce,
    /// Binary cross-entropy on logits with a positive weight (1 for none).
    BceWithLogits,
    /// KL divergence with log-probability input; `true` when the target is a log-probability.
    KlDiv(bool),
    /// 1 where `(x > 0) == (y > 0.5)`, else 0.
    BinaryAccuracy,
    /// `log(1 + exp(−y·x))`, as a stable softplus.
    SoftMargin,
    /// torchvision's focal loss on logits: α (negative: none) and γ.
    SigmoidFocal { alpha: f64, gamma: f64 },
    /// PyTorch's Poisson NLL: whether the input holds log-rates, the Stirling term, eps.
    PoissonNll { log_input: bool, full: bool, eps: f64 },
    /// PyTorch's hinge embedding with its margin.
    HingeEmbedding(f64),
    /// PyTorch's Gaussian NLL: the constant term, eps; the var is the aux operand.
    GaussianNll { full: bool, eps: f64 },
    /// PyTorch's margin ranking with its margin: `y` is input2, the target is the aux operand.
    MarginRanking(f64),
}

fn sign0(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn log_clamped(p: f64) -> f64 {
    if p <= 0.0 { -100.0 } else { p.ln().max(-100.0) }
}

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

/// The focal loss's pieces at (x, y): a_t, ce, m = 1 − p_t, p = σ(x), q = σ(−x).
fn focal_parts(alpha: f64, x: f64, y: f64) -> (f64, f64, f64, f64, f64) {
    let (p, q) = (sigmoid(x), sigmoid(-x));
    let at = if alpha >= 0.0 { alpha * y + (1.0 - alpha) * (1.0 - y) } else { 1.0 };
    let ce = x.max(0.0) - x * y + (-x.abs()).exp().ln_1p();
    (at, ce, y * q + (1.0 - y) * p, p, q)
}

/// Stirling's term of the full Poisson NLL: `y·log y − y + ½·log(2π·y)` where y > 1, else 0.
fn stirling(y: f64) -> f64 {
    if y > 1.0 { y * y.ln() - y + 0.5 * (std::f64::consts::TAU * y).ln() } else { 0.0 }
}

impl Pointwise {
    /// The loss of one element; `aux` is the element's aux operand (the positive weight of
    /// `BceWithLogits`, the var of `GaussianNll`, the target of `MarginRanking`; else ignored).
    pub fn value(self, x: f64, y: f64, aux: f64) -> f64 {
        let pw = aux;
        let d = x - y;
        match self {
            Pointwise::Mse => d * d,
            Pointwise::L1 => d.abs(),
            Pointwise::SmoothL1(0.0) => d.abs(),
            Pointwise::SmoothL1(b) => {
                if d.abs() < b {
                    0.5 * d * d / b
                } else {
                    d.abs() - 0.5 * b
                }
            }
            Pointwise::Huber(b) => {
                if d.abs() < b {
                    0.5 * d * d
                } else {
                    b * (d.abs() - 0.5 * b)
                }
            }
            Pointwise::Bce => -(y * log_clamped(x) + (1.0 - y) * log_clamped(1.0 - x)),
            Pointwise::BceWithLogits => {
                let softplus_neg = (-x).max(0.0) + (-x.abs()).exp().ln_1p();
                (1.0 - y) * x + (1.0 + (pw - 1.0) * y) * softplus_neg
            }
            Pointwise::KlDiv(false) => {
                let xlogy = if y == 0.0 { 0.0 } else { y * y.ln() };
                xlogy - y * x
            }
            Pointwise::KlDiv(true) => y.exp() * (y - x),
            Pointwise::BinaryAccuracy => ((x > 0.0) == (y > 0.5)) as u8 as f64,
            Pointwise::SoftMargin => softplus(-y * x),
            Pointwise::SigmoidFocal { alpha, gamma } => {
                let (at, ce, m, _, _) = focal_parts(alpha, x, y);
                at * ce * m.powf(gamma)
            }
            Pointwise::PoissonNll { log_input, full, eps } => {
                let nll = if log_input { x.exp() - y * x } else { x - y * (x + eps).ln() };
                nll + if full { stirling(y) } else { 0.0 }
            }
            Pointwise::HingeEmbedding(margin) => {
                let by_margin = if y != 1.0 { (margin - x).max(0.0) } else { 0.0 };
                by_margin + if y != -1.0 { x } else { 0.0 }
            }
            Pointwise::GaussianNll { full, eps } => {
                let v = aux.max(eps);
                let c = if full { 0.5 * std::f64::consts::TAU.ln() } else { 0.0 };
                0.5 * (v.ln() + d * d / v) + c
            }
            Pointwise::MarginRanking(margin) => (margin - aux * d).max(0.0),
        }
    }

    /// The derivative of [`Pointwise::value`] in its aux operand where PyTorch defines one
    /// (`GaussianNll`'s var: the clamp to eps is not differentiated, as in PyTorch), else NaN.
    pub fn aux_grad(self, x: f64, y: f64, aux: f64) -> f64 {
        match self {
            Pointwise::GaussianNll { eps, .. } => {
                let (v, d) = (aux.max(eps), x - y);
                0.5 * (1.0 / v - d * d / (v * v))
            }
            _ => f64::NAN,
        }
    }

    /// The derivatives of [`Pointwise::value`] in `x` and in `y`. The y-derivative is given
    /// where PyTorch defines one (`y` is the target, or `MarginRanking`'s input2), and is NaN
    /// for the others (`Bce`, `BceWithLogits`, `BinaryAccuracy`, `SoftMargin`, `SigmoidFocal`,
    /// `PoissonNll`, `HingeEmbedding`); for `KlDiv(false)` it is NaN at `y = 0`, as PyTorch's
    /// autograd gives.
    pub fn grad(self, x: f64, y: f64, aux: f64) -> (f64, f64) {
        let (d, pw) = (x - y, aux);
        let dx = match self {
            Pointwise::Mse => 2.0 * d,
            Pointwise::L1 => sign0(d),
            Pointwise::SmoothL1(0.0) => sign0(d),
            Pointwise::SmoothL1(b) => {
                if d.abs() < b {
                    d / b
                } else {
                    sign0(d)
                }
            }
            Pointwise::Huber(b) => {
                if d.abs() < b {
                    d
                } else {
                    b * sign0(d)
                }
            }
            Pointwise::Bce => (x - y) / ((1.0 - x) * x).max(1e-12),
            Pointwise::BceWithLogits => (1.0 - y) * sigmoid(x) - pw * y * sigmoid(-x),
            Pointwise::KlDiv(false) => -y,
            Pointwise::KlDiv(true) => -y.exp(),
            Pointwise::BinaryAccuracy => f64::NAN,
            Pointwise::SoftMargin => -y * sigmoid(-y * x),
            Pointwise::SigmoidFocal { alpha, gamma } => {
                let (at, ce, m, p, q) = focal_parts(alpha, x, y);
                let dm = (1.0 - 2.0 * y) * p * q;
                let dmg = if gamma == 0.0 { 0.0 } else { gamma * m.powf(gamma - 1.0) * dm };
                at * (((1.0 - y) * p - y * q) * m.powf(gamma) + ce * dmg)
            }
            Pointwise::PoissonNll { log_input: true, .. } => x.exp() - y,
            Pointwise::PoissonNll { eps, .. } => 1.0 - y / (x + eps),
            Pointwise::HingeEmbedding(margin) => {
                let by_margin = if y != 1.0 && margin - x > 0.0 { -1.0 } else { 0.0 };
                by_margin + if y != -1.0 { 1.0 } else { 0.0 }
            }
            Pointwise::GaussianNll { eps, .. } => d / aux.max(eps),
            Pointwise::MarginRanking(margin) => {
                if margin - aux * d > 0.0 {
                    -aux
                } else {
                    0.0
                }
            }
        };
        let dy = match self {
            Pointwise::Mse
            | Pointwise::L1
            | Pointwise::SmoothL1(_)
            | Pointwise::Huber(_)
            | Pointwise::GaussianNll { .. }
            | Pointwise::MarginRanking(_) => -dx,
            Pointwise::KlDiv(false) if y > 0.0 => y.ln() + 1.0 - x,
            Pointwise::KlDiv(true) => y.exp() * (y - x + 1.0),
            _ => f64::NAN,
        };
        (dx, dy)
    }
}

/// Weight of element `i` of `n` in rows of `cols`: elementwise (`n` values) or per column (a
/// weight of another shape is first broadcast with [`super::broadcast_to`]).
fn weight_at<T: Real>(weight: Option<&[T]>, i: usize, n: usize, cols: usize) -> f64 {
    weight.map_or(1.0, |w| if w.len() == n { w[i].into() } else { w[i % cols].into() })
}

/// The loss per element over rows of `cols`, times the weight (elementwise or per column; so is
/// the aux operand), reduced; `mean_divisor` is the mean's divisor (the element count, or the batch size for
/// `batchmean`). A NaN input gives NaN, as does `y < 0` for `KlDiv(false)`.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    loss: Pointwise,
    x: &[T],
    y: &[T],
    cols: usize,
    weight: Option<&[T]>,
    aux: Option<&[T]>,
    reduction: Reduction,
    mean_divisor: f64,
) -> Vec<f64> {
    let n = x.len();
    let losses = (0..n)
        .map(|i| {
            let (xi, yi): (f64, f64) = (x[i].into(), y[i].into());
            let pw = weight_at(aux, i, n, cols);
            loss.value(xi, yi, pw) * weight_at(weight, i, n, cols)
        })
        .collect();
    reduce_with(losses, reduction, mean_divisor)
}

/// The gradients in `x` and in `y` for upstream gradient `grad` (one value per element for
/// `Reduction::None`, else one value, divided by `mean_divisor` for the mean).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    loss: Pointwise,
    x: &[T],
    y: &[T],
    cols: usize,
    weight: Option<&[T]>,
    aux: Option<&[T]>,
    grad: &[T],
    reduction: Reduction,
    mean_divisor: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    (0..n)
        .map(|i| {
            let s = upstream(grad, i, reduction, mean_divisor);
            let pw = weight_at(aux, i, n, cols);
            let w = weight_at(weight, i, n, cols) * s;
            let (dx, dy) = loss.grad(x[i].into(), y[i].into(), pw);
            (dx * w, dy * w)
        })
        .unzip()
}

/// The gradient in the aux operand, per element (before any broadcast sum), for upstream
/// gradient `grad` as in [`backward`].
#[allow(clippy::too_many_arguments)]
pub fn aux_backward<T: Real>(
    loss: Pointwise,
    x: &[T],
    y: &[T],
    cols: usize,
    weight: Option<&[T]>,
    aux: &[T],
    grad: &[T],
    reduction: Reduction,
    mean_divisor: f64,
) -> Vec<f64> {
    let n = x.len();
    (0..n)
        .map(|i| {
            let s = upstream(grad, i, reduction, mean_divisor);
            let w = weight_at(weight, i, n, cols) * s;
            loss.aux_grad(x[i].into(), y[i].into(), weight_at(Some(aux), i, n, cols)) * w
        })
        .collect()
}

/// The shape gaussian_nll broadcasts a var of shape `var` from, by PyTorch's rule: the input's
/// shape; the input's shape less its last dim (unsqueezed to a last dim of 1); or the input's
/// shape with one dim of size 1. `None` for any other shape.
pub fn gaussian_var_shape(input: &[usize], var: &[usize]) -> Option<Vec<usize>> {
    if var == input {
        return Some(var.to_vec());
    }
    if !input.is_empty() && var == &input[..input.len() - 1] {
        return Some([var, &[1]].concat());
    }
    let differ: Vec<usize> = (0..input.len()).filter(|&k| var.get(k) != Some(&input[k])).collect();
    (var.len() == input.len() && differ.len() == 1 && var[differ[0]] == 1).then(|| var.to_vec())
}
