//! `shaders/pointwise.wgsl`: every elementwise loss, its gradient, and binary accuracy.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use super::sum::SUM_ITEMS;
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) first: u32,
    pub(crate) part_base: u32,
    pub(crate) beta: f32,
    pub(crate) scale: f32,
    /// The runs of the broadcast weight and aux operand in use (`ops::broadcast`).
    pub(crate) weight_count: u32,
    pub(crate) aux_count: u32,
    /// A second parameter (sigmoid_focal's α); `beta` is the first.
    pub(crate) alpha: f32,
    /// The formula's switches (sigmoid_focal's α on, poisson_nll's log_input and full,
    /// gaussian_nll's full).
    pub(crate) options: u32,
    pub(crate) _pad: [u32; 3],
    /// `[inner, size, stride, 0]` per run of the broadcast weight.
    pub(crate) weight_runs: [[u32; 4]; MAX_RUNS],
    /// The same for the aux operand.
    pub(crate) aux_runs: [[u32; 4]; MAX_RUNS],
}
const _: () = assert!(size_of::<Params>() == 176);

/// The most runs of a broadcast operand the kernel follows (the WGSL's `array<vec4<u32>, 4>`).
pub(crate) const MAX_RUNS: usize = 4;

/// The input.
pub const X: Binding = Binding::staged("x", 1);
/// The target.
pub const Y: Binding = Binding::staged("y", 2);
/// The element weight: the input's shape, or broadcast to it.
pub const WEIGHT: Binding = Binding::read("weight", 3);
/// The aux operand, broadcast to the input: bce_with_logits' `pos_weight`, gaussian_nll's var,
/// margin_ranking's target (f32; staged chunk by chunk with x and y when it has their shape).
pub const AUX: Binding = Binding::staged("aux", 4);
/// The output: per-element losses, or the workgroups' partial sums.
pub const OUT: Binding = Binding::read_write("out", 5);
/// The upstream gradient.
pub const G: Binding = Binding::read("g", 6);
/// The gradient in the formula's second operand: the target (kl_div, mse, l1, smooth_l1,
/// huber), input2 (margin_ranking) or var per element (gaussian_nll).
pub const D2: Binding = Binding::read_write("d2", 7);
/// The status word: bit flags for inputs out of the loss's domain.
pub const STATUS: Binding = Binding::read_write("status", 8);

/// The loop iterations of one quad: the runs of two broadcast operands, and sigmoid_focal's
/// products for an integral γ (at most 3).
const PER_QUAD: u64 = 2 * MAX_RUNS as u64 + 3;
/// The loop iterations of one invocation: every entry loops over its ITEMS quads. Fixed,
/// whatever the size.
pub(crate) const TRIPS: u64 = SUM_ITEMS as u64 * (1 + PER_QUAD);
const _: () = assert!(TRIPS <= crate::gpu::device::MIN_LOOP_BUDGET);
const FIXED: LoopBound = LoopBound::fixed(|_| TRIPS);

const FORWARD_BINDINGS: &[Binding] = &[X, Y, WEIGHT, AUX, OUT, STATUS];

pub static KERNEL: KernelSpec = KernelSpec {
    name: "pointwise",
    entries: &[
        EntrySpec { name: "forward_none", bindings: FORWARD_BINDINGS, trips: FIXED },
        EntrySpec { name: "forward_partials", bindings: FORWARD_BINDINGS, trips: FIXED },
        EntrySpec { name: "backward", bindings: &[X, Y, WEIGHT, AUX, OUT, G, D2, STATUS], trips: FIXED },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("sum.wgsl", "pointwise.wgsl").into()
}
