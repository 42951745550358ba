//! Deterministic reductions to a scalar: `sum` and `mean` of a tensor, and the finishing stage
//! shared by every loss with [`Reduction::Mean`](super::Reduction::Mean) or `Sum`.
//!
//! Stage one gives each thread 64 elements of a fixed 4096-element chunk (strided by 64) and
//! writes one partial per thread, with no barrier; stage two adds the partials in index order
//! in one workgroup. The partition and the order depend only on
//! the element count, so a result is bitwise the same from run to run on one adapter. There are
//! no float atomics.

use bytemuck::{Pod, Zeroable};

use super::{SUM_CHUNK, SUM_WG, check_u32, sum_constants};
use crate::device::Device;
use crate::error::Result;
use crate::kernels::{Bind, KernelId, dispatch, row_chunks};
use crate::tensor::{Storage, TargetCheck, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) part_base: u32,
    pub(crate) has_b: u32,
    pub(crate) mode: u32,
    pub(crate) count: f32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 32);

/// What the finishing stage writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Σ a.
    Sum = 0,
    /// Σ a / count (NaN when count is 0).
    MeanCount = 1,
    /// Σ a / Σ b (NaN when Σ b is 0).
    MeanWeights = 2,
}

/// The number of stage-one partials for `n` elements in workgroup chunks of `chunk` elements
/// (one per thread; a single cleared one for an empty input).
pub(crate) fn parts_for(n: usize, chunk: u64) -> u64 {
    if n == 0 { 1 } else { (n as u64).div_ceil(chunk) * SUM_WG as u64 }
}

/// Stage two: `n_parts` partials (pairs when `has_b`) to a 0-d tensor.
pub(crate) fn finish(
    dev: &Device,
    parts: &Storage,
    n_parts: u64,
    has_b: bool,
    mode: Finish,
    count: f64,
    checks: Vec<TargetCheck>,
) -> Result<Tensor> {
    let out = Storage::alloc(dev, 4)?;
    let params = Params {
        n: check_u32("partials", n_parts as usize)?,
        part_base: 0,
        has_b: has_b as u32,
        mode: mode as u32,
        count: count as f32,
        _pad: [0; 3],
    };
    let pipe = dev.pipeline(KernelId::Reduce, "finish", &sum_constants())?;
    dispatch(
        dev,
        &pipe,
        bytemuck::bytes_of(&params),
        &[Bind::all(4, parts.buffer()), Bind::range(5, out.buffer(), 0, 4)],
        1,
    )?;
    Ok(Tensor { storage: out, shape: Vec::new(), checks })
}

/// Both stages over `n` values of `a` (and `b`, summed alongside for weighted means).
pub(crate) fn reduce(
    dev: &Device,
    a: &Storage,
    b: Option<&Storage>,
    n: usize,
    mode: Finish,
    count: f64,
    checks: Vec<TargetCheck>,
) -> Result<Tensor> {
    let n_parts = parts_for(n, SUM_CHUNK);
    let width = if b.is_some() { 2 } else { 1 };
    let parts = Storage::alloc(dev, n_parts * 4 * width)?;
    if n == 0 {
        // Nothing to add: a zero partial makes the sum 0 and the means NaN.
        dev.record(|enc| enc.clear_buffer(parts.buffer(), 0, Some(4 * width)));
    }
    let pipe = dev.pipeline(KernelId::Reduce, "partials", &sum_constants())?;
    let row_bytes: &[u64] = if b.is_some() { &[4, 4] } else { &[4] };
    for chunk in row_chunks(dev, "a reduction's input", n, row_bytes, SUM_CHUNK)? {
        let len = chunk.len();
        let off = chunk.start as u64 * 4;
        let params = Params {
            n: check_u32("", len)?,
            part_base: check_u32("", chunk.start / SUM_CHUNK as usize)?,
            has_b: b.is_some() as u32,
            mode: 0,
            count: 0.0,
            _pad: [0; 3],
        };
        let b_buf = b.unwrap_or(a).buffer();
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&params),
            &[
                Bind::range(1, a.buffer(), off, len as u64 * 4),
                Bind::range(2, b_buf, off, len as u64 * 4),
                Bind::all(3, parts.buffer()),
            ],
            (len as u64).div_ceil(SUM_CHUNK),
        )?;
    }
    finish(dev, &parts, n_parts, b.is_some(), mode, count, checks)
}

/// The sum of every element, as a 0-d tensor. Deterministic (fixed order, no atomics).
///
/// ```
/// let dev = wgpu_loss::Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0, 3.0], &[3])?;
/// assert_eq!(wgpu_loss::sum(&x)?.item()?, 6.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn sum(x: &Tensor) -> Result<Tensor> {
    reduce(x.device(), &x.storage, None, x.numel(), Finish::Sum, 0.0, x.checks.clone())
}

/// The mean of every element, as a 0-d tensor; NaN for an empty tensor, as in PyTorch.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    let n = x.numel();
    reduce(x.device(), &x.storage, None, n, Finish::MeanCount, n as f64, x.checks.clone())
}
