//! `shaders/convert.wgsl`: a tensor's element type, widened to f32 or rounded to a half type.

use bytemuck::{Pod, Zeroable};

use super::source::{cached, shader};
use crate::dtype::DType;
use crate::gpu::spec::{Binding, EntrySpec, KernelSpec, LoopBound, Reads};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 16);

/// The tensor widened (any element type, read through `ld4_x`).
pub const X: Binding = Binding::staged("x", 1);
/// The result: f32 values (widen) or two halves a word (narrow).
pub const OUT: Binding = Binding::read_write("out", 2);
/// The f32 tensor rounded (narrow).
pub const SRC: Binding = Binding::read("src", 3);

/// Threads per workgroup; `widen` takes four elements a thread, `narrow` two.
pub(crate) const WG: u32 = 64;

/// How kernels name an element type in their override constants (`narrow`'s `DTYPE`, the
/// output types of kernels that store halves themselves): 0 f32, 1 f16, 2 bf16, as the
/// prelude's `half_bits` and `quad_words` read it.
pub(crate) fn dtype_code(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => 1.0,
        DType::BF16 => 2.0,
    }
}

pub static KERNEL: KernelSpec = KernelSpec {
    name: "convert",
    entries: &[
        // Four lanes a thread.
        EntrySpec { name: "widen", bindings: &[X, OUT], trips: LoopBound::fixed(|_| 4) },
        // No loop.
        EntrySpec { name: "narrow", bindings: &[SRC, OUT], trips: LoopBound::fixed(|_| 0) },
    ],
    uniform_size: size_of::<Params>(),
    source: |reads: Reads| cached(&KERNEL, reads, body),
};

fn body() -> String {
    shader!("convert.wgsl").into()
}
