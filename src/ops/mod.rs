//! The host side of every kernel: validate the inputs, pack the uniform, bind, dispatch.
//!
//! Each kernel's module here has a CPU twin of the same name in [`crate::reference`], a spec of
//! the same name in [`crate::kernels`] and a shader of the same name in `shaders/` (the GEMMs of
//! `linear` are written by `kernels/gemm.rs`). `class_rows` is what `cross_entropy` and `nll`
//! share; `budget` plans within the software adapters' loop budget.

pub mod bandwidth;
pub(crate) mod broadcast;
pub(crate) mod budget;
pub mod class_margin;
pub(crate) mod class_rows;
pub mod convert;
pub mod cross_entropy;
pub mod ctc;
pub mod divergence;
pub mod embedding_rows;
pub mod linear;
pub mod linear_cross_entropy;
pub mod linear_jsd;
pub(crate) mod linear_staged;
pub mod log_softmax;
pub mod multilabel_margin;
pub mod nll;
pub mod pointwise;
pub mod reduce;
pub(crate) mod sum_dim;

use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::row_chunks;
use crate::gpu::spec::LoopBound;
pub(crate) use crate::kernels::sum::{SUM_CHUNK, SUM_WG, sum_constants};
use crate::tensor::Tensor;

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

/// The element type of an operation's tensor outputs that are not losses: gradients, and the
/// outputs of log_softmax, softmax and linear. Losses and sums are always f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Outputs {
    /// Each output in the element type of the input it belongs to (a gradient in its input's,
    /// log_softmax's output in its input's), rounded to nearest even from the f32 result, as
    /// PyTorch gives them (the default).
    #[default]
    AsInputs,
    /// Every output f32, unrounded.
    F32,
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
    /// Rows are read four elements at a time (contiguous and cols % 4 == 0).
    pub(crate) quads: bool,
    /// The rows' length, for the entry's loop bound.
    pub(crate) cols: u64,
}

impl RowPlan {
    pub(crate) fn constants(self) -> Vec<(&'static str, f64)> {
        vec![("WG", self.wg as f64), ("TREE", self.tree() as u8 as f64), ("QUADS", self.quads as u8 as f64)]
    }

    /// More than one thread per row: the kernel merges them (the `TREE` constant; `tpr` itself
    /// is a uniform, so the segment widths share a pipeline).
    pub(crate) fn tree(self) -> bool {
        self.tpr > 1
    }

    /// The values the entry's loop bound is evaluated at (`kernels::rows::ROW_EXTENTS`).
    pub(crate) fn extents(self) -> [u64; 3] {
        [self.cols, self.tpr as u64, self.quads as u64]
    }

    /// Workgroups for `rows` rows.
    pub(crate) fn groups(self, rows: usize) -> u64 {
        (rows as u64).div_ceil((self.wg / self.tpr) as u64)
    }
}

/// The most threads a row kernel spreads one row over (a workgroup that wide).
pub(crate) const MAX_TPR: u32 = 256;

pub(crate) fn is_software(dev: &Device) -> bool {
    dev.info().device_type == wgpu::DeviceType::Cpu
}

