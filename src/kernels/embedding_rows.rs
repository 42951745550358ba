//! `shaders/embedding_rows.wgsl`: cosine_embedding and triplet_margin, each row spread over
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
    pub(crate) margin: f32,
    /// triplet_margin's norm degree.
    pub(crate) p: f32,
    /// triplet_margin's eps, added to each difference.
    pub(crate) eps: f32,
    /// The factor of a reduced loss's upstream gradient (1 for sum, 1/rows for mean).
    pub(crate) scale: f32,
    /// Threads per row (`RowPlan::tpr`), read by the kernel where it merges a row's threads.
    pub(crate) tpr: u32,
    pub(crate) _pad: u32,
}
const _: () = assert!(size_of::<Params>() == 32);

/// The first input (cosine's input1, triplet's anchor), f32.
pub const X1: Binding = Binding::read("x1", 1);
/// The second (input2, the positive).
pub const X2: Binding = Binding::read("x2", 2);
/// The third (the negative).
pub const X3: Binding = Binding::read("x3", 3);
/// cosine_embedding's ±1 target per row.
pub const Y: Binding = Binding::read("y", 4);
/// The loss of each row (f32 bits).
pub const LOSS: Binding = Binding::read_write("loss", 5);
/// The upstream gradient: one per row, or one value.
pub const G: Binding = Binding::read("g", 6);
/// The gradients in x1, x2 and x3.
pub const D1: Binding = Binding::read_write("d1", 7);
pub const D2: Binding = Binding::read_write("d2", 8);
pub const D3: Binding = Binding::read_write("d3", 9);

/// The forward's passes over a thread's share of a row (the largest magnitudes, the sums), merged
/// over the row's threads (three merges: triplet's maxima, its NaN flags, the sums); the
/// backward's third pass writes the gradients.
pub(crate) const FORWARD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 2, trees: 3, quads: false };
pub(crate) const BACKWARD_LOOPS: RowLoops = RowLoops { wide: 0, plain: 3, trees: 3, quads: false };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "embedding_rows",
    entries: &[
        EntrySpec {
            name: "forward",
            bindings: &[X1, X2, X3, Y, LOSS],
            trips: LoopBound { over: ROW_EXTENTS, rule: |e| FORWARD_LOOPS.at(e) },
        },
        EntrySpec {
            name: "backward",
            bindings: &[X1, X2, X3, Y, G, D1, D2, D3],
            trips: LoopBound { over: ROW_EXTENTS, rule: |e| BACKWARD_LOOPS.at(e) },
        },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("embedding_rows.wgsl", "row_tree.wgsl").into()
}
