//! f64 twin of `linear_jsd`: the generalised JSD of two heads' logits, by composition.

use super::divergence::{Rows, jsd, jsd_backward};
use super::linear::{linear, linear_backward};
use super::{Real, f64s};

/// One head: x `(n, h)`, W `(v, h)` and an optional bias `(v)`, flat.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a, T> {
    pub x: &'a [T],
    pub w: &'a [T],
    pub bias: Option<&'a [T]>,
    pub h: usize,
}

impl<T: Real> Head<'_, T> {
    fn logits(&self) -> Vec<f64> {
        linear(self.x, self.w, self.bias, self.h)
    }

    fn rows(&self) -> usize {
        self.x.len().checked_div(self.h).unwrap_or(0)
    }

    fn vocab(&self) -> usize {
        self.w.len().checked_div(self.h).unwrap_or(0)
    }
}

/// `jsd(student logits, teacher logits)` with β, the temperature and `rows`' labels and
/// reduction.
pub fn linear_jsd<T: Real>(
    student: Head<'_, T>,
    teacher: Head<'_, T>,
    beta: f64,
    temperature: f64,
    rows: Rows<'_>,
) -> Vec<f64> {
    let shape = [student.rows(), student.vocab()];
    jsd(&student.logits(), &teacher.logits(), &shape, beta, temperature, rows)
}

/// The student's gradients `(dX, dW, db)` of [`linear_jsd`] for the upstream gradient `grad`.
pub fn linear_jsd_backward<T: Real>(
    student: Head<'_, T>,
    teacher: Head<'_, T>,
    beta: f64,
    temperature: f64,
    rows: Rows<'_>,
    grad: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = [student.rows(), student.vocab()];
    let g = jsd_backward(&student.logits(), &teacher.logits(), &shape, beta, temperature, rows, grad);
    linear_backward(&f64s(student.x), &f64s(student.w), &g, student.h)
}
