//! The host side of every kernel: validate the inputs, pack the uniform, bind, dispatch.
//!
//! Each module here has a CPU twin of the same name in [`crate::reference`] and a shader of the
//! same name in `shaders/`.

pub mod bandwidth;
pub mod bce_with_logits;
pub mod cross_entropy;
pub mod linear;
pub mod log_softmax;
pub mod mse;
pub mod nll;
pub mod reduce;

use crate::device::Device;
use crate::error::{Error, Result};

/// How a per-element (or per-row) loss is reduced, as in PyTorch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Keep every value (the output has the loss's natural shape).
    None,
    /// The mean: over elements, or over the weights of the counted targets for weighted
    /// class losses. A mean over nothing is NaN.
    #[default]
    Mean,
    /// The sum. A sum over nothing is 0.
    Sum,
}

/// How a row reduction (log-softmax, softmax, cross-entropy) spreads a row over threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RowStrategy {
    /// Chosen from the row length, the row count and the adapter (the default).
    #[default]
    Auto,
    /// One thread per row: no barriers; best for short rows and on software adapters.
    ThreadPerRow,
    /// `n` threads per row (a power of two from 2 to 128) merging through workgroup memory.
    Segment(u32),
    /// A whole workgroup per row: vocabulary-sized rows on GPUs.
    WorkgroupPerRow,
}

/// Workgroup size and threads per row for a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowPlan {
    pub(crate) wg: u32,
    pub(crate) tpr: u32,
    /// Rows are read four elements at a time (cols % 4 == 0).
    pub(crate) quads: bool,
}

impl RowPlan {
    pub(crate) fn constants(self) -> [(&'static str, f64); 3] {
        [("WG", self.wg as f64), ("TPR", self.tpr as f64), ("QUADS", self.quads as u8 as f64)]
    }

    /// Workgroups for `rows` rows.
    pub(crate) fn groups(self, rows: usize) -> u64 {
        (rows as u64).div_ceil((self.wg / self.tpr) as u64)
    }
}

pub(crate) fn is_software(dev: &Device) -> bool {
    dev.info().device_type == wgpu::DeviceType::Cpu
}

impl RowStrategy {
    /// The plan for rows of `cols` elements, `rows` of them, on `dev`.
    pub(crate) fn plan(self, op: &'static str, dev: &Device, rows: usize, cols: usize) -> Result<RowPlan> {
        let software = is_software(dev);
        // Software adapters run each 8-lane slice of a workgroup as a coroutine and every
        // barrier switches through all of them: small workgroups, few barriers.
        let wg = if software { 64 } else { 256 };
        let tpr = match self {
            RowStrategy::ThreadPerRow => 1,
            RowStrategy::WorkgroupPerRow => wg,
            RowStrategy::Segment(n) => {
                if !(2..=128).contains(&n) || !n.is_power_of_two() {
                    return Err(Error::invalid(
                        op,
                        format!("Segment({n}): threads per row must be a power of two in 2..=128"),
                    ));
                }
                n
            }
            RowStrategy::Auto if software => {
                // One thread per row unless there are too few rows to keep the cores busy.
                let want = 256usize.div_ceil(rows.max(1));
                if want <= 1 || cols < 256 { 1 } else { (want.next_power_of_two() as u32).min(wg) }
            }
            RowStrategy::Auto => {
                if cols <= 64 {
                    1
                } else {
                    ((cols / 16).next_power_of_two() as u32).clamp(4, wg)
                }
            }
        };
        // A segment wider than the default workgroup gets a workgroup of its own width.
        Ok(RowPlan { wg: wg.max(tpr), tpr, quads: cols.is_multiple_of(4) })
    }
}

/// Elements in one workgroup's chunk of a reduction to a scalar (64 threads × 64 items), the same
/// on every adapter, so the partition of a sum does not depend on the hardware.
pub(crate) const SUM_WG: u32 = 64;
pub(crate) const SUM_ITEMS: u32 = 64;
pub(crate) const SUM_CHUNK: u64 = (SUM_WG * SUM_ITEMS) as u64;

/// Elements in one workgroup's chunk of a pointwise loss's fused partial sums (each thread
/// takes four elements at a time).
pub(crate) const EW_CHUNK: u64 = 4 * SUM_CHUNK;

pub(crate) fn sum_constants() -> [(&'static str, f64); 2] {
    [("WG", SUM_WG as f64), ("ITEMS", SUM_ITEMS as f64)]
}

/// Checks that `n` elements can be indexed with u32 inside kernels.
pub(crate) fn check_u32(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Limit {
        what: if op.is_empty() { "elements" } else { op },
        requested: n as u64,
        max: u32::MAX as u64,
    })
}

/// The rows and columns of a tensor viewed as (rows, last dim).
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&c, lead)) => (lead.iter().product(), c),
        None => (1, 1),
    }
}

