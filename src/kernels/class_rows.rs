//! `shaders/class_rows.wgsl`: the uniform and the bindings that `cross_entropy` and `nll` share
//! (targets, class weights, per-row losses and weights, the status word).

use bytemuck::{Pod, Zeroable};

use crate::gpu::spec::{Binding, EntrySpec, LoopBound};

/// The uniform of `cross_entropy` and `nll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) ignore_index: i32,
    pub(crate) has_weight: u32,
    pub(crate) row_base: u32,
    pub(crate) inner: u32,
    pub(crate) smoothing: f32,
    pub(crate) g_mode: u32,
    pub(crate) scale: f32,
    pub(crate) top_k: u32,
    /// Threads per row (`RowPlan::tpr`), read by the kernel where it merges a row's threads.
    pub(crate) tpr: u32,
    pub(crate) _pad: u32,
}
const _: () = assert!(size_of::<Params>() == 48);

/// Class ids (i32), one per row.
pub const TARGETS: Binding = Binding::read("targets", 2);
/// Class weights (C), read when `has_weight`.
pub const WEIGHT: Binding = Binding::read("weight", 3);
/// Per-row losses (f32 bits).
pub const LOSS: Binding = Binding::read_write("loss", 4);
/// Per-row target weights: the mean's denominator terms.
pub const WSUM: Binding = Binding::read_write("wsum", 5);
/// The status word: bit flags for out-of-range targets.
pub const STATUS: Binding = Binding::read_write("status", 6);

/// `target_weights`: the weight of each row's target and the range check, one thread a row
/// with no loop (for a mean whose rows are not otherwise visited).
pub(crate) const TARGET_WEIGHTS: EntrySpec = EntrySpec {
    name: "target_weights",
    bindings: &[TARGETS, WEIGHT, WSUM, STATUS],
    trips: LoopBound::fixed(|_| 0),
};
