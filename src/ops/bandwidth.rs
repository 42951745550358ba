//! The adapter's own yardsticks, measured in the same run as every benchmark
//! (`shaders/bandwidth.wgsl`): a kernel that reads each byte once with vec4 loads and sums it
//! (the ceiling of a memory-bound loss, which reads its input once), and a vec4 copy.

use crate::error::{Error, Result};
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::kernels::KernelId;
use crate::kernels::bandwidth::{DST, ITEMS, Params, SRC, WG};
use crate::tensor::{Storage, Tensor};

fn vec4_count(op: &'static str, x: &Tensor) -> Result<u64> {
    let n = x.numel() as u64;
    if n == 0 || !n.is_multiple_of(4) {
        return Err(Error::invalid(op, format!("needs a non-empty multiple of 4 elements, got {n}")));
    }
    Ok(n / 4)
}

/// Reads every element of `x` once and sums it; returns the per-thread partial sums (a
/// 64th of `x`'s size). The number of elements must be a multiple of 4.
pub fn read_sum(x: &Tensor) -> Result<Tensor> {
    x.device().op("read_sum", || read_sum_op(x))
}

fn read_sum_op(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    let n4 = vec4_count("read_sum", x)?;
    let chunk = WG * ITEMS;
    let groups_total = n4.div_ceil(chunk);
    let out = Storage::alloc(dev, groups_total * WG * 16)?;
    let pipe =
        KernelId::Bandwidth.pipeline(dev, "read_sum", &[("WG", WG as f64), ("ITEMS", ITEMS as f64)])?;
    for c in row_chunks(dev, "read_sum input", n4 as usize, &[16, 16 / ITEMS], chunk)? {
        let len = c.len() as u64;
        let groups = len.div_ceil(chunk);
        let g0 = c.start as u64 / chunk;
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&Params { n4: len as u32, _pad: [0; 3] }),
            &[
                Bind::range(SRC, x.storage.buffer(), c.start as u64 * 16, len * 16),
                Bind::range(DST, out.buffer(), g0 * WG * 16, groups * WG * 16),
            ],
            groups,
            &[],
        )?;
    }
    Ok(Tensor::new(out, vec![(groups_total * WG * 4) as usize]))
}

/// Copies `x` with vec4 loads and stores. The number of elements must be a multiple of 4.
pub fn copy(x: &Tensor) -> Result<Tensor> {
    x.device().op("copy", || copy_op(x))
}

fn copy_op(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    let n4 = vec4_count("copy", x)?;
    let out = Tensor::empty(dev, x.shape.clone())?;
    let pipe = KernelId::Bandwidth.pipeline(dev, "copy", &[("WG", WG as f64), ("ITEMS", ITEMS as f64)])?;
    for c in row_chunks(dev, "copy input", n4 as usize, &[16, 16], 1)? {
        let len = c.len() as u64;
        let off = c.start as u64 * 16;
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&Params { n4: len as u32, _pad: [0; 3] }),
            &[
                Bind::range(SRC, x.storage.buffer(), off, len * 16),
                Bind::range(DST, out.storage.buffer(), off, len * 16),
            ],
            len.div_ceil(WG),
            &[],
        )?;
    }
    Ok(out)
}
