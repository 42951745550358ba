//! A tensor's element type: half-precision tensors widened to f32 (exactly) for kernels that
//! read f32, and f32 results rounded to a half type (nearest, ties to even) for outputs that
//! follow their input's type. Kernels that decode halves as they read (the staged inputs) never
//! come here.

use super::{Outputs, check_u32};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::gpu::staging::input;
use crate::kernels::KernelId;
use crate::kernels::convert::{OUT, Params, SRC, WG, X, dtype_code};
use crate::tensor::Tensor;

impl Tensor {
    /// This tensor as `dtype`: widened exactly to f32, or rounded to f16 or bf16 (nearest, ties
    /// to even; f16 overflows to ±inf past 65 504, as PyTorch's `.half()`). The same tensor
    /// when it already is `dtype`.
    ///
    /// ```
    /// use wgpu_loss::{DType, Device};
    /// let dev = Device::new()?;
    /// let x = dev.tensor(&[1.0, 1.0 + 1.0 / 256.0, 1.0e5], &[3])?;
    /// assert_eq!(x.to_dtype(DType::BF16)?.to_vec()?, [1.0, 1.0, 99840.0]);
    /// assert_eq!(x.to_dtype(DType::F16)?.to_vec()?, [1.0, 1.00390625, f32::INFINITY]);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        self.device().op("to_dtype", || cast(self, dtype))
    }
}

/// `x` as `dtype`, recorded into the open frame (halves convert to each other through f32,
/// which holds both exactly: one rounding).
pub(crate) fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    match (x.dtype, dtype) {
        (from, to) if from == to => Ok(x.clone()),
        (_, DType::F32) => widen(x),
        (DType::F32, half) => narrow(x, half),
        (_, half) => narrow(&widen(x)?, half),
    }
}

/// An operand for a kernel that reads f32: `x` itself, or widened.
pub(crate) fn f32_operand(x: &Tensor) -> Result<Tensor> {
    cast(x, DType::F32)
}

impl Outputs {
    /// An operation's f32 result `out` in the element type this asks for: `input`, the type of
    /// the input it belongs to (rounded to nearest even), or f32 as it is. Inside an operation
    /// the conversion joins its frame.
    pub fn apply(self, out: Tensor, input: DType) -> Result<Tensor> {
        out.to_dtype(self.dtype(input))
    }

    /// The element type of an output that belongs to an input of type `input`.
    pub fn dtype(self, input: DType) -> DType {
        match self {
            Outputs::AsInputs => input,
            Outputs::F32 => DType::F32,
        }
    }
}

fn widen(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    let n = x.numel();
    let out = Tensor { checks: x.checks.clone(), ..Tensor::empty(dev, x.shape.clone())? };
    if n == 0 {
        return Ok(out);
    }
    check_u32("to_dtype", n)?;
    let buffer = x.storage.buffer();
    let reads = KernelId::Convert.reads(dev, &[(X, buffer, n, x.dtype)])?;
    let pipe = KernelId::Convert.pipeline_for(dev, reads, "widen", &[("WG", WG as f64)])?;
    // Chunks start on whole 16-byte texels of either type.
    for chunk in row_chunks(dev, "an element", n, &[x.dtype.size() as u64, 4], 8)? {
        let (first, len) = (chunk.start as u64, chunk.len() as u64);
        let staged = input(dev, reads, X, buffer, first, len);
        let binds = [staged.bind(), Bind::range(OUT, out.storage.buffer(), first * 4, len * 4)];
        let params = Params { n: len as u32, _pad: [0; 3] };
        dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, len.div_ceil(4 * WG as u64), &[])?;
    }
    Ok(out)
}

fn narrow(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let dev = x.device();
    let n = x.numel();
    let out = Tensor { checks: x.checks.clone(), ..Tensor::empty_of(dev, x.shape.clone(), dtype)? };
    if n == 0 {
        return Ok(out);
    }
    check_u32("to_dtype", n)?;
    let constants = [("WG", WG as f64), ("DTYPE", dtype_code(dtype))];
    let pipe = KernelId::Convert.pipeline(dev, "narrow", &constants)?;
    // Chunks start on whole words of halves.
    for chunk in row_chunks(dev, "an element", n, &[4, dtype.size() as u64], 2)? {
        let (first, len) = (chunk.start as u64, chunk.len() as u64);
        let binds = [
            Bind::range(SRC, x.storage.buffer(), first * 4, len * 4),
            Bind::range(OUT, out.storage.buffer(), dtype.bytes(first), dtype.bytes(len)),
        ];
        let params = Params { n: len as u32, _pad: [0; 3] };
        dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, len.div_ceil(2 * WG as u64), &[])?;
    }
    Ok(out)
}
