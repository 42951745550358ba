//! f64 twins of `divergence`: the generalised Jensen–Shannon divergence of two logit tensors and
//! the total variation distance of two probability tensors, and their gradients in the first.

use super::{Real, Reduction, class_dim, f64s, logsumexp, reduce_with, rows_along, upstream};

/// The options of [`jsd`] and [`tvd`] besides the data: which rows count and how row losses
/// are reduced (`Mean` divides by the number of counted rows: Liger Kernel's `batchmean`).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// One label per row; rows labelled `ignore_index` give 0 and do not count.
    pub labels: Option<&'a [i64]>,
    pub ignore_index: i64,
    pub reduction: Reduction,
}

impl Rows<'_> {
    fn counts(&self, r: usize) -> bool {
        self.labels.is_none_or(|l| l[r] != self.ignore_index)
    }

    /// The per-row losses `row_loss(row)` of the counted rows (0 for the others), reduced.
    fn reduce(&self, shape: &[usize], mut row_loss: impl FnMut(&[usize]) -> f64) -> Vec<f64> {
        let mut losses = Vec::new();
        let mut counted = 0.0;
        for (r, row) in rows_along(shape, class_dim(shape)).iter().enumerate() {
            if self.counts(r) {
                losses.push(row_loss(row));
                counted += 1.0;
            } else {
                losses.push(0.0);
            }
        }
        reduce_with(losses, self.reduction, counted)
    }

    /// The gradient: `row_grad(row, upstream)` writes each counted row's elements.
    fn gradient<T: Real>(
        &self,
        shape: &[usize],
        grad: &[T],
        mut row_grad: impl FnMut(&[usize], f64, &mut [f64]),
    ) -> Vec<f64> {
        let rows = rows_along(shape, class_dim(shape));
        let counted = (0..rows.len()).filter(|&r| self.counts(r)).count() as f64;
        let mut dx = vec![0.0; shape.iter().product()];
        for (r, row) in rows.iter().enumerate() {
            if self.counts(r) {
                row_grad(row, upstream(grad, r, self.reduction, counted), &mut dx);
            }
        }
        dx
    }
}

/// log_softmax(v / T) of a row's values.
fn log_softmax(x: &[f64], row: &[usize], temperature: f64) -> Vec<f64> {
    let v: Vec<f64> = row.iter().map(|&i| x[i] / temperature).collect();
    let lse = logsumexp(&v);
    v.iter().map(|&u| u - lse).collect()
}

/// log(β·p + (1 − β)·q) from log p and log q, as a log-add-exp: finite where both underflow.
fn log_mixture(beta: f64, lp: f64, lq: f64) -> f64 {
    let (u, v) = (beta.ln() + lp, (1.0 - beta).ln() + lq);
    u.max(v) + (-(u - v).abs()).exp().ln_1p()
}

/// A row's generalised JSD from the student's and teacher's log-probabilities (see
/// [`crate::Jsd`]): β = 0 is KL(P ‖ Q), β = 1 is KL(Q ‖ P).
fn jsd_row(lq: &[f64], lp: &[f64], beta: f64) -> f64 {
    lq.iter()
        .zip(lp)
        .map(|(&q, &p)| {
            if beta == 0.0 {
                p.exp() * (p - q)
            } else if beta == 1.0 {
                q.exp() * (q - p)
            } else {
                let m = log_mixture(beta, p, q);
                beta * p.exp() * (p - m) + (1.0 - beta) * q.exp() * (q - m)
            }
        })
        .sum()
}

/// The generalised JSD between student logits `x` and teacher logits `y` of `shape` ((N, V, d…)
/// or (V)), both divided by `temperature` before their softmax.
pub fn jsd<T: Real>(
    x: &[T],
    y: &[T],
    shape: &[usize],
    beta: f64,
    temperature: f64,
    rows: Rows<'_>,
) -> Vec<f64> {
    let (x, y) = (f64s(x), f64s(y));
    rows.reduce(shape, |row| {
        jsd_row(&log_softmax(&x, row, temperature), &log_softmax(&y, row, temperature), beta)
    })
}

/// The gradient of [`jsd`] in the student's logits for the upstream gradient `grad` (one value
/// per row for `None`): per row `(g_j − q_j·Σ_k g_k) / T` with `g = ∂L/∂log q`.
#[allow(clippy::too_many_arguments)]
pub fn jsd_backward<T: Real>(
    x: &[T],
    y: &[T],
    shape: &[usize],
    beta: f64,
    temperature: f64,
    rows: Rows<'_>,
    grad: &[T],
) -> Vec<f64> {
    let (x, y) = (f64s(x), f64s(y));
    rows.gradient(shape, grad, |row, s, dx| {
        let (lq, lp) = (log_softmax(&x, row, temperature), log_softmax(&y, row, temperature));
        let dlogq: Vec<f64> = lq
            .iter()
            .zip(&lp)
            .map(|(&q, &p)| {
                if beta == 0.0 {
                    -p.exp()
                } else if beta == 1.0 {
                    q.exp() * (q - p + 1.0)
                } else {
                    (1.0 - beta) * q.exp() * (q - log_mixture(beta, p, q))
                }
            })
            .collect();
        let total: f64 = dlogq.iter().sum();
        for (k, &i) in row.iter().enumerate() {
            dx[i] = s * (dlogq[k] - lq[k].exp() * total) / temperature;
        }
    })
}

/// The total variation distance `½ Σ |x − y|` per row of probabilities of `shape`.
pub fn tvd<T: Real>(x: &[T], y: &[T], shape: &[usize], rows: Rows<'_>) -> Vec<f64> {
    let (x, y) = (f64s(x), f64s(y));
    rows.reduce(shape, |row| row.iter().map(|&i| 0.5 * (x[i] - y[i]).abs()).sum())
}

/// The gradient of [`tvd`] in `x`: `½·sign(x − y)` times the upstream gradient, 0 where x = y.
pub fn tvd_backward<T: Real>(x: &[T], y: &[T], shape: &[usize], rows: Rows<'_>, grad: &[T]) -> Vec<f64> {
    let (x, y) = (f64s(x), f64s(y));
    rows.gradient(shape, grad, |row, s, dx| {
        for &i in row {
            let d = x[i] - y[i];
            dx[i] = if d == 0.0 || d.is_nan() { d } else { 0.5 * s * d.signum() };
        }
    })
}
