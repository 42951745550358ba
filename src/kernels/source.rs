//! A kernel's complete WGSL: the prelude, the accessors of its staged inputs for the input path,
//! then its own files, assembled once per (kernel, path) and kept for the process.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use crate::gpu::spec::{InputPath, KernelSpec};

/// Concatenates shader files of `shaders/`.
macro_rules! shader {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("../../shaders/", $file)), "\n"),+)
    };
}
pub(crate) use shader;

/// The source of `kernel` for `path`, its own part written by `body`; assembled on first use.
pub(crate) fn cached(kernel: &'static KernelSpec, path: InputPath, body: fn() -> String) -> &'static str {
    static SOURCES: OnceLock<Mutex<HashMap<(&'static str, InputPath), &'static str>>> = OnceLock::new();
    let sources = SOURCES.get_or_init(Mutex::default);
    let mut sources = sources.lock().unwrap_or_else(|p| p.into_inner());
    // Two kernels per input path, each assembled once: kept for the life of the process.
    sources
        .entry((kernel.name, path))
        .or_insert_with(|| Box::leak(assemble(kernel, path, &body()).into_boxed_str()))
}

/// Prelude, the accessors of the staged inputs for `path`, then `body`.
fn assemble(kernel: &KernelSpec, path: InputPath, body: &str) -> String {
    let mut s = String::from(include_str!("../../shaders/prelude.wgsl"));
    let staged = kernel.staged();
    if path == InputPath::Texture && !staged.is_empty() {
        s.push_str(
            "\n// Staged inputs live in rgba32float textures TEX_W texels wide: element i is\n\
             // component i % 4 of texel i / 4.\noverride TEX_W: u32 = 4096u;\n",
        );
    }
    for b in staged {
        let (name, slot) = (b.name, b.slot);
        let _ = match path {
            InputPath::Storage => writeln!(
                s,
                "@group(0) @binding({slot}) var<storage, read> {name}: array<f32>;\n\
                 fn ld_{name}(i: u32) -> f32 {{ return {name}[i]; }}\n\
                 fn ld4_{name}(q: u32) -> vec4<f32> {{\n    let i = 4u * q;\n    \
                 return vec4<f32>({name}[i], {name}[i + 1u], {name}[i + 2u], {name}[i + 3u]);\n}}"
            ),
            InputPath::Texture => writeln!(
                s,
                "@group(0) @binding({slot}) var {name}_tex: texture_2d<f32>;\n\
                 fn ld_{name}(i: u32) -> f32 {{\n    let t = i >> 2u;\n    \
                 return textureLoad({name}_tex, vec2<u32>(t % TEX_W, t / TEX_W), 0)[i & 3u];\n}}\n\
                 fn ld4_{name}(q: u32) -> vec4<f32> {{\n    \
                 return textureLoad({name}_tex, vec2<u32>(q % TEX_W, q / TEX_W), 0);\n}}"
            ),
        };
    }
    s.push('\n');
    s.push_str(body);
    s
}
