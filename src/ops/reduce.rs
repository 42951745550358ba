//! Deterministic reductions to a scalar: `sum` and `mean` of a tensor, and the finishing stage
//! shared by every loss with [`Reduction::Mean`](super::Reduction::Mean) or `Sum`.
//!
//! Stage one gives each thread 64 elements of a fixed 4096-element chunk (strided by 64) and
//! writes one partial per thread, with no barrier; the finishing stages add the partials the
//! same way, 4096 per workgroup through a fixed tree, until one workgroup takes them all (one
//! stage up to 262 144 elements, two up to 1 G). No thread ever loops more than 64 times, so
//! no input size can run into a software adapter's loop budget. The partition and the order
//! depend only on the element count, so a result is bitwise the same from run to run on one
//! adapter, and the same on every adapter's partition. There are no float atomics.

use super::convert::f32_operand;
use super::{SUM_CHUNK, SUM_WG, check_u32, sum_constants};
use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::kernels::KernelId;
use crate::kernels::reduce::{A, B, PARTS, PARTS_IN, Params, RESULT};
use crate::tensor::{Storage, Tensor, ValueCheck};

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

/// The `mode` of an intermediate stage: each workgroup's sum becomes one partial.
const STAGE: u32 = 3;

/// The number of stage-one partials for `n` elements in workgroup chunks of `chunk` elements
/// (one per thread; a single cleared one for an empty input).
pub(crate) fn parts_for(n: usize, chunk: u64) -> u64 {
    if n == 0 { 1 } else { (n as u64).div_ceil(chunk) * SUM_WG as u64 }
}

/// The partials of each finishing stage: `n_parts`, then one per workgroup of SUM_CHUNK
/// partials until one workgroup takes them all. The partition depends on the count only.
fn stages(n_parts: u64) -> Vec<u64> {
    let mut sizes = vec![n_parts];
    let mut n = n_parts;
    while n > SUM_CHUNK {
        n = n.div_ceil(SUM_CHUNK);
        sizes.push(n);
    }
    sizes
}

/// The finishing stages: `n_parts` partials (pairs when `has_b`) to a 0-d tensor.
pub(crate) fn finish(
    dev: &Device,
    parts: &Storage,
    n_parts: u64,
    has_b: bool,
    mode: Finish,
    count: f64,
    checks: Vec<ValueCheck>,
) -> Result<Tensor> {
    let width = if has_b { 2 } else { 1 };
    let pipe = KernelId::Reduce.pipeline(dev, "finish", &sum_constants())?;
    let sizes = stages(n_parts);
    let mut level: Option<std::sync::Arc<Storage>> = None;
    for pair in sizes.windows(2) {
        let (n, groups) = (pair[0], pair[1]);
        let next = Storage::alloc(dev, groups * 4 * width)?;
        let input = level.as_deref().unwrap_or(parts);
        let params = Params {
            n: check_u32("partials", n as usize)?,
            part_base: 0,
            has_b: has_b as u32,
            mode: STAGE,
            count: 0.0,
            _pad: [0; 3],
        };
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&params),
            &[Bind::all(PARTS_IN, input.buffer()), Bind::range(RESULT, next.buffer(), 0, groups * 4 * width)],
            groups,
            &[],
        )?;
        level = Some(next);
    }
    let out = Storage::alloc(dev, 4)?;
    let last = *sizes.last().unwrap_or(&n_parts);
    let params = Params {
        n: check_u32("partials", last as usize)?,
        part_base: 0,
        has_b: has_b as u32,
        mode: mode as u32,
        count: count as f32,
        _pad: [0; 3],
    };
    let input = level.as_deref().unwrap_or(parts);
    dispatch(
        dev,
        &pipe,
        bytemuck::bytes_of(&params),
        &[Bind::all(PARTS_IN, input.buffer()), Bind::range(RESULT, out.buffer(), 0, 4)],
        1,
        &[],
    )?;
    Ok(Tensor { checks, ..Tensor::new(out, Vec::new()) })
}

/// Both stages over `n` values of `a` (and `b`, summed alongside for weighted means).
pub(crate) fn reduce(
    dev: &Device,
    a: &Storage,
    b: Option<&Storage>,
    n: usize,
    mode: Finish,
    count: f64,
    checks: Vec<ValueCheck>,
) -> Result<Tensor> {
    let n_parts = parts_for(n, SUM_CHUNK);
    let width = if b.is_some() { 2 } else { 1 };
    let parts = Storage::alloc(dev, n_parts * 4 * width)?;
    if n == 0 {
        // Nothing to add: a zero partial makes the sum 0 and the means NaN.
        dev.record(|enc| enc.clear_buffer(parts.buffer(), 0, Some(4 * width)));
    }
    let pipe = KernelId::Reduce.pipeline(dev, "partials", &sum_constants())?;
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
                Bind::range(A, a.buffer(), off, len as u64 * 4),
                Bind::range(B, b_buf, off, len as u64 * 4),
                Bind::all(PARTS, parts.buffer()),
            ],
            (len as u64).div_ceil(SUM_CHUNK),
            &[],
        )?;
    }
    finish(dev, &parts, n_parts, b.is_some(), mode, count, checks)
}

/// The sum of every element, as a 0-d f32 tensor (of any element type, summed in f32).
/// Deterministic (fixed order, no atomics).
///
/// ```
/// let dev = wgpu_loss::Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0, 3.0], &[3])?;
/// assert_eq!(wgpu_loss::sum(&x)?.item()?, 6.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn sum(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    dev.op("sum", || {
        let x = f32_operand(x)?;
        reduce(dev, &x.storage, None, x.numel(), Finish::Sum, 0.0, x.checks.clone())
    })
}

/// The mean of every element, as a 0-d tensor; NaN for an empty tensor, as in PyTorch.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    let (dev, n) = (x.device(), x.numel());
    dev.op("mean", || {
        let x = f32_operand(x)?;
        reduce(dev, &x.storage, None, n, Finish::MeanCount, n as f64, x.checks.clone())
    })
}

/// Per-item losses (`items` f32 values in `loss`, the output's `shape` for `None`) reduced as
/// `reduction` says: kept, summed, or averaged over the items (NaN over none).
pub(crate) fn reduce_items(
    dev: &Device,
    loss: std::sync::Arc<Storage>,
    items: usize,
    shape: Vec<usize>,
    reduction: super::Reduction,
    checks: Vec<ValueCheck>,
) -> Result<Tensor> {
    match reduction {
        super::Reduction::None => Ok(Tensor { checks, ..Tensor::new(loss, shape) }),
        super::Reduction::Sum => reduce(dev, &loss, None, items, Finish::Sum, 0.0, checks),
        super::Reduction::Mean => reduce(dev, &loss, None, items, Finish::MeanCount, items as f64, checks),
    }
}

#[cfg(test)]
mod tests {
    use super::stages;

    #[test]
    fn finishing_stages_take_4096_partials_a_workgroup_until_one_is_left() {
        assert_eq!(stages(1), [1]);
        assert_eq!(stages(4096), [4096]);
        assert_eq!(stages(4097), [4097, 2]);
        // 268.5 M elements: 4 195 328 stage-one partials, then 1025, then the last workgroup.
        assert_eq!(stages(268_500_000u64.div_ceil(4096) * 64), [4_195_328, 1025]);
        assert_eq!(stages(u32::MAX as u64), [u32::MAX as u64, 1_048_576, 256]);
    }
}
