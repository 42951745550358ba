//! `log_softmax` and `softmax` over any dimension, and their gradients.
//!
//! One pass of an online (max, sum-exp) reduction per row (see `shaders/rows.wgsl`), then one
//! pass that writes the output. Rows are spread over threads by a [`RowStrategy`]; a dim other
//! than the last is read in place with a stride (no transpose); tensors larger than the binding
//! limit are processed in chunks. A row holding a NaN gives NaN throughout, as in PyTorch.

use super::{Outputs, RowStrategy, Rows, check_u32, resolve_dim};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::staging::{Staging, input};
use crate::kernels::KernelId;
use crate::kernels::convert::dtype_code;
use crate::kernels::log_softmax::{G, KERNEL, OUT, Params, X};
use crate::tensor::{Tensor, same_device};

/// `log_softmax` over `dim` (default −1, the last) with a chosen [`RowStrategy`].
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax {
    /// The dimension normalised over; negative counts from the end.
    pub dim: isize,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
    /// The element type of the output and the gradient: the input's (default; f16 and bf16
    /// rounded from the f32 result), or f32 unrounded.
    pub outputs: Outputs,
}

/// `softmax` over `dim` (default −1, the last) with a chosen [`RowStrategy`].
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    /// The dimension normalised over; negative counts from the end.
    pub dim: isize,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
    /// The element type of the output and the gradient: the input's (default; f16 and bf16
    /// rounded from the f32 result), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for LogSoftmax {
    fn default() -> Self {
        LogSoftmax { dim: -1, strategy: RowStrategy::Auto, outputs: Outputs::AsInputs }
    }
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax { dim: -1, strategy: RowStrategy::Auto, outputs: Outputs::AsInputs }
    }
}

impl LogSoftmax {
    /// Sets the dimension.
    pub fn dim(mut self, dim: isize) -> Self {
        self.dim = dim;
        self
    }

    /// Sets the element type of the output and the gradient.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }

    /// `y = x − logsumexp(x)` along `dim`; same shape as `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        run("log_softmax", "log_softmax", (self.strategy, self.dim, self.outputs), x, None)
    }

    /// The gradient `g − exp(y)·Σ g` along `dim`, from the forward output `y` and the upstream
    /// gradient `g` (same shape).
    pub fn backward(&self, y: &Tensor, grad_output: &Tensor) -> Result<Tensor> {
        run(
            "log_softmax",
            "log_softmax_backward",
            (self.strategy, self.dim, self.outputs),
            y,
            Some(grad_output),
        )
    }
}

impl Softmax {
    /// Sets the dimension.
    pub fn dim(mut self, dim: isize) -> Self {
        self.dim = dim;
        self
    }

    /// Sets the element type of the output and the gradient.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }

    /// `y = exp(x − max) / Σ exp(x − max)` along `dim`; same shape as `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        run("softmax", "softmax", (self.strategy, self.dim, self.outputs), x, None)
    }

    /// The gradient `y·(g − Σ g·y)` along `dim`, from the forward output `y` and the upstream
    /// gradient `g` (same shape).
    pub fn backward(&self, y: &Tensor, grad_output: &Tensor) -> Result<Tensor> {
        run("softmax", "softmax_backward", (self.strategy, self.dim, self.outputs), y, Some(grad_output))
    }
}

/// `log_softmax(x)` over the last dimension (PyTorch `F.log_softmax(x, dim=-1)`).
///
/// Stable for any finite input: the row maximum is subtracted before `exp`.
///
/// ```
/// let dev = wgpu_loss::Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0, 3.0], &[1, 3])?;
/// let y = wgpu_loss::log_softmax(&x)?.to_vec()?;
/// assert!((y[2] - (-0.40760596)).abs() < 1e-6);
/// // over dim 0 of a (2, 2) tensor: columns normalised
/// let x = dev.tensor(&[0.0, 5.0, 0.0, 5.0], &[2, 2])?;
/// let y = wgpu_loss::LogSoftmax::default().dim(0).forward(&x)?.to_vec()?;
/// assert!((y[0] - (-std::f32::consts::LN_2)).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    LogSoftmax::default().forward(x)
}

