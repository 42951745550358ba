//! `shaders/divergence.wgsl`: the generalised Jensen–Shannon divergence of two logit rows and
//! the total variation distance of two probability rows, per row, and their gradients in the
//! student's row.

use bytemuck::{Pod, Zeroable};

use super::rows::{ROW_EXTENTS, RowLoops};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

/// The uniform of `divergence`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) inner: u32,
    pub(crate) row_base: u32,
    pub(crate) ignore_index: i32,
    pub(crate) has_labels: u32,
    pub(crate) g_mode: u32,
    pub(crate) scale: f32,
    pub(crate) beta: f32,
    pub(crate) temperature: f32,
    pub(crate) log_beta: f32,
    pub(crate) log_one_minus_beta: f32,
    /// Threads per row (`RowPlan::tpr`), read by the kernel where it merges a row's threads.
    pub(crate) tpr: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 64);

/// The student's logits (jsd) or probabilities (tvd).
pub const X: Binding = Binding::staged("x", 1);
/// The teacher's logits (jsd) or probabilities (tvd), of the student's shape.
pub const Y: Binding = Binding::staged("y", 2);
/// Labels (i32), one per row, read when `has_labels`: rows labelled `ignore_index` do not count.
pub const LABELS: Binding = Binding::read("labels", 3);
/// Per-row losses (f32 bits).
pub const LOSS: Binding = Binding::read_write("loss", 4);
/// Per-row counts (1 or 0): the mean's denominator terms.
pub const COUNTED: Binding = Binding::read_write("counted", 5);
/// The upstream gradient (one value, or one per row).
pub const G: Binding = Binding::read("g", 6);
/// The mean's denominator (one value).
pub const DENOM: Binding = Binding::read("denom", 7);
/// The gradient in the student's row (f32 bits).
pub const DX: Binding = Binding::read_write("dx", 8);

/// jsd folds both rows once, sums the row's terms, and (backward) writes the gradient; tvd sums
/// once or writes once. Each pass takes one element a step, four over quads; the forward
/// entries merge twice across the row's threads.
pub(crate) const JSD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 2, trees: 2, quads: true };
pub(crate) const JSD_BACKWARD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 3, trees: 2, quads: true };
pub(crate) const TVD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 1, trees: 2, quads: true };
pub(crate) const TVD_BACKWARD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 1, trees: 0, quads: true };

const fn rows(loops: fn(&[u64]) -> u64) -> LoopBound {
    LoopBound { over: ROW_EXTENTS, rule: loops }
}

pub static KERNEL: KernelSpec = KernelSpec {
    name: "divergence",
    entries: &[
        EntrySpec { name: "jsd", bindings: &[X, Y, LABELS, LOSS, COUNTED], trips: rows(|e| JSD_LOOPS.at(e)) },
        EntrySpec {
            name: "jsd_backward",
            bindings: &[X, Y, LABELS, G, DENOM, DX],
            trips: rows(|e| JSD_BACKWARD_LOOPS.at(e)),
        },
        EntrySpec { name: "tvd", bindings: &[X, Y, LABELS, LOSS, COUNTED], trips: rows(|e| TVD_LOOPS.at(e)) },
        EntrySpec {
            name: "tvd_backward",
            bindings: &[X, Y, LABELS, G, DENOM, DX],
            trips: rows(|e| TVD_BACKWARD_LOOPS.at(e)),
        },
        EntrySpec { name: "counted_rows", bindings: &[LABELS, COUNTED], trips: LoopBound::fixed(|_| 0) },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("divergence.wgsl").into()
}
