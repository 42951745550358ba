//! A kernel's complete WGSL: the prelude, the accessors of its staged inputs for the way they
//! are read (path and element type), then its own files, assembled once per (kernel, reads) and
//! kept for the process.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use crate::dtype::DType;
use crate::gpu::spec::{Binding, InputPath, KernelSpec, Reads};

/// Concatenates shader files of `shaders/`.
macro_rules! shader {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("../../shaders/", $file)), "\n"),+)
    };
}
pub(crate) use shader;

/// The source of `kernel` for `reads`, its own part written by `body`; assembled on first use.
pub(crate) fn cached(kernel: &'static KernelSpec, reads: Reads, body: fn() -> String) -> &'static str {
    static SOURCES: OnceLock<Mutex<HashMap<(&'static str, Reads), &'static str>>> = OnceLock::new();
    let sources = SOURCES.get_or_init(Mutex::default);
    let mut sources = sources.lock().unwrap_or_else(|p| p.into_inner());
    // A few variants per kernel (paths × element types in use), each assembled once: kept for
    // the life of the process.
    sources
        .entry((kernel.name, reads))
        .or_insert_with(|| Box::leak(assemble(kernel, reads, &body()).into_boxed_str()))
}

/// Prelude, the accessors of the staged inputs for `reads`, then `body`.
fn assemble(kernel: &KernelSpec, reads: Reads, body: &str) -> String {
    let mut s = String::from(include_str!("../../shaders/prelude.wgsl"));
    let staged = kernel.staged();
    if reads.path == InputPath::Texture && !staged.is_empty() {
        s.push_str(
            "\n// Staged inputs live in textures TEX_W texels wide: rgba32float texel t holds f32\n\
             // elements 4t .. 4t + 3, rgba32uint texel t holds half elements 8t .. 8t + 7.\n\
             override TEX_W: u32 = 4096u;\n",
        );
    }
    for b in staged {
        let _ = writeln!(s, "{}", accessors(&b, reads.path, reads.dtype(&b)));
    }
    s.push('\n');
    s.push_str(body);
    s
}

/// The declaration of the staged input `b` and its `ld_<name>(i)` (element i, as f32) and
/// `ld4_<name>(q)` (elements 4q .. 4q + 3) accessors.
fn accessors(b: &Binding, path: InputPath, dtype: DType) -> String {
    let (name, slot) = (b.name, b.slot);
    // Two halves of a word as f32: element 2k in the low bits of word k.
    let pair = match dtype {
        DType::F32 => "",
        DType::F16 => "unpack2x16float",
        DType::BF16 => "bf16_pair",
    };
    match (path, dtype) {
        (InputPath::Storage, DType::F32) => format!(
            "@group(0) @binding({slot}) var<storage, read> {name}: array<f32>;\n\
             fn ld_{name}(i: u32) -> f32 {{ return {name}[i]; }}\n\
             fn ld4_{name}(q: u32) -> vec4<f32> {{\n    let i = 4u * q;\n    \
             return vec4<f32>({name}[i], {name}[i + 1u], {name}[i + 2u], {name}[i + 3u]);\n}}"
        ),
        (InputPath::Storage, _) => format!(
            "@group(0) @binding({slot}) var<storage, read> {name}: array<u32>;\n\
             fn ld_{name}(i: u32) -> f32 {{ return {pair}({name}[i >> 1u])[i & 1u]; }}\n\
             fn ld4_{name}(q: u32) -> vec4<f32> {{\n    \
             return vec4<f32>({pair}({name}[2u * q]), {pair}({name}[2u * q + 1u]));\n}}"
        ),
        (InputPath::Texture, DType::F32) => format!(
            "@group(0) @binding({slot}) var {name}_tex: texture_storage_2d<rgba32float, read>;\n\
             fn ld_{name}(i: u32) -> f32 {{\n    let t = i >> 2u;\n    \
             return textureLoad({name}_tex, vec2<u32>(t % TEX_W, t / TEX_W))[i & 3u];\n}}\n\
             fn ld4_{name}(q: u32) -> vec4<f32> {{\n    \
             return textureLoad({name}_tex, vec2<u32>(q % TEX_W, q / TEX_W));\n}}"
        ),
        (InputPath::Texture, _) => format!(
            "@group(0) @binding({slot}) var {name}_tex: texture_storage_2d<rgba32uint, read>;\n\
             fn ld_{name}(i: u32) -> f32 {{\n    let t = i >> 3u;\n    \
             let w = textureLoad({name}_tex, vec2<u32>(t % TEX_W, t / TEX_W))[(i >> 1u) & 3u];\n    \
             return {pair}(w)[i & 1u];\n}}\n\
             fn ld4_{name}(q: u32) -> vec4<f32> {{\n    let t = q >> 1u;\n    \
             let v = textureLoad({name}_tex, vec2<u32>(t % TEX_W, t / TEX_W));\n    \
             let h = select(v.xy, v.zw, (q & 1u) == 1u);\n    \
             return vec4<f32>({pair}(h.x), {pair}(h.y));\n}}"
        ),
    }
}
