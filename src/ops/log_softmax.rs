//! `log_softmax` and `softmax` over the last dimension.
//!
//! One pass of an online (max, sum-exp) reduction per row (see `shaders/rows.wgsl`), then one
//! pass that writes the output. Rows are spread over threads by a [`RowStrategy`]; tensors larger
//! than the binding limit are processed in row chunks.

use bytemuck::{Pod, Zeroable};

use super::{RowStrategy, check_u32, rows_cols};
use crate::error::{Error, Result};
use crate::kernels::{Bind, KernelId, dispatch, input, row_chunks};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) _pad: [u32; 2],
}
const _: () = assert!(size_of::<Params>() == 16);

/// `log_softmax` over the last dimension with a chosen [`RowStrategy`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSoftmax {
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
}

/// `softmax` over the last dimension with a chosen [`RowStrategy`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Softmax {
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
}

impl LogSoftmax {
    /// `y = x − logsumexp(x)` along the last dimension; same shape as `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        run("log_softmax", "log_softmax", self.strategy, x)
    }
}

impl Softmax {
    /// `y = exp(x − max) / Σ exp(x − max)` along the last dimension; same shape as `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        run("softmax", "softmax", self.strategy, x)
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
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    LogSoftmax::default().forward(x)
}

/// `softmax(x)` over the last dimension (PyTorch `F.softmax(x, dim=-1)`).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Softmax::default().forward(x)
}

fn run(op: &'static str, entry: &'static str, strategy: RowStrategy, x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    if x.shape.is_empty() {
        return Err(Error::shape(op, "a 0-d tensor has no dimension to normalise over"));
    }
    let (rows, cols) = rows_cols(&x.shape);
    let out = Tensor::empty(dev, x.shape.clone())?;
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    check_u32(op, cols)?;
    let plan = strategy.plan(op, dev, rows, cols)?;
    let path = dev.input_path(KernelId::LogSoftmax, &[(x.storage.buffer(), x.numel())])?;
    let pipe = dev.pipeline_for(KernelId::LogSoftmax, path, entry, &plan.constants())?;
    let row_bytes = cols as u64 * 4;
    for chunk in row_chunks(dev, "one row", rows, &[row_bytes, row_bytes], 1)? {
        let params = Params { rows: chunk.len() as u32, cols: cols as u32, _pad: [0; 2] };
        let off = chunk.start as u64 * row_bytes;
        let len = chunk.len() as u64 * row_bytes;
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&params),
            &[
                input(dev, path, 1, x.storage.buffer(), off, chunk.len() as u64 * cols as u64).bind(),
                Bind::range(2, out.storage.buffer(), off, len),
            ],
            plan.groups(chunk.len()),
        )?;
    }
    Ok(Tensor { checks: x.checks.clone(), ..out })
}
