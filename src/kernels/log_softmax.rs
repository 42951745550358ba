//! `shaders/log_softmax.wgsl`: `log_softmax` and `softmax` over any dim, and their gradients.

use bytemuck::{Pod, Zeroable};

use super::rows::{ROW_EXTENTS, RowLoops};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) inner: u32,
    /// Threads per row (`RowPlan::tpr`), read by the kernel where it merges a row's threads.
    pub(crate) tpr: u32,
}
const _: () = assert!(size_of::<Params>() == 16);

/// The input (the forward output y in the backward entries).
pub const X: Binding = Binding::staged("x", 1);
/// The output.
pub const OUT: Binding = Binding::read_write("out", 2);
/// The upstream gradient (backward entries).
pub const G: Binding = Binding::staged("g", 3);

/// The forward's loops: the online state, then the writing pass; the backward's: the row sum
/// of g (or g·y), then the writing pass, with two merges across the row's threads.
pub(crate) const FORWARD_LOOPS: RowLoops = RowLoops { wide: 1, plain: 1, trees: 1, quads: true };
pub(crate) const BACKWARD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 2, trees: 2, quads: true };

const FORWARD: LoopBound = LoopBound { over: ROW_EXTENTS, rule: |e| FORWARD_LOOPS.at(e) };
const BACKWARD: LoopBound = LoopBound { over: ROW_EXTENTS, rule: |e| BACKWARD_LOOPS.at(e) };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "log_softmax",
    entries: &[
        EntrySpec { name: "log_softmax", bindings: &[X, OUT], trips: FORWARD },
        EntrySpec { name: "softmax", bindings: &[X, OUT], trips: FORWARD },
        EntrySpec { name: "log_softmax_backward", bindings: &[X, OUT, G], trips: BACKWARD },
        EntrySpec { name: "softmax_backward", bindings: &[X, OUT, G], trips: BACKWARD },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("rows.wgsl", "log_softmax.wgsl").into()
}
