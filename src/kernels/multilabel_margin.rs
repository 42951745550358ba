//! `shaders/multilabel_margin.wgsl`: the targets' check and count, the target mask, the
//! per-target partial sums and the gradient of multilabel_margin.

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
    /// The piece of the row this dispatch of `partial` or `backward` loops over.
    pub(crate) begin: u32,
    pub(crate) end: u32,
    /// 1 for the first piece (which starts from 0), else 0.
    pub(crate) first: u32,
    /// 1 for the last piece (which divides by C, and scales the gradient), else 0.
    pub(crate) last: u32,
}
const _: () = assert!(size_of::<Params>() == 32);

/// The input (f32).
pub const X: Binding = Binding::read("x", 1);
/// The targets (i32, the input's shape): class ids up to the first −1.
pub const TARGETS: Binding = Binding::read("targets", 2);
/// How many times each class is one of its row's targets.
pub const MASK: Binding = Binding::read_write("mask", 3);
/// Per row, C minus the column of its first −1 (0 without one): C − the targets listed.
pub const STOP: Binding = Binding::read_write("stop", 4);
/// Each listed target's share of its row's loss.
pub const PART: Binding = Binding::read_write("part", 5);
/// The upstream gradient: one per row, or one value.
pub const G: Binding = Binding::read("g", 6);
/// The gradient in the input.
pub const DX: Binding = Binding::read_write("dx", 7);
/// The first target outside `[-1, C)`.
pub const STATUS: Binding = Binding::read_write("status", 8);

/// The extent the pieces' loops grow with: the classes (or targets) of one piece.
pub(crate) const EXTENTS: &[&str] = &["piece"];
/// `check` and `mark` do not loop.
const NO_LOOP: LoopBound = LoopBound { over: EXTENTS, rule: |_| 1 };
/// `partial` and `backward` loop once over their piece.
const ONE_PIECE: LoopBound = LoopBound { over: EXTENTS, rule: |e| e[0] + 1 };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "multilabel_margin",
    entries: &[
        EntrySpec { name: "check", bindings: &[TARGETS, STOP, STATUS], trips: NO_LOOP },
        EntrySpec { name: "mark", bindings: &[TARGETS, MASK, STOP], trips: NO_LOOP },
        EntrySpec { name: "partial", bindings: &[X, TARGETS, MASK, STOP, PART], trips: ONE_PIECE },
        EntrySpec { name: "backward", bindings: &[X, TARGETS, MASK, STOP, G, DX], trips: ONE_PIECE },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("multilabel_margin.wgsl").into()
}
