//! `shaders/cross_entropy.wgsl`: fused log-softmax + NLL (class ids or probabilities, label
//! smoothing, K-dim), its gradient, and top-k accuracy.

use super::class_rows::{LOSS, STATUS, TARGET_WEIGHTS, TARGETS, WEIGHT, WSUM};
use super::rows::{ROW_EXTENTS, RowLoops};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

pub(crate) use super::class_rows::Params;

/// The logits.
pub const X: Binding = Binding::staged("x", 1);
/// Target probabilities, when the targets are not class ids.
pub const Y: Binding = Binding::staged("y", 7);
/// The upstream gradient (one value, or one per row).
pub const G: Binding = Binding::read("g", 8);
/// The mean's denominator (one value).
pub const DENOM: Binding = Binding::read("denom", 9);
/// The gradient in the logits.
pub const DX: Binding = Binding::read_write("dx", 10);
/// The gradient in the target probabilities.
pub const DY: Binding = Binding::read_write("dy", 11);

/// The loops of each row entry point (over `rows.wgsl`): the forward folds the row once; the
/// backward folds it, then writes its gradient; accuracy counts the larger logits one element a
/// step.
pub(crate) const FORWARD_LOOPS: RowLoops = RowLoops { wide: 1, plain: 0, trees: 1, quads: true };
pub(crate) const BACKWARD_LOOPS: RowLoops = RowLoops { wide: 1, plain: 1, trees: 1, quads: true };
pub(crate) const ACCURACY_LOOPS: RowLoops = RowLoops { wide: 0, plain: 1, trees: 1, quads: false };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "cross_entropy",
    entries: &[
        EntrySpec {
            name: "cross_entropy",
            bindings: &[X, TARGETS, WEIGHT, LOSS, WSUM, STATUS, Y],
            trips: LoopBound { over: ROW_EXTENTS, rule: |e| FORWARD_LOOPS.at(e) },
        },
        EntrySpec {
            name: "cross_entropy_backward",
            bindings: &[X, TARGETS, WEIGHT, Y, G, DENOM, DX, DY],
            trips: LoopBound { over: ROW_EXTENTS, rule: |e| BACKWARD_LOOPS.at(e) },
        },
        EntrySpec {
            name: "accuracy",
            bindings: &[X, TARGETS, LOSS, WSUM, STATUS],
            trips: LoopBound { over: ROW_EXTENTS, rule: |e| ACCURACY_LOOPS.at(e) },
        },
        TARGET_WEIGHTS,
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("rows.wgsl", "class_rows.wgsl", "cross_entropy.wgsl").into()
}
