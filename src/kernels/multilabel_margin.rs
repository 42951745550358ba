//! `shaders/multilabel_margin.wgsl`: the target mask, the per-target partial sums and the
//! gradient of multilabel_margin.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    /// The first row's index in the whole input (rows go in chunks), for the status word.
    pub(crate) row_base: u32,
    /// The factor of a reduced loss's upstream gradient (1 for sum, 1/rows for mean).
    pub(crate) scale: f32,
}
const _: () = assert!(size_of::<Params>() == 16);

/// The input (f32).
pub const X: Binding = Binding::read("x", 1);
/// The targets (i32, the input's shape): class ids up to the first −1.
pub const TARGETS: Binding = Binding::read("targets", 2);
/// 1 where a class is one of its row's targets.
pub const MASK: Binding = Binding::read_write("mask", 3);
/// Each listed target's share of its row's loss.
pub const PART: Binding = Binding::read_write("part", 4);
/// The upstream gradient: one per row, or one value.
pub const G: Binding = Binding::read("g", 5);
/// The gradient in the input.
pub const DX: Binding = Binding::read_write("dx", 6);
/// The first target outside `[-1, C)`.
pub const STATUS: Binding = Binding::read_write("status", 7);

/// The extent the loops grow with: the classes of a row.
pub(crate) const EXTENTS: &[&str] = &["cols"];
/// Every entry loops at most three times over a row.
const ROW_PASSES: LoopBound = LoopBound { over: EXTENTS, rule: |e| 3 * e[0] };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "multilabel_margin",
    entries: &[
        EntrySpec { name: "mark", bindings: &[TARGETS, MASK, STATUS], trips: ROW_PASSES },
        EntrySpec { name: "partial", bindings: &[X, TARGETS, MASK, PART], trips: ROW_PASSES },
        EntrySpec { name: "backward", bindings: &[X, TARGETS, MASK, G, DX], trips: ROW_PASSES },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("multilabel_margin.wgsl").into()
}
