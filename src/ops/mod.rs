//! The host side of every kernel: validate the inputs, pack the uniform, bind, dispatch.
//!
//! Each module here has a CPU twin of the same name in [`crate::reference`] and a shader of the
//! same name in `shaders/`.

pub mod bandwidth;
pub mod cross_entropy;
pub mod linear;
pub mod linear_cross_entropy;
pub mod log_softmax;
pub mod pointwise;
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
    pub(crate) fn constants(self) -> Vec<(&'static str, f64)> {
        vec![("WG", self.wg as f64), ("TPR", self.tpr as f64), ("QUADS", self.quads as u8 as f64)]
    }

    /// Workgroups for `rows` rows.
    pub(crate) fn groups(self, rows: usize) -> u64 {
        (rows as u64).div_ceil((self.wg / self.tpr) as u64)
    }
}

pub(crate) fn is_software(dev: &Device) -> bool {
    dev.info().device_type == wgpu::DeviceType::Cpu
}

/// The loop iterations one shader invocation may plan for on `dev`. Mesa's software adapters
/// (lavapipe and llvmpipe, Mesa 22.3) stop an invocation after 65 535 loop iterations in all,
/// counted over every loop it runs (gallivm's infinite-loop guard), and silently leave its work
/// unfinished; kernels split their work so that no invocation comes near that there. Measured:
/// a thread folding 8 000 logits over k = 1 024 (512 000 iterations) summed only the first
/// 1 024 of them.
pub(crate) fn loop_budget(dev: &Device) -> u64 {
    if is_software(dev) { 60_000 } else { u64::MAX }
}

/// The longest loop over one index a GEMM thread may run on `dev` (its k, or the columns a
/// row-kernel thread walks): half the budget, leaving room for the loops around it.
pub(crate) fn max_inner_loop(dev: &Device) -> usize {
    (loop_budget(dev) / 2).min(u32::MAX as u64) as usize
}

impl RowStrategy {
    /// The plan for rows of `cols` elements, `rows` of them, on `dev`.
    /// The plan for `rows` rows of `cols` elements, `stride` apart, on `dev`.
    pub(crate) fn plan_strided(
        self,
        op: &'static str,
        dev: &Device,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<RowPlan> {
        let mut plan = match (self, stride) {
            // Strided rows: adjacent threads read adjacent rows, which is the coalesced order.
            (RowStrategy::Auto, 2..) => RowStrategy::ThreadPerRow.plan(op, dev, rows, cols)?,
            _ => self.plan(op, dev, rows, cols)?,
        };
        plan.quads &= stride == 1;
        Ok(plan)
    }

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
                // One thread per row unless there are too few rows to keep the cores busy, or
                // the row is too long for one invocation's loop budget (two passes over it).
                let want = 256usize.div_ceil(rows.max(1));
                let tpr = if want <= 1 || cols < 256 { 1 } else { (want.next_power_of_two() as u32).min(wg) };
                let need = cols.div_ceil(max_inner_loop(dev)).next_power_of_two() as u32;
                tpr.max(need).min(128)
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

/// A tensor viewed as `(outer, cols, inner)` around one dim: the rows of a softmax over that dim,
/// or the class dim of a loss. Row `r = o * inner + d` has its elements `inner` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rows {
    pub(crate) outer: usize,
    pub(crate) cols: usize,
    pub(crate) inner: usize,
}

impl Rows {
    /// The view of `shape` around `dim` (already checked to be in range).
    pub(crate) fn around(shape: &[usize], dim: usize) -> Rows {
        Rows {
            outer: shape[..dim].iter().product(),
            cols: shape[dim],
            inner: shape[dim + 1..].iter().product(),
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.outer * self.inner
    }

    /// Chunks of whole outer blocks (as ranges of outer indices) such that every buffer bound
    /// per chunk (`bytes_per_row[i]` bytes per row of the block, times `inner` rows) fits the
    /// binding limit at an aligned offset.
    pub(crate) fn chunks(
        &self,
        dev: &Device,
        what: &'static str,
        bytes_per_row: &[u64],
    ) -> Result<Vec<std::ops::Range<usize>>> {
        let per_outer: Vec<u64> = bytes_per_row.iter().map(|b| b * self.inner as u64).collect();
        crate::kernels::row_chunks(dev, what, self.outer, &per_outer, 1)
    }
}

/// `dim` as an index into a shape of `rank` dims, counting from the end when negative.
pub(crate) fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(Error::invalid(op, format!("dim {dim} is out of range for {rank} dims")));
    }
    Ok(d as usize)
}