/// One input of an elementwise kernel: its binding slot, its buffer, and whether it has one
/// value per element (bound chunk by chunk) or is small and bound whole.
pub(crate) struct EwInput<'a> {
    pub(crate) slot: u32,
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) per_element: bool,
}

impl EwInput<'_> {
    /// Read through an `ld_` accessor (and staged in a texture on software adapters).
    fn staged(&self, kernel: crate::kernels::KernelId) -> bool {
        kernel.staged_inputs().iter().any(|(_, slot)| *slot == self.slot)
    }
}

/// Runs a pointwise loss built on `shaders/elementwise.wgsl` over `n` elements: per-element
/// output for [`Reduction::None`], otherwise fused partial sums and the reduction's finish.
/// `params(len, first, part_base)` packs the uniform for the chunk starting at element `first`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn elementwise(
    dev: &Device,
    kernel: crate::kernels::KernelId,
    constants: &[(&'static str, f64)],
    shape: &[usize],
    inputs: &[EwInput<'_>],
    out_slot: u32,
    reduction: Reduction,
    params: impl Fn(u32, usize, u32) -> Vec<u8>,
    checks: Vec<crate::tensor::TargetCheck>,
) -> Result<crate::tensor::Tensor> {
    use crate::kernels::{Bind, Input, dispatch, input, row_chunks};
    use crate::ops::reduce::{Finish, finish};
    use crate::tensor::{Storage, Tensor};

    let n: usize = shape.iter().product();
    let per_element = inputs.iter().filter(|i| i.per_element).count() + 1;
    let row_bytes = vec![4u64; per_element];
    let reduced = reduction != Reduction::None;
    // Chunks start on whole quads (16 bytes: texel-aligned when staged), and on whole
    // workgroup chunks when reducing, so that the partition does not depend on the chunking.
    let (entry, multiple) = if reduced { ("forward_partials", EW_CHUNK) } else { ("forward_none", 4) };
    let mut all_constants = sum_constants().to_vec();
    all_constants.extend_from_slice(constants);
    let staged: Vec<(&wgpu::Buffer, usize)> =
        inputs.iter().filter(|i| i.staged(kernel)).map(|i| (i.buffer, n)).collect();
    let path = dev.input_path(kernel, &staged)?;
    let pipe = dev.pipeline_for(kernel, path, entry, &all_constants)?;
    let n_parts = crate::ops::reduce::parts_for(n, EW_CHUNK);
    let out = if reduced {
        let parts = Storage::alloc(dev, n_parts * 4)?;
        if n == 0 {
            dev.record(|enc| enc.clear_buffer(parts.buffer(), 0, Some(4)));
        }
        parts
    } else {
        Storage::alloc(dev, n as u64 * 4)?
    };
    for chunk in row_chunks(dev, "an elementwise input", n, &row_bytes, multiple)? {
        let len = chunk.len() as u64;
        let off = chunk.start as u64 * 4;
        let bound: Vec<Input<'_>> = inputs
            .iter()
            .map(|i| {
                if i.staged(kernel) {
                    input(dev, path, i.slot, i.buffer, off, len)
                } else if i.per_element {
                    Input::Buffer(Bind::range(i.slot, i.buffer, off, len * 4))
                } else {
                    Input::Buffer(Bind::all(i.slot, i.buffer))
                }
            })
            .collect();
        let mut binds: Vec<Bind<'_>> = bound.iter().map(Input::bind).collect();
        let groups = if reduced {
            binds.push(Bind::all(out_slot, out.buffer()));
            len.div_ceil(EW_CHUNK)
        } else {
            binds.push(Bind::range(out_slot, out.buffer(), off, len * 4));
            len.div_ceil(4 * SUM_WG as u64)
        };
        let part_base = (chunk.start as u64 / EW_CHUNK) as u32;
        dispatch(dev, &pipe, &params(len as u32, chunk.start, part_base), &binds, groups)?;
    }
    match reduction {
        Reduction::None => Ok(Tensor { storage: out, shape: shape.to_vec(), checks }),
        Reduction::Sum => finish(dev, &out, n_parts, false, Finish::Sum, 0.0, checks),
        Reduction::Mean => finish(dev, &out, n_parts, false, Finish::MeanCount, n as f64, checks),
    }
}
