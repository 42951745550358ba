//! `shaders/bandwidth.wgsl`: the read-once and copy yardsticks benchmarks compare kernels with.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n4: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 16);

/// The vec4s read.
pub const SRC: Binding = Binding::read("src", 1);
/// The copy, or one partial sum per thread.
pub const DST: Binding = Binding::read_write("dst", 2);

/// Threads per workgroup and vec4s per thread.
pub(crate) const WG: u64 = 64;
pub(crate) const ITEMS: u64 = 64;

pub static KERNEL: KernelSpec = KernelSpec {
    name: "bandwidth",
    entries: &[
        // One loop over its ITEMS vec4s.
        EntrySpec { name: "read_sum", bindings: &[SRC, DST], trips: LoopBound::fixed(|_| ITEMS) },
        // No loop.
        EntrySpec { name: "copy", bindings: &[SRC, DST], trips: LoopBound::fixed(|_| 0) },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("bandwidth.wgsl").into()
}