impl RowStrategy {
    /// The plan for the rows of `rows` (of a tensor of `shape`, for errors) on `dev`, for an
    /// an entry point whose loop bound is `bound` (over `kernels::rows::ROW_EXTENTS`). Where the strategy's threads per row would each
    /// loop past the device's loop budget, the row gets more threads (up to [`MAX_TPR`]);
    /// beyond that the shape is an [`Error::Limit`].
    pub(crate) fn plan(
        self,
        op: &'static str,
        dev: &Device,
        shape: &[usize],
        rows: &Rows,
        bound: LoopBound,
    ) -> Result<RowPlan> {
        let software = is_software(dev);
        let (n_rows, cols) = (rows.rows(), rows.cols);
        let quads = rows.inner == 1 && cols.is_multiple_of(4);
        // Software adapters run each 8-lane slice of a workgroup as a coroutine and every
        // barrier switches through all of them: small workgroups, few barriers.
        let wg = if software { 64 } else { 256 };
        let mut tpr = match self {
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
            // Strided rows: adjacent threads read adjacent rows, which is the coalesced order.
            RowStrategy::Auto if rows.inner > 1 => 1,
            RowStrategy::Auto if software => {
                // One thread per row unless there are too few rows to keep the cores busy.
                let want = 256usize.div_ceil(n_rows.max(1));
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
        let trips = |tpr: u32| bound.at(&[cols as u64, tpr as u64, quads as u64]);
        while !budget::fits(dev, trips(tpr)) && tpr < MAX_TPR {
            tpr *= 2;
        }
        if !budget::fits(dev, trips(tpr)) {
            return Err(budget::exceeded(dev, op, shape, trips(tpr)));
        }
        // A segment wider than the default workgroup gets a workgroup of its own width.
        Ok(RowPlan { wg: wg.max(tpr), tpr, quads, cols: cols as u64 })
    }
}

/// Checks that `n` elements can be indexed with u32 inside kernels.
pub(crate) fn check_u32(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::limit(format!("{op}: elements indexed in one kernel"), n as u64, u32::MAX as u64))
}

/// The product of `dims`, saturating: shapes are checked when tensors are made, but sub-shapes
/// of an empty tensor (`[2^40, 2^40, 0]`) need not fit, and ops return early on empty inputs.
pub(crate) fn saturating_product(dims: &[usize]) -> usize {
    if dims.contains(&0) {
        return 0;
    }
    dims.iter().fold(1usize, |a, &d| a.saturating_mul(d))
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
    /// Products saturate: a tensor's element count is checked when it is made, but the sizes
    /// around a dim of an empty tensor (`[0, 2^40, 2^40]`) need not fit; ops return early on
    /// empty inputs before using them.
    pub(crate) fn around(shape: &[usize], dim: usize) -> Rows {
        let (outer, inner) = (saturating_product(&shape[..dim]), saturating_product(&shape[dim + 1..]));
        Rows { outer, cols: shape[dim], inner }
    }

    pub(crate) fn rows(&self) -> usize {
        self.outer.saturating_mul(self.inner)
    }

    /// Whether there is no element at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.outer == 0 || self.cols == 0 || self.inner == 0
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
        row_chunks(dev, what, self.outer, &per_outer, 1)
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

/// Checks a per-item loss's upstream gradient: the loss's `shape` for `Reduction::None`, else one
/// value. Returns whether it is per item, and the factor of a reduced one (1/items for the mean,
/// 1 for the sum).
pub(crate) fn item_grad(
    op: &'static str,
    grad: &Tensor,
    reduction: Reduction,
    shape: &[usize],
    items: usize,
) -> Result<(bool, f32)> {
    let per_item = reduction == Reduction::None;
    if per_item && grad.shape != shape {
        return Err(Error::shape(
            op,
            format!("grad_output must have the loss's shape {shape:?}, got {:?}", grad.shape),
        ));
    }
    if !per_item && grad.numel() != 1 {
        return Err(Error::shape(
            op,
            format!("grad_output of a reduced loss must hold one value, got {:?}", grad.shape),
        ));
    }
    let scale = if reduction == Reduction::Mean && items > 0 { 1.0 / items as f32 } else { 1.0 };
    Ok((per_item, scale))
}

/// `reduction` and `outputs` setters for loss types with those fields.
macro_rules! reduction_and_outputs {
    ($($t:ty),+) => {$(
        impl $t {
            /// Sets the reduction.
            pub fn reduction(mut self, reduction: $crate::ops::Reduction) -> Self {
                self.reduction = reduction;
                self
            }

            /// Sets the element type of the gradients.
            pub fn outputs(mut self, outputs: $crate::ops::Outputs) -> Self {
                self.outputs = outputs;
                self
            }
        }
    )+};
}
pub(crate) use reduction_and_outputs;
