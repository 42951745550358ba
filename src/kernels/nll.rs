//! `shaders/nll.wgsl`: the NLL gather from log-probabilities, and its gradient.

use super::class_rows::{LOSS, STATUS, TARGET_WEIGHTS, TARGETS, WEIGHT, WSUM};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

pub(crate) use super::class_rows::Params;

/// The log-probabilities, f32 or half, read through `ld_logp` (always from a storage buffer:
/// the gather reads one value a row, so staging the rows in a texture would cost more).
pub const LOGP: Binding = Binding::staged("logp", 1);
/// The upstream gradient (one value, or one per row).
pub const G: Binding = Binding::read("g", 7);
/// The mean's denominator (one value).
pub const DENOM: Binding = Binding::read("denom", 8);
/// The gradient in the log-probabilities.
pub const DX: Binding = Binding::read_write("dx", 9);

/// One thread a row, no loop.
const NO_LOOP: LoopBound = LoopBound::fixed(|_| 0);

pub static KERNEL: KernelSpec = KernelSpec {
    name: "nll",
    entries: &[
        EntrySpec { name: "nll", bindings: &[LOGP, TARGETS, WEIGHT, LOSS, WSUM, STATUS], trips: NO_LOOP },
        EntrySpec { name: "nll_backward", bindings: &[TARGETS, WEIGHT, G, DENOM, DX], trips: NO_LOOP },
        TARGET_WEIGHTS,
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("class_rows.wgsl", "nll.wgsl").into()
}
