//! The pointwise losses with a third operand in the kernel's aux slot and a gradient in a second
//! operand: `gaussian_nll` (input, target and var; gradients in input and var) and
//! `margin_ranking` (two inputs and a target; gradients in both inputs).

use super::super::sum_dim::sum_dim;
use super::{Formula, GAUSSIAN_FULL, Job, Scale};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::{Outputs, Reduction};
use crate::tensor::Tensor;

/// Gaussian negative log-likelihood, as PyTorch's `F.gaussian_nll_loss(input, target, var,
/// full=False, eps=1e-6, reduction)`: `½·(log v + (x − y)² / v)` with `v = max(var, eps)`, plus
/// `½·log(2π)` with `full`.
///
/// `var` follows PyTorch's rule: the input's shape; or the input's shape less its last dim (one
/// variance per row, unsqueezed); or the input's shape with one dim of size 1 (broadcast along
/// that dim). Any other shape is an [`Error::Shape`]. The target must have the input's shape.
/// A negative var is an [`Error::InputOutOfRange`] when the result is read, as PyTorch refuses
/// it. As in PyTorch, the clamp to `eps` is not differentiated: the var gradient
/// `½·(1/v − (x − y)²/v²)` reaches a var below `eps` unchanged; a broadcast var's gradient is
/// summed over the dim it was broadcast along.
///
/// ```
/// use wgpu_loss::{Device, GaussianNll};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0], &[2])?;
/// let y = dev.tensor(&[0.0, 2.0], &[2])?;
/// let var = dev.tensor(&[1.0, 4.0], &[2])?;
/// // F.gaussian_nll_loss(x, y, var) = ((0 + 1) / 2 + (log 4) / 2) / 2
/// let want = (0.5 + 0.5 * 4f32.ln()) / 2.0;
/// assert!((GaussianNll::default().forward(&x, &y, &var)?.item()? - want).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GaussianNll {
    /// Whether to add the constant `½·log(2π)` (default false).
    pub full: bool,
    /// The least variance the loss uses (default 1e-6).
    pub eps: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its operand's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for GaussianNll {
    fn default() -> Self {
        GaussianNll { full: false, eps: 1e-6, reduction: Reduction::Mean, outputs: Outputs::AsInputs }
    }
}

crate::ops::reduction_and_outputs!(GaussianNll, MarginRanking);

/// How a var of shape `var` meets an input of shape `input` under PyTorch's rule: the shape it
/// is broadcast from, and the `(outer, size, inner)` view of the input whose middle dim it is
/// broadcast along (`None` when it has the input's shape).
#[allow(clippy::type_complexity)]
fn var_layout(input: &[usize], var: &[usize]) -> Result<(Vec<usize>, Option<(usize, usize, usize)>)> {
    if var == input {
        return Ok((var.to_vec(), None));
    }
    let along = |shape: Vec<usize>, k: usize| {
        let outer = input[..k].iter().product();
        let inner = input[k + 1..].iter().product();
        (shape, Some((outer, input[k], inner)))
    };
    if !input.is_empty() && var == &input[..input.len() - 1] {
        let mut unsqueezed = var.to_vec();
        unsqueezed.push(1);
        return Ok(along(unsqueezed, input.len() - 1));
    }
    let differ: Vec<usize> = (0..input.len()).filter(|&k| var.get(k) != Some(&input[k])).collect();
    if var.len() == input.len() && differ.len() == 1 && var[differ[0]] == 1 {
        return Ok(along(var.to_vec(), differ[0]));
    }
    Err(Error::shape(
        "gaussian_nll",
        format!(
            "var {var:?} is of incorrect size for the input {input:?}: it must be the input's shape, \
             the input's shape less its last dim, or the input's shape with one dim of size 1"
        ),
    ))
}

