//! `shaders/sum_dim.wgsl`: the sum over one dim, in fixed chunks of ITEMS elements.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    /// Threads: outer × chunks × inner.
    pub(crate) total: u32,
    pub(crate) size: u32,
    pub(crate) inner: u32,
    /// `size` in chunks of ITEMS, rounded up.
    pub(crate) chunks: u32,
}
const _: () = assert!(size_of::<Params>() == 16);

/// The values summed (f32 bits).
pub const X: Binding = Binding::read("x", 1);
/// One sum per chunk (f32 bits).
pub const OUT: Binding = Binding::read_write("out", 2);

/// Threads per workgroup, and elements one thread sums.
pub(crate) const WG: u64 = 64;
pub(crate) const ITEMS: u64 = 64;

pub static KERNEL: KernelSpec = KernelSpec {
    name: "sum_dim",
    // One loop over at most ITEMS elements.
    entries: &[EntrySpec { name: "chunk", bindings: &[X, OUT], trips: LoopBound::fixed(|_| ITEMS) }],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("sum_dim.wgsl").into()
}
