//! `shaders/ctc.wgsl`: the CTC loss's alpha and beta recursions, its per-sequence loss, and its
//! gradient in the log-probabilities.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct Params {
    /// N: the sequences of the whole input.
    pub(crate) batch: u32,
    pub(crate) classes: u32,
    pub(crate) blank: u32,
    /// The row stride of alpha and beta: 2 × (the chunk's longest target) + 1.
    pub(crate) sp: u32,
    /// The time steps alpha and beta hold (T).
    pub(crate) steps: u32,
    /// This time chunk, `t0 .. t1` (lp and dlp are bound from t0).
    pub(crate) t0: u32,
    pub(crate) t1: u32,
    /// This sequence chunk, `n0 .. n0 + seqs` (alpha and beta hold it).
    pub(crate) n0: u32,
    pub(crate) seqs: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 48);

/// The log-probabilities of a time chunk (f32).
pub const LP: Binding = Binding::read("lp", 1);
/// The targets (i32), padded rows or concatenated.
pub const TARGETS: Binding = Binding::read("targets", 2);
/// Per sequence: input length, target length, first target, divisor (f32 bits).
pub const SEQS: Binding = Binding::read("seqs", 3);
/// log alpha and log beta of a sequence chunk, `(seqs, T, sp)`.
pub const ALPHA: Binding = Binding::read_write("alpha", 4);
pub const BETA: Binding = Binding::read_write("beta", 5);
/// Each sequence's negative log-likelihood (f32 bits; +inf where impossible).
pub const NLL: Binding = Binding::read_write("nll", 6);
/// Each sequence's loss: the nll over its divisor.
pub const LOSS: Binding = Binding::read_write("loss", 7);
/// The upstream gradient: one per sequence, or one value.
pub const G: Binding = Binding::read("g", 8);
/// The gradient in the log-probabilities of a time chunk (f32 bits).
pub const DLP: Binding = Binding::read_write("dlp", 9);
/// The first target outside `[0, C)`.
pub const STATUS: Binding = Binding::read_write("status", 10);
/// Per sequence and extended label: its class (bit 31 set at its class's first position) and
/// the next position of the same class.
pub const CHAINS: Binding = Binding::read_write("chains", 11);

/// The extents the loops grow with: the time steps of a dispatch and the extended labels.
pub(crate) const EXTENTS: &[&str] = &["steps", "positions"];
/// Threads per workgroup.
pub(crate) const WG: u64 = 64;

/// The recursions: each step loops over the positions, WG at a time.
pub(crate) fn step_trips(steps: u64, positions: u64) -> u64 {
    steps * (positions.div_ceil(WG) + 1)
}

const STEPS: LoopBound = LoopBound { over: EXTENTS, rule: |e| step_trips(e[0], e[1]) };
/// sequence_loss loops over the targets, class_chains twice over the positions, grad_classes
/// along one chain.
const POSITIONS: LoopBound = LoopBound { over: EXTENTS, rule: |e| 2 * e[1] + 1 };

pub static KERNEL: KernelSpec = KernelSpec {
    name: "ctc",
    entries: &[
        EntrySpec { name: "alpha_steps", bindings: &[LP, TARGETS, SEQS, ALPHA], trips: STEPS },
        EntrySpec { name: "beta_steps", bindings: &[LP, TARGETS, SEQS, BETA], trips: STEPS },
        EntrySpec {
            name: "sequence_loss",
            bindings: &[TARGETS, SEQS, ALPHA, NLL, LOSS, STATUS],
            trips: POSITIONS,
        },
        EntrySpec {
            name: "grad_fill",
            bindings: &[LP, SEQS, ALPHA, NLL, G, DLP],
            trips: LoopBound::fixed(|_| 0),
        },
        EntrySpec { name: "class_chains", bindings: &[TARGETS, SEQS, CHAINS], trips: POSITIONS },
        EntrySpec {
            name: "grad_classes",
            bindings: &[LP, SEQS, ALPHA, BETA, NLL, G, DLP, CHAINS],
            trips: POSITIONS,
        },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("ctc.wgsl").into()
}
