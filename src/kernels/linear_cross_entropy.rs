//! `shaders/linear_cross_entropy.wgsl` and its generated logit blocks: the LM-head loss without
//! the N×V logits (split-V partials, their fixed-order fold, and the gradient of a tile of
//! recomputed logits).

use bytemuck::{Pod, Zeroable};

use super::gemm::{LCE_BLOCK, LCE_BLOCK_SMALL, LCE_BLOCK_STAGED, lce_partials_source};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) has_bias: u32,
    pub(crate) row_base: u32,
    pub(crate) v_base: u32,
    pub(crate) classes: u32,
    pub(crate) has_weight: u32,
    pub(crate) ignore_index: i32,
    pub(crate) smoothing: f32,
    pub(crate) softcap: f32,
    pub(crate) z_loss: f32,
    pub(crate) slices: u32,
    pub(crate) slice_w: u32,
    pub(crate) part_stride: u32,
    pub(crate) part_base: u32,
    pub(crate) g_mode: u32,
    pub(crate) mean: u32,
    pub(crate) ld: u32,
    pub(crate) filter_eps: f32,
    /// N: the length of each plane of the row statistics.
    pub(crate) rows: u32,
    /// The temperature T the capped logits are divided by (1: none).
    pub(crate) temperature: f32,
    /// Whether per-row token weights are bound ([`TOKEN_W`]).
    pub(crate) has_token_weight: u32,
    /// tile_grad: bit 0 an upstream gradient of logprob follows the loss's in [`GRAD`], bit 1
    /// one of entropy.
    pub(crate) token_grads: u32,
    /// The class of W's row 0: 0, or a vocabulary shard's first class (vocabulary-parallel
    /// heads). Targets, class weights and the argmax are global classes; W, b and the tiles'
    /// columns are the shard's.
    pub(crate) class_base: u32,
    /// partials: merge each run into the partial already stored in its slot (a later shard of
    /// W adding to the same slices), instead of writing it.
    pub(crate) merge_parts: u32,
    pub(crate) _pad: [u32; 2],
}
const _: () = assert!(size_of::<Params>() == 112);

/// Hidden states (N, H).
pub const X: Binding = Binding::staged("x", 1);
/// The classifier (V, H), or a V-shard of it.
pub const W: Binding = Binding::staged("w", 2);
/// The bias (V), read when `has_bias`.
pub const BIAS: Binding = Binding::read("bias", 3);
/// Class weights (V), read when `has_weight`.
pub const WEIGHT: Binding = Binding::read("cweight", 4);
/// Class ids (i32), one per row.
pub const TARGETS: Binding = Binding::read("targets", 5);
/// The split-V partials of each row's online log-sum-exp.
pub const PARTS: Binding = Binding::read_write("parts", 6);
/// Per-row losses (f32 bits).
pub const LOSS: Binding = Binding::read_write("loss", 7);
/// Per-row statistics, five planes of N: log-sum-exp, the max logit, log Σ exp(z − max), the
/// entropy (with per-token outputs) and the row's token weight. The target pass writes the
/// weights, the fold (or whole-row tiles) the rest; the gradient tiles read the max, log Σ,
/// entropy and weight.
pub const ROW_STATS: Binding = Binding::read_write("row_stats", 8);
/// The mean's denominators.
pub const DENOMS: Binding = Binding::read("denoms", 9);
/// The status word: bit flags for out-of-range targets.
pub const STATUS: Binding = Binding::read_write("status", 10);
/// Per-row target weights (the target pass).
pub const WT: Binding = Binding::read_write("wt", 11);
/// Per-row counted flags (the target pass).
pub const COUNTED: Binding = Binding::read_write("counted", 12);
/// The upstream gradient.
pub const GRAD: Binding = Binding::read("grad", 13);
/// The tile of logits, turned into its gradient in place.
pub const SCRATCH: Binding = Binding::read_write("scratch", 14);
/// One flag per 64 columns of the tile: whether any gradient there passes the filter.
pub const FLAGS: Binding = Binding::read_write("flags", 15);
/// Per-row token weights (N), read by the target pass when `has_token_weight`.
pub const TOKEN_W: Binding = Binding::read("token_w", 16);
/// The per-token outputs, five planes of N: logprob, entropy, argmax (i32), correct, counted.
pub const TOKEN_OUT: Binding = Binding::read_write("token_out", 17);
/// The planes of [`ROW_STATS`].
pub(crate) const STAT_PLANES: u64 = 5;
/// The planes of [`TOKEN_OUT`].
pub(crate) const TOKEN_PLANES: u64 = 5;