impl GaussianNll {
    /// Sets whether the constant term is added.
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    /// Sets eps.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    fn job<'a>(&self, input: &'a Tensor, target: &'a Tensor, var: &'a Tensor) -> Result<Job<'a>> {
        if !self.eps.is_finite() {
            return Err(Error::invalid("gaussian_nll", format!("eps must be finite, got {}", self.eps)));
        }
        Ok(Job {
            beta: self.eps,
            switches: if self.full { GAUSSIAN_FULL } else { 0 },
            aux: Some((var, "var")),
            outputs: self.outputs,
            ..Job::new("gaussian_nll", Formula::GaussianNll, input, target)
        })
    }

    /// The loss: a 0-d tensor when reduced, the input's shape for `None`.
    pub fn forward(&self, input: &Tensor, target: &Tensor, var: &Tensor) -> Result<Tensor> {
        let (shape, _) = var_layout(&input.shape, &var.shape)?;
        let var = Tensor { shape, ..var.clone() };
        self.job(input, target, &var)?.forward(Scale::of(self.reduction, input.numel()))
    }

    /// The gradients in `input` and in `var` (var's own shape), given the upstream gradient
    /// `grad_output` (one value for a reduced loss, the input's shape for `None`), each in its
    /// operand's element type unless [`outputs`](Self::outputs) says f32.
    pub fn backward(
        &self,
        input: &Tensor,
        target: &Tensor,
        var: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (shape, along) = var_layout(&input.shape, &var.shape)?;
        let broadcast = Tensor { shape, ..var.clone() };
        let var_dtype = self.outputs.dtype(var.dtype);
        let scale = Scale::of(self.reduction, input.numel());
        input.device().op("gaussian_nll", || {
            let Some(dims) = along else {
                let job = Job { d2_dtype: Some(var_dtype), ..self.job(input, target, &broadcast)? };
                let (dx, dvar) = job.backward(grad_output, scale, true)?;
                return Ok((dx, dvar.expect("backward returns d2 when asked")));
            };
            // Per element in f32, summed along the broadcast dim, then in var's element type.
            let job = Job { d2_dtype: Some(DType::F32), ..self.job(input, target, &broadcast)? };
            let (dx, per_element) = job.backward(grad_output, scale, true)?;
            let per_element = per_element.expect("backward returns d2 when asked");
            let dvar = sum_dim("gaussian_nll", &per_element, dims, var.shape.clone())?;
            Ok((dx, dvar.to_dtype(var_dtype)?))
        })
    }
}

/// Margin ranking, as PyTorch's `F.margin_ranking_loss(input1, input2, target, margin=0,
/// reduction)`: `max(0, −t·(x1 − x2) + margin)`. The gradients are `−t` in `input1` and `t` in
/// `input2` where the hinge is above 0, else 0 (at 0 exactly too, as PyTorch's). Both inputs and the target must have the same shape; any target value is taken, as
/// in PyTorch (usually ±1).
///
/// ```
/// use wgpu_loss::{Device, MarginRanking};
/// let dev = Device::new()?;
/// let x1 = dev.tensor(&[1.0, 0.0], &[2])?;
/// let x2 = dev.tensor(&[0.5, 2.0], &[2])?;
/// let t = dev.tensor(&[1.0, 1.0], &[2])?;
/// // max(0, −0.5) and max(0, 2): mean 1
/// assert_eq!(MarginRanking::default().forward(&x1, &x2, &t)?.item()?, 1.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MarginRanking {
    /// The margin (default 0).
    pub margin: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl MarginRanking {
    /// Sets the margin.
    pub fn margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }

    fn job<'a>(&self, input1: &'a Tensor, input2: &'a Tensor, target: &'a Tensor) -> Result<Job<'a>> {
        if target.shape != input1.shape {
            return Err(Error::shape(
                "margin_ranking",
                format!(
                    "input1 {:?} and target {:?} differ (nothing is broadcast)",
                    input1.shape, target.shape
                ),
            ));
        }
        Ok(Job {
            beta: self.margin,
            target_name: "input2",
            aux: Some((target, "target")),
            outputs: self.outputs,
            ..Job::new("margin_ranking", Formula::MarginRanking, input1, input2)
        })
    }

    /// The loss: a 0-d tensor when reduced, the inputs' shape for `None`.
    pub fn forward(&self, input1: &Tensor, input2: &Tensor, target: &Tensor) -> Result<Tensor> {
        self.job(input1, input2, target)?.forward(Scale::of(self.reduction, input1.numel()))
    }

    /// The gradients in `input1` and in `input2`, given the upstream gradient `grad_output`
    /// (one value for a reduced loss, the inputs' shape for `None`).
    pub fn backward(
        &self,
        input1: &Tensor,
        input2: &Tensor,
        target: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let job = self.job(input1, input2, target)?;
        let (d1, d2) = job.backward(grad_output, Scale::of(self.reduction, input1.numel()), true)?;
        Ok((d1, d2.expect("backward returns d2 when asked")))
    }
}
