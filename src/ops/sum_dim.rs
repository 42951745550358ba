//! The sum over one dim of an f32 tensor viewed as `(outer, size, inner)`: the gradient of an
//! operand broadcast along that dim (gaussian_nll's var). Each pass sums fixed chunks of
//! `ITEMS` consecutive elements of the dim, in order, and passes repeat on the chunk sums until
//! one is left, so no thread loops more than `ITEMS` times and the result is bitwise the same
//! from run to run.

use super::check_u32;
use crate::error::Result;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::kernels::KernelId;
use crate::kernels::sum_dim::{ITEMS, OUT, Params, WG, X};
use crate::tensor::{Storage, Tensor};

/// `x` (f32, `outer · size · inner` elements) summed over its middle dim, with shape `shape`
/// (`outer · inner` elements). Records into the open frame.
pub(crate) fn sum_dim(
    op: &'static str,
    x: &Tensor,
    (outer, size, inner): (usize, usize, usize),
    shape: Vec<usize>,
) -> Result<Tensor> {
    let dev = x.device();
    check_u32(op, x.numel())?;
    let pipe = KernelId::SumDim.pipeline(dev, "chunk", &[("WG", WG as f64), ("ITEMS", ITEMS as f64)])?;
    if outer * inner == 0 || size == 0 {
        // Nothing to read: sums over no elements are 0.
        let zeros = Storage::alloc(dev, (outer * inner * 4).max(4) as u64)?;
        dev.record(|enc| enc.clear_buffer(zeros.buffer(), 0, None));
        return Ok(Tensor { checks: x.checks.clone(), ..Tensor::new(zeros, shape) });
    }
    let mut level = x.storage.clone();
    let mut size = size as u64;
    loop {
        let chunks = size.div_ceil(ITEMS);
        let next = Storage::alloc(dev, outer as u64 * chunks * inner as u64 * 4)?;
        let row_bytes = [size * inner as u64 * 4, chunks * inner as u64 * 4];
        for rows in row_chunks(dev, "a broadcast operand's gradient", outer, &row_bytes, 1)? {
            let len = rows.len() as u64;
            let total = len * chunks * inner as u64;
            let params = Params {
                total: check_u32(op, total as usize)?,
                size: size as u32,
                inner: inner as u32,
                chunks: chunks as u32,
            };
            let start = rows.start as u64;
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &[
                    Bind::range(X, level.buffer(), start * row_bytes[0], len * row_bytes[0]),
                    Bind::range(OUT, next.buffer(), start * row_bytes[1], len * row_bytes[1]),
                ],
                total.div_ceil(WG),
                &[],
            )?;
        }
        level = next;
        if chunks == 1 {
            break;
        }
        size = chunks;
    }
    Ok(Tensor { checks: x.checks.clone(), ..Tensor::new(level, shape) })
}
