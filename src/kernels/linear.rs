//! `linear` (`shaders/linear.wgsl`, tiled, for GPUs), `linear_blocked` (register blocks, for the
//! software adapters) and the gradient GEMMs `linear_grad_input` / `linear_grad_weight`, the
//! last three written by `kernels/gemm.rs`.

use bytemuck::{Pod, Zeroable};

use super::gemm::{GRAD_COLS, GRAD_ROWS, gemm_grad_source, linear_blocked_source};
use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

/// The uniform of `linear` and `linear_blocked`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) has_bias: u32,
    pub(crate) ldy: u32,
    pub(crate) n_base: u32,
    pub(crate) tiles_n: u32,
    /// Add to y (a later piece of k) instead of writing it and the bias.
    pub(crate) accumulate: u32,
    /// The distance between rows of x and of W (the full in-features).
    pub(crate) ldk: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 48);

/// The uniform of the gradient GEMMs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct GradParams {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) lda: u32,
    pub(crate) ldb: u32,
    pub(crate) ldc: u32,
    pub(crate) tiles_n: u32,
    pub(crate) accumulate: u32,
    /// Skip the 64-blocks of dY's columns whose flag ([`FLAGS`]) is 0.
    pub(crate) filter: u32,
    /// The flag index of dY's column 0, times 64.
    pub(crate) flag_base: u32,
    pub(crate) _pad: [u32; 2],
}
const _: () = assert!(size_of::<GradParams>() == 48);

/// `x` (m, k): the input rows, f32 or half, read through `ld_x` (always from a storage buffer:
/// the ops never stage a GEMM operand in a texture).
pub const X: Binding = Binding::staged("x", 1);
/// `w` (n, k): the weight, f32 or half, read through `ld_w`.
pub const W: Binding = Binding::staged("w", 2);
/// The bias (n), read when `has_bias`.
pub const BIAS: Binding = Binding::read("bias", 3);
/// `y` (m, n): the output.
pub const Y: Binding = Binding::read_write("y", 4);

/// The gradient GEMMs' A (m, k), or Aᵀ for `linear_grad_weight`.
pub const A: Binding = Binding::read("a", 1);
/// B (k, n): W or x, f32 or half, read through `ld_b`.
pub const B: Binding = Binding::staged("b", 2);
/// C (m, n), written or accumulated into.
pub const C: Binding = Binding::read_write("c", 3);
/// One flag per 64 columns of dY: 0 skips them (the LM head's gradient filter).
pub const FLAGS: Binding = Binding::read("flags", 4);

/// One `linear` (tiled) invocation over `k`: per 16-wide step the step itself, four staging
/// loads and sixteen rank-1 updates; then four stores of four columns.
pub(crate) fn tiled_trips(k: u64) -> u64 {
    k.div_ceil(16) * 21 + 20
}

/// `linear_blocked`: one loop over k (the register block and its stores are unrolled).
pub(crate) fn blocked_trips(k: u64) -> u64 {
    k + 1
}

/// The gradient GEMMs: one loop over k; dW's threads whose rows the filter skips write their
/// block of zeros in a GRAD_ROWS × GRAD_COLS loop instead. The column sum loops over its k rows.
pub(crate) fn grad_trips(k: u64) -> u64 {
    let (rows, cols) = (GRAD_ROWS as u64, GRAD_COLS as u64);
    k + 1 + rows * (cols + 1)
}

const OVER_K: &[&str] = &["k"];

pub static TILED: KernelSpec = KernelSpec {
    name: "linear",
    entries: &[EntrySpec {
        name: "linear",
        bindings: &[X, W, BIAS, Y],
        trips: LoopBound { over: OVER_K, rule: |e| tiled_trips(e[0]) },
    }],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&TILED, reads, || shader!("linear.wgsl").into()),
};

pub static BLOCKED: KernelSpec = KernelSpec {
    name: "linear_blocked",
    entries: &[EntrySpec {
        name: "linear",
        bindings: &[X, W, BIAS, Y],
        trips: LoopBound { over: OVER_K, rule: |e| blocked_trips(e[0]) },
    }],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&BLOCKED, reads, linear_blocked_source),
};

const GEMM: EntrySpec = EntrySpec {
    name: "gemm",
    bindings: &[A, B, C, FLAGS],
    trips: LoopBound { over: OVER_K, rule: |e| grad_trips(e[0]) },
};

pub static GRAD_INPUT: KernelSpec = KernelSpec {
    name: "linear_grad_input",
    entries: &[GEMM],
    uniform_size: size_of::<GradParams>(),
    source: |reads: Reads| cached(&GRAD_INPUT, reads, || gemm_grad_source(false)),
};

pub static GRAD_WEIGHT: KernelSpec = KernelSpec {
    name: "linear_grad_weight",
    entries: &[
        GEMM,
        EntrySpec {
            name: "colsum",
            bindings: &[A, C, FLAGS],
            trips: LoopBound { over: OVER_K, rule: |e| e[0] + 1 },
        },
    ],
    uniform_size: size_of::<GradParams>(),
    source: |reads: Reads| cached(&GRAD_WEIGHT, reads, || gemm_grad_source(true)),
};
