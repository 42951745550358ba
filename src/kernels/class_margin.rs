//! `shaders/class_margin.wgsl`: multi_margin and multilabel_soft_margin, each row spread over
//! threads (`shaders/row_tree.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::rows::{ROW_EXTENTS, RowLoops};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    /// The first row's index in the whole input (rows go in chunks), for the status word.
    pub(crate) row_base: u32,
    pub(crate) margin: f32,
    /// The factor of a reduced loss's upstream gradient (1 for sum, 1/rows for mean).
    pub(crate) scale: f32,
    /// Threads per row (`RowPlan::tpr`), read by the kernel where it merges a row's threads.
    pub(crate) tpr: u32,
    pub(crate) _pad: [u32; 2],
}
const _: () = assert!(size_of::<Params>() == 32);

/// The input (f32).
pub const X: Binding = Binding::read("x", 1);
/// multi_margin's class ids, one per row (i32).
pub const TARGETS: Binding = Binding::read("targets", 2);
/// multilabel_soft_margin's targets (f32, the input's shape).
pub const Y: Binding = Binding::read("y", 3);
/// The class weights (C).
pub const WEIGHT: Binding = Binding::read("weight", 4);
/// The loss of each row (f32 bits).
pub const LOSS: Binding = Binding::read_write("loss", 5);
/// The upstream gradient: one per row, or one value.
pub const G: Binding = Binding::read("g", 6);
/// The gradient in the input (f32 bits).
pub const DX: Binding = Binding::read_write("dx", 7);
/// The first row whose target is out of range.
pub const STATUS: Binding = Binding::read_write("status", 8);

/// Each entry loops once over its share of a row's classes, then merges over the row's threads.
pub(crate) const LOOPS: RowLoops = RowLoops { wide: 0, plain: 1, trees: 1, quads: false };
const ONE_PASS: LoopBound = LoopBound { over: ROW_EXTENTS, rule: |e| LOOPS.at(e) };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "class_margin",
    entries: &[
        EntrySpec { name: "forward", bindings: &[X, TARGETS, Y, WEIGHT, LOSS, STATUS], trips: ONE_PASS },
        EntrySpec { name: "backward", bindings: &[X, TARGETS, Y, WEIGHT, G, DX, STATUS], trips: ONE_PASS },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("class_margin.wgsl", "row_tree.wgsl").into()
}