/// The words of a stored partial (and of a vocabulary shard's row state), written in a loop.
pub(crate) const PART_WORDS: u64 = 10;

/// One `partials` invocation walking `steps` blocks of columns over k = `h`: per block, the k
/// steps of its register-blocked GEMM and the block step itself; then the partial's store.
pub(crate) fn partials_trips(steps: u64, h: u64) -> u64 {
    steps * (h + 2) + 1 + PART_WORDS
}

/// `fold`: one pass over a row's `stride` partials, then the store of a shard's row state.
pub(crate) fn fold_trips(stride: u64) -> u64 {
    stride + 1 + PART_WORDS
}

/// `tile_grad`, a workgroup per row of an `n`-column tile: with `whole` rows it first folds the
/// row, a quad per thread a step, and merges the 64 states in a tree; then each thread writes
/// every 64th gradient (with the filter, whole 64-column blocks, every 64th block).
pub(crate) fn tile_grad_trips(n: u64, whole: bool, filter: bool) -> u64 {
    let fold = if whole { n.div_ceil(256) + 7 } else { 0 };
    let grad = if filter { n.div_ceil(64 * 64) * 66 } else { n.div_ceil(64) };
    fold + grad + 2
}

const PARTIALS: LoopBound = LoopBound { over: &["steps", "h"], rule: |e| partials_trips(e[0], e[1]) };
const PARTIALS_BINDINGS: &[Binding] = &[X, W, BIAS, WEIGHT, TARGETS, PARTS];

pub static KERNEL: KernelSpec = KernelSpec {
    name: "linear_cross_entropy",
    entries: &[
        EntrySpec {
            name: "target_pass",
            bindings: &[WEIGHT, TARGETS, STATUS, WT, COUNTED, ROW_STATS, TOKEN_W],
            trips: LoopBound::fixed(|_| 0),
        },
        EntrySpec { name: "partials", bindings: PARTIALS_BINDINGS, trips: PARTIALS },
        EntrySpec { name: "partials_small", bindings: PARTIALS_BINDINGS, trips: PARTIALS },
        EntrySpec {
            name: "partials_staged",
            bindings: PARTIALS_BINDINGS,
            trips: LoopBound { over: &["steps", "h"], rule: |e| partials_trips(e[0], e[1].div_ceil(4)) },
        },
        EntrySpec {
            name: "fold",
            bindings: &[WEIGHT, TARGETS, PARTS, LOSS, ROW_STATS, DENOMS, TOKEN_OUT],
            trips: LoopBound { over: &["stride"], rule: |e| fold_trips(e[0]) },
        },
        EntrySpec {
            name: "tile_grad",
            bindings: &[WEIGHT, TARGETS, LOSS, ROW_STATS, DENOMS, GRAD, SCRATCH, FLAGS],
            trips: LoopBound {
                over: &["cols", "whole_rows", "filter"],
                rule: |e| tile_grad_trips(e[0], e[1] != 0, e[2] != 0),
            },
        },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

/// The hand-written module and the two generated logit-block entry points.
fn body() -> String {
    let mut s = String::from(shader!("linear_cross_entropy.wgsl"));
    for (name, (rows, cols), staged) in [
        ("partials", LCE_BLOCK, false),
        ("partials_small", LCE_BLOCK_SMALL, false),
        ("partials_staged", LCE_BLOCK_STAGED, true),
    ] {
        lce_partials_source(&mut s, name, rows, cols, staged);
    }
    s
}
