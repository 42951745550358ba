//! `shaders/reduce.wgsl`: staged fixed-order reductions to a scalar.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use super::sum::{SUM_ITEMS, SUM_WG};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads, log2_ceil};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) part_base: u32,
    pub(crate) has_b: u32,
    pub(crate) mode: u32,
    pub(crate) count: f32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 32);

/// The values summed (f32 bits).
pub const A: Binding = Binding::read("a", 1);
/// Optional second operand: the weights of a weighted mean.
pub const B: Binding = Binding::read("b", 2);
/// The partials of the first stage.
pub const PARTS: Binding = Binding::read_write("parts", 3);
/// A later stage's input partials.
pub const PARTS_IN: Binding = Binding::read("parts_in", 4);
/// A later stage's output: partials again, or the result.
pub const RESULT: Binding = Binding::read_write("result", 5);

/// The loop iterations of one invocation of either entry: ITEMS items, then (finish) two trees
/// over the workgroup. Fixed: more data means more workgroups and stages, never longer loops.
pub(crate) const TRIPS: u64 = SUM_ITEMS as u64 + 2 * log2_ceil(SUM_WG as u64) + 2;
const _: () = assert!(TRIPS <= crate::gpu::device::MIN_LOOP_BUDGET);
const FIXED: LoopBound = LoopBound::fixed(|_| TRIPS);

pub static KERNEL: KernelSpec = KernelSpec {
    name: "reduce",
    entries: &[
        EntrySpec { name: "partials", bindings: &[A, B, PARTS], trips: FIXED },
        EntrySpec { name: "finish", bindings: &[PARTS_IN, RESULT], trips: FIXED },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("sum.wgsl", "reduce.wgsl").into()
}