/// `softmax(x)` over the last dimension (PyTorch `F.softmax(x, dim=-1)`).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Softmax::default().forward(x)
}

/// One pass of `entry` over `x` (and the upstream gradient `grad` for the backward entries),
/// reading both in their own element types; the result in `x`'s unless `outputs` says f32.
fn run(
    op: &'static str,
    entry: &'static str,
    (strategy, dim, outputs): (RowStrategy, isize, Outputs),
    x: &Tensor,
    grad: Option<&Tensor>,
) -> Result<Tensor> {
    x.device().op(op, || outputs.apply(record(op, entry, (strategy, dim, outputs), x, grad)?, x.dtype))
}

/// The pass itself: the kernel stores the output type where rows go by quads (a thread owns
/// whole words of halves), else f32 for `run` to round.
fn record(
    op: &'static str,
    entry: &'static str,
    (strategy, dim, outputs): (RowStrategy, isize, Outputs),
    x: &Tensor,
    grad: Option<&Tensor>,
) -> Result<Tensor> {
    {
        let dev = x.device();
        if x.shape.is_empty() {
            return Err(Error::shape(op, "a 0-d tensor has no dimension to normalise over"));
        }
        if let Some(g) = grad {
            same_device(op, dev, &[g.device()])?;
            if g.shape != x.shape {
                return Err(Error::shape(
                    op,
                    format!("grad_output {:?} must have the output's shape {:?}", g.shape, x.shape),
                ));
            }
        }
        let rows = Rows::around(&x.shape, resolve_dim(op, dim, x.shape.len())?);
        let mut checks = x.checks.clone();
        checks.extend(grad.iter().flat_map(|g| g.checks.iter().cloned()));
        if rows.is_empty() {
            return Ok(Tensor { checks, ..Tensor::empty(dev, x.shape.clone())? });
        }
        check_u32(op, x.numel())?;
        let bound = KERNEL.entry(entry).map(|e| e.trips).ok_or_else(|| Error::invalid(op, entry))?;
        let plan = strategy.plan(op, dev, &x.shape, &rows, bound)?;
        let stored = if plan.quads { outputs.dtype(x.dtype) } else { DType::F32 };
        let out = Tensor::empty_of(dev, x.shape.clone(), stored)?;
        let mut constants = plan.constants();
        constants.push(("OUT_DTYPE", dtype_code(stored)));
        let mut staged: Vec<Staging<'_>> = vec![(X, x.storage.buffer(), x.numel(), x.dtype)];
        staged.extend(grad.map(|g| (G, g.storage.buffer(), g.numel(), g.dtype)));
        let reads = KernelId::LogSoftmax.reads(dev, &staged)?;
        let pipe = KernelId::LogSoftmax.pipeline_for(dev, reads, entry, &constants)?;
        let cols = rows.cols as u64;
        let mut per_row = vec![x.dtype.bytes(cols), stored.bytes(cols)];
        per_row.extend(grad.map(|g| g.dtype.bytes(cols)));
        for chunk in rows.chunks(dev, "one row", &per_row)? {
            let n = (chunk.len() * rows.inner) as u64;
            let params =
                Params { rows: n as u32, cols: rows.cols as u32, inner: rows.inner as u32, tpr: plan.tpr };
            let first = chunk.start as u64 * rows.inner as u64 * cols;
            let elements = n * cols;
            let mut inputs = vec![input(dev, reads, X, x.storage.buffer(), first, elements)];
            inputs.extend(grad.map(|g| input(dev, reads, G, g.storage.buffer(), first, elements)));
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(|i| i.bind()).collect();
            binds.push(Bind::range(OUT, out.storage.buffer(), stored.bytes(first), stored.bytes(elements)));
            let groups = plan.groups(n as usize);
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &plan.extents())?;
        }
        Ok(Tensor { checks, ..out })
    }
}
