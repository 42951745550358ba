//! The kernel registry, the pipeline cache and the dispatch helpers.
//!
//! Every kernel is a WGSL file in `shaders/`, embedded at compile time behind a small prelude
//! (WGSL has no `#include`, so shared pieces are concatenated). Shapes and scalar options travel
//! in a per-dispatch uniform, so one pipeline serves every shape; `override` constants pick the
//! workgroup size and code paths, and the cache key is (kernel, entry point, overrides).

use std::collections::HashMap;
use std::fmt::Write;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::device::Device;
use crate::error::{Error, Result};

macro_rules! shader {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("../shaders/", $file)), "\n"),+)
    };
}

/// Where a kernel reads its large inputs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputPath {
    /// Storage buffers, bound at the chunk's offset (GPUs).
    Storage,
    /// rgba32float textures filled by the copy engine and read with `textureLoad`. On Mesa's
    /// software adapters a texel fetch costs a tenth of a storage-buffer load (9.9 vs 1.05 GB/s
    /// measured on lavapipe), more than paying for the copy.
    Texture,
}

/// A kernel family: one WGSL module with one or more entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelId {
    /// `y = x·Wᵀ + b`, shared-memory tiles (GPUs).
    Linear,
    /// `y = x·Wᵀ + b`, large register blocks and no barriers (software adapters).
    LinearBlocked,
    /// `linear`'s input gradient `dX = dY·W`, large register blocks, no barriers.
    LinearGradInput,
    /// `linear`'s weight gradient `dW = dYᵀ·X` and bias gradient (column sums of dY).
    LinearGradWeight,
    /// `log_softmax` and `softmax` over any dim, and their gradients.
    LogSoftmax,
    /// Fused log-softmax + NLL (class ids or probabilities, label smoothing, K-dim), its
    /// gradient, and top-k accuracy.
    CrossEntropy,
    /// NLL gather from log-probabilities, and its gradient.
    Nll,
    /// `linear` + `cross_entropy` fused without the N×V logits: split-V partials of the
    /// log-sum-exp, their fixed-order merge, and the gradient of a tile of recomputed logits.
    LinearCrossEntropy,
    /// Every elementwise loss (mse, l1, smooth_l1, huber, bce, bce_with_logits, kl_div), its
    /// gradient, and binary accuracy.
    Pointwise,
    /// Two-stage fixed-order reductions to a scalar.
    Reduce,
    /// The read-once and copy yardsticks for benchmarks.
    Bandwidth,
}

impl KernelId {
    /// Every kernel, for validation and warm-up.
    pub const ALL: [KernelId; 11] = [
        KernelId::Linear,
        KernelId::LinearBlocked,
        KernelId::LinearGradInput,
        KernelId::LinearGradWeight,
        KernelId::LogSoftmax,
        KernelId::CrossEntropy,
        KernelId::Nll,
        KernelId::LinearCrossEntropy,
        KernelId::Pointwise,
        KernelId::Reduce,
        KernelId::Bandwidth,
    ];

    /// The kernel's name: its shader file, its ops and reference modules, its tests and benches.
    pub fn label(self) -> &'static str {
        match self {
            KernelId::Linear => "linear",
            KernelId::LinearBlocked => "linear_blocked",
            KernelId::LinearGradInput => "linear_grad_input",
            KernelId::LinearGradWeight => "linear_grad_weight",
            KernelId::LogSoftmax => "log_softmax",
            KernelId::CrossEntropy => "cross_entropy",
            KernelId::Nll => "nll",
            KernelId::LinearCrossEntropy => "linear_cross_entropy",
            KernelId::Pointwise => "pointwise",
            KernelId::Reduce => "reduce",
            KernelId::Bandwidth => "bandwidth",
        }
    }

    /// The complete WGSL source (prelude and shared pieces included), reading its staged
    /// inputs from storage buffers.
    pub fn source(self) -> &'static str {
        self.source_for(InputPath::Storage)
    }

    /// The complete WGSL source with the staged inputs ([`KernelId::staged_inputs`]) read
    /// through `path`.
    pub fn source_for(self, path: InputPath) -> &'static str {
        static SOURCES: OnceLock<HashMap<(KernelId, InputPath), String>> = OnceLock::new();
        let all = SOURCES.get_or_init(|| {
            let mut map = HashMap::new();
            for id in KernelId::ALL {
                for path in [InputPath::Storage, InputPath::Texture] {
                    map.insert((id, path), id.assemble(path));
                }
            }
            map
        });
        &all[&(self, path)]
    }

    /// The inputs this kernel reads through `ld_<name>(i)` (one element) and `ld4_<name>(q)`
    /// (elements 4q .. 4q + 3) accessors, by name and binding slot:
    /// the large operands that software adapters stage in textures.
    pub fn staged_inputs(self) -> &'static [(&'static str, u32)] {
        match self {
            KernelId::LogSoftmax => &[("x", 1), ("g", 3)],
            KernelId::CrossEntropy => &[("x", 1), ("y", 7)],
            KernelId::Pointwise => &[("x", 1), ("y", 2)],
            _ => &[],
        }
    }

    fn body(self) -> String {
        match self {
            KernelId::Linear => shader!("linear.wgsl").into(),
            KernelId::LinearBlocked => linear_blocked_source(),
            KernelId::LinearGradInput => gemm_grad_source(false),
            KernelId::LinearGradWeight => gemm_grad_source(true),
            KernelId::LogSoftmax => shader!("rows.wgsl", "log_softmax.wgsl").into(),
            KernelId::CrossEntropy => shader!("rows.wgsl", "class_rows.wgsl", "cross_entropy.wgsl").into(),
            KernelId::Nll => shader!("class_rows.wgsl", "nll.wgsl").into(),
            KernelId::LinearCrossEntropy => {
                let mut s = String::from(shader!("linear_cross_entropy.wgsl"));
                for (name, (rows, cols)) in [("partials", LCE_BLOCK), ("partials_small", LCE_BLOCK_SMALL)] {
                    lce_partials_source(&mut s, name, rows, cols);
                }
                s
            }
            KernelId::Pointwise => shader!("sum.wgsl", "pointwise.wgsl").into(),
            KernelId::Reduce => shader!("sum.wgsl", "reduce.wgsl").into(),
            KernelId::Bandwidth => shader!("bandwidth.wgsl").into(),
        }
    }

    /// Prelude, the accessors of the staged inputs for `path`, then the kernel's own files.
    fn assemble(self, path: InputPath) -> String {
        let mut s = String::from(include_str!("../shaders/prelude.wgsl"));
        let staged = self.staged_inputs();
        if path == InputPath::Texture && !staged.is_empty() {
            s.push_str(
                "\n// Staged inputs live in rgba32float textures TEX_W texels wide: element i is\n\
                 // component i % 4 of texel i / 4.\noverride TEX_W: u32 = 4096u;\n",
            );
        }
        for (name, slot) in staged {
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
        s.push_str(&self.body());
        s
    }

    /// The entry points of the module.
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            KernelId::Linear | KernelId::LinearBlocked => &["linear"],
            KernelId::LinearGradInput => &["gemm"],
            KernelId::LinearGradWeight => &["gemm", "colsum"],
            KernelId::LogSoftmax => &["log_softmax", "softmax", "log_softmax_backward", "softmax_backward"],
            KernelId::CrossEntropy => {
                &["cross_entropy", "cross_entropy_backward", "accuracy", "target_weights"]
            }
            KernelId::Nll => &["nll", "nll_backward", "target_weights"],
            KernelId::LinearCrossEntropy => {
                &["target_pass", "partials", "partials_small", "fold", "tile_grad"]
            }
            KernelId::Pointwise => &["forward_none", "forward_partials", "backward"],
            KernelId::Reduce => &["partials", "finish"],
            KernelId::Bandwidth => &["read_sum", "copy"],
        }
    }
}

/// Rows and columns of y per thread in `linear_blocked` (a workgroup of 8 × 8 threads covers
/// 256 × 128, which divides the usual power-of-two sizes).
pub(crate) const BLOCK_ROWS: u32 = 32;
pub(crate) const BLOCK_COLS: u32 = 16;

/// The WGSL of `linear_blocked`: each of 64 threads (8 × 8) computes a BLOCK_ROWS × BLOCK_COLS
/// block of y held in vec4 registers, reading x and w straight from memory, with no barrier.
///
/// Software adapters pay about the same for every float they load from a storage buffer and
/// run arithmetic ~40× faster, so a GEMM there is bound by loads per FMA: a 4 × 4 block does 4
/// flops per float loaded (1.1 GFLOP/s on lavapipe), 32 × 16 does 21 (5.5 GFLOP/s). The block
/// must be written out: with loops over a private array the accumulators live in memory and the
/// rate falls to 2 GFLOP/s. WGSL has no macros, hence this generator.
fn linear_blocked_source() -> String {
    let (rows, cols) = (BLOCK_ROWS, BLOCK_COLS);
    let mut s = String::from(
        "// linear_blocked: y[m, n] = sum_k x[m, k] * w[n, k] + b[n], generated by kernels.rs.
// k is one piece of the in-features: rows of x and w are ldk apart; the first piece writes y and
// the bias, the others (accumulate) add to it.
// bindings: 0 uniform Params | 1 x (m, k) | 2 w (n, k) | 3 bias (n_base + n) | 4 y write
struct Params {
    m: u32, n: u32, k: u32, has_bias: u32, ldy: u32, n_base: u32, tiles_n: u32, accumulate: u32,
    ldk: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn store(row: u32, col: u32, v: f32) {
    if (row < params.m && col < params.n) {
        let i = row * params.ldy + params.n_base + col;
        if (params.accumulate != 0u) {
            y[i] = y[i] + v;
        } else if (params.has_bias != 0u) {
            y[i] = v + bias[params.n_base + col];
        } else {
            y[i] = v;
        }
    }
}

@compute @workgroup_size(64)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
",
    );
    register_block(
        &mut s,
        rows,
        cols,
        &BlockLoads {
            prologue: "",
            row_setup: &|i| format!("let xr{i} = min(r0 + {i}u, params.m - 1u) * params.ldk;"),
            col_setup: &|j| format!("let wr{j} = min(c0 + {j}u, params.n - 1u) * params.ldk;"),
            step_setup: "",
            a: &|r| format!("x[xr{r} + kk]"),
            b: &|j| format!("w[wr{j} + kk]"),
        },
    );
    s
}

/// How a register-blocked GEMM reads its operands: a line per row and per column of the block
/// (clamped indices), lines at the top of each k step, and the loads of A at (row r, kk) and of
/// B at (kk, column j).
struct BlockLoads<'a> {
    /// Lines after the bounds check (e.g. an early exit).
    prologue: &'a str,
    row_setup: &'a dyn Fn(u32) -> String,
    col_setup: &'a dyn Fn(u32) -> String,
    step_setup: &'a str,
    a: &'a dyn Fn(u32) -> String,
    b: &'a dyn Fn(u32) -> String,
}

/// The body of a register-blocked GEMM entry point, after `let g = group_index(..)`: each of
/// 8 × 8 threads accumulates a `rows` × `cols` block of C in vec4 registers over params.k and
/// passes every value to the module's `store(row, col, v)`. Rows and columns past the edge are
/// clamped for loading (their results are never stored).
fn register_block(s: &mut String, rows: u32, cols: u32, loads: &BlockLoads<'_>) {
    let c4 = cols / 4;
    let _ = writeln!(s, "    let r0 = (g / params.tiles_n) * {}u + (lid / 8u) * {rows}u;", 8 * rows);
    let _ = writeln!(s, "    let c0 = (g % params.tiles_n) * {}u + (lid % 8u) * {cols}u;", 8 * cols);
    s.push_str("    if (r0 >= params.m || c0 >= params.n) {\n        return;\n    }\n");
    s.push_str(loads.prologue);
    for i in 0..rows {
        let _ = writeln!(s, "    {}", (loads.row_setup)(i));
    }
    accumulate(s, rows, cols, loads, "    ");
    for r in 0..rows {
        for c in 0..c4 {
            for (j, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                let _ = writeln!(s, "    store(r0 + {r}u, c0 + {}u, acc{r}_{c}.{comp});", 4 * c + j as u32);
            }
        }
    }
    s.push_str("}\n");
}

/// The middle of a register-blocked GEMM, indented by `pad`: the column setup, then
/// `acc{r}_{c}` (vec4 accumulators of the `rows` × `cols` block) summed over params.k.
fn accumulate(s: &mut String, rows: u32, cols: u32, loads: &BlockLoads<'_>, pad: &str) {
    let c4 = cols / 4;
    for j in 0..cols {
        let _ = writeln!(s, "{pad}{}", (loads.col_setup)(j));
    }
    for r in 0..rows {
        for c in 0..c4 {
            let _ = writeln!(s, "{pad}var acc{r}_{c} = vec4<f32>(0.0);");
        }
    }
    let _ = writeln!(s, "{pad}for (var kk = 0u; kk < params.k; kk++) {{");
    for line in loads.step_setup.lines() {
        let _ = writeln!(s, "{pad}    {}", line.trim());
    }
    for c in 0..c4 {
        let j = 4 * c;
        let (b0, b1, b2, b3) = ((loads.b)(j), (loads.b)(j + 1), (loads.b)(j + 2), (loads.b)(j + 3));
        let _ = writeln!(s, "{pad}    let bv{c} = vec4<f32>({b0}, {b1}, {b2}, {b3});");
    }
    for r in 0..rows {
        let _ = writeln!(s, "{pad}    let av{r} = vec4<f32>({});", (loads.a)(r));
        for c in 0..c4 {
            let _ = writeln!(s, "{pad}    acc{r}_{c} = fma(av{r}, bv{c}, acc{r}_{c});");
        }
    }
    let _ = writeln!(s, "{pad}}}");
}

/// Rows and columns of logits per thread in linear_cross_entropy's `partials` (software
/// adapters: big blocks, few loads per FMA) and `partials_small` (GPUs: few registers).
pub(crate) const LCE_BLOCK: (u32, u32) = (16, 16);
pub(crate) const LCE_BLOCK_SMALL: (u32, u32) = (4, 8);

/// Appends linear_cross_entropy's partials entry `name`: thread (row block, slice) walks its
/// slice of the shard `cols` logits at a time, each a `rows` × `cols` register block summed over
/// k, folded row by row into a `Run` with `push_quad`, and stores one partial per row.
fn lce_partials_source(s: &mut String, name: &str, rows: u32, cols: u32) {
    let _ = write!(
        s,
        "
@compute @workgroup_size(64)
fn {name}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {{
    let tid = group_index(wid, nwg) * 64u + lid;
    let r0 = (tid / params.slices) * {rows}u;
    let slice = tid % params.slices;
    if (r0 >= params.m) {{
        return;
    }}
    let c_start = slice * params.slice_w;
    let c_end = min(c_start + params.slice_w, params.n);
"
    );
    for r in 0..rows {
        let _ = writeln!(s, "    let xr{r} = min(r0 + {r}u, params.m - 1u) * params.k;");
        let _ = writeln!(
            s,
            "    let t{r} = targets[params.row_base + min(r0 + {r}u, params.m - 1u)] - i32(params.v_base);"
        );
        let _ = writeln!(s, "    var run{r} = run_empty();");
    }
    let _ = writeln!(s, "    for (var c = c_start; c < c_end; c += {cols}u) {{");
    accumulate(
        s,
        rows,
        cols,
        &BlockLoads {
            prologue: "",
            row_setup: &|_| String::new(),
            col_setup: &|j| format!("let wr{j} = min(c + {j}u, params.n - 1u) * params.k;"),
            step_setup: "",
            a: &|r| format!("x[xr{r} + kk]"),
            b: &|j| format!("w[wr{j} + kk]"),
        },
        "        ",
    );
    for q in 0..cols / 4 {
        let c = 4 * q;
        let _ = writeln!(
            s,
            "        let ok{q} = vec4<u32>(c + {c}u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(c_end);\n        \
             let bq{q} = quad_bias(c + {c}u);\n        let wq{q} = quad_weight(c + {c}u, ok{q});"
        );
    }
    for r in 0..rows {
        for q in 0..cols / 4 {
            let _ = writeln!(
                s,
                "        run{r} = push_quad(run{r}, acc{r}_{q} + bq{q}, ok{q}, wq{q}, t{r}, i32(c + {}u));",
                4 * q
            );
        }
    }
    s.push_str("    }\n");
    for r in 0..rows {
        let _ = writeln!(
            s,
            "    if (r0 + {r}u < params.m) {{\n        store_part(r0 + {r}u, slice, run{r});\n    }}"
        );
    }
    s.push_str("}\n");
}

/// Rows and columns of C per thread in the gradient GEMMs: smaller than `linear_blocked`'s, so
/// that they compile in about a second on llvmpipe-GL, whose context lock times out after 6 s.
pub(crate) const GRAD_ROWS: u32 = 16;
pub(crate) const GRAD_COLS: u32 = 8;

/// The WGSL of `linear`'s gradient GEMMs, `C (+)= A·B` over k with B read as `b[kk·ldb + col]`
/// (row-major `(k, n)`: W for dX = dY·W, X for dW = dYᵀ·X) and A read as `a[row·lda + kk]`
/// (dY for dX) or, `a_transposed`, as `a[kk·lda + row]` (dY for dW). 8 × 8 threads of
/// GRAD_ROWS × GRAD_COLS register blocks, no barriers; `accumulate` adds
/// into C, so a sum over chunks of k runs in a fixed order. The weight-gradient module also has
/// `colsum`: `c[col] (+)= Σ_kk a[kk·lda + col]`, the bias gradient.
fn gemm_grad_source(a_transposed: bool) -> String {
    let (rows, cols) = (GRAD_ROWS, GRAD_COLS);
    let mut s = format!(
        "// linear_grad_{}: C[m, n] (+)= sum_k A(m, k) B(k, n), generated by kernels.rs.
// bindings: 0 uniform Params | 1 a | 2 b | 3 c read_write
// filter: skip the 64-wide blocks of the dY index (k for dX, rows for dW, columns for db)
// whose flags[(flag_base + index) / 64] is 0 (linear_cross_entropy's gradient filter).
struct Params {{
    m: u32, n: u32, k: u32, lda: u32, ldb: u32, ldc: u32, tiles_n: u32, accumulate: u32,
    use_flags: u32, flag_base: u32, _pad0: u32, _pad1: u32,
}}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> flags: array<u32>;

fn skipped(index: u32) -> bool {{
    return params.use_flags != 0u && flags[(params.flag_base + index) >> 6u] == 0u;
}}

fn store(row: u32, col: u32, v: f32) {{
    if (row < params.m && col < params.n) {{
        let i = row * params.ldc + col;
        if (params.accumulate != 0u) {{
            c[i] = c[i] + v;
        }} else {{
            c[i] = v;
        }}
    }}
}}

@compute @workgroup_size(64)
fn gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {{
    let g = group_index(wid, nwg);
",
        if a_transposed { "weight" } else { "input" }
    );
    let step = if a_transposed {
        "let bk = kk * params.ldb;\nlet ak = kk * params.lda;\n"
    } else {
        "if ((kk & 63u) == 0u && skipped(kk)) {\n    kk += 63u;\n    continue;\n}\nlet bk = kk * params.ldb;\n"
    };
    // dW's rows are dY's columns: a thread's GRAD_ROWS rows lie in one 64-block.
    let prologue = if a_transposed {
        format!(
            "    if (skipped(r0)) {{\n        if (params.accumulate == 0u) {{\n            \
             for (var i = 0u; i < {rows}u; i++) {{\n                for (var j = 0u; j < {cols}u; j++) {{\n                    \
             store(r0 + i, c0 + j, 0.0);\n                }}\n            }}\n        }}\n        return;\n    }}\n"
        )
    } else {
        String::new()
    };
    let a_load =
        |r: u32| if a_transposed { format!("a[ak + ar{r}]") } else { format!("a[ar{r} * params.lda + kk]") };
    register_block(
        &mut s,
        rows,
        cols,
        &BlockLoads {
            prologue: &prologue,
            row_setup: &|i| format!("let ar{i} = min(r0 + {i}u, params.m - 1u);"),
            col_setup: &|j| format!("let bc{j} = min(c0 + {j}u, params.n - 1u);"),
            step_setup: step,
            a: &a_load,
            b: &|j| format!("b[bk + bc{j}]"),
        },
    );
    if a_transposed {
        s.push_str(
            "
@compute @workgroup_size(64)
fn colsum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let col = group_index(wid, nwg) * 64u + lid;
    if (col < params.n) {
        if (skipped(col)) {
            if (params.accumulate == 0u) {
                store(0u, col, 0.0);
            }
            return;
        }
        var acc = 0.0;
        for (var kk = 0u; kk < params.k; kk++) {
            acc += a[kk * params.lda + col];
        }
        store(0u, col, acc);
    }
}
",
        );
    }
    s
}

/// Cache key: the kernel, its entry point and its override constants (as bit patterns).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    kernel: KernelId,
    path: InputPath,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    pub(crate) fn new(
        kernel: KernelId,
        path: InputPath,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Self {
        PipelineKey {
            kernel,
            path,
            entry,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        }
    }
}

/// A built compute pipeline and its bind group layout.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) label: &'static str,
    pub(crate) entry: &'static str,
}

impl Pipeline {
    /// Builds inside a validation error scope, so a bad shader is a typed error, not a panic.
    pub(crate) fn build(
        dev: &Device,
        kernel: KernelId,
        path: InputPath,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Pipeline> {
        let device = dev.wgpu_device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.label()),
            source: wgpu::ShaderSource::Wgsl(kernel.source_for(path).into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it; zero-filling it
                // costs seconds of compile time on llvmpipe-GL.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            if let Some(lost) = dev.lost_after_error() {
                return Err(lost);
            }
            return Err(Error::Shader {
                kernel: kernel.label(),
                message: crate::recording::one_line(&e.to_string()),
            });
        }
        let layout = pipeline.get_bind_group_layout(0);
        Ok(Pipeline { pipeline, layout, label: kernel.label(), entry })
    }
}

/// One binding: a buffer range or a staged texture.
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub(crate) slot: u32,
    pub(crate) res: Res<'a>,
}

#[derive(Clone, Copy)]
pub(crate) enum Res<'a> {
    /// `size: None` binds to the end of the buffer.
    Buffer {
        buffer: &'a wgpu::Buffer,
        offset: u64,
        size: Option<u64>,
    },
    Texture(&'a wgpu::TextureView),
}

impl<'a> Bind<'a> {
    /// The whole buffer.
    pub(crate) fn all(slot: u32, buffer: &'a wgpu::Buffer) -> Self {
        Bind { slot, res: Res::Buffer { buffer, offset: 0, size: None } }
    }

    /// `bytes` bytes from `offset` (at least 4, rounded up to 4).
    pub(crate) fn range(slot: u32, buffer: &'a wgpu::Buffer, offset: u64, bytes: u64) -> Self {
        Bind { slot, res: Res::Buffer { buffer, offset, size: Some(bytes.max(4).div_ceil(4) * 4) } }
    }
}

/// A kernel input: a buffer range bound directly, or a copy of it staged in a texture (which
/// returns to the device's pool when the input is dropped, after the dispatch is recorded;
/// commands run in recording order, so the next user's copy lands after this one's reads).
pub(crate) enum Input<'a> {
    Buffer(Bind<'a>),
    Texture(u32, Staged),
}

pub(crate) struct Staged {
    texture: Option<wgpu::Texture>,
    view: wgpu::TextureView,
    dev: Device,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(t) = self.texture.take() {
            let bytes = crate::pool::texture_bytes(&t);
            if let Err(t) = crate::recording::defer_texture(&self.dev, t, bytes) {
                let mut pool = crate::device::lock(&self.dev.inner.pool);
                pool.hand_back(bytes);
                pool.give_texture(t);
            }
        }
    }
}

impl Input<'_> {
    pub(crate) fn bind(&self) -> Bind<'_> {
        match self {
            Input::Buffer(b) => *b,
            Input::Texture(slot, staged) => Bind { slot: *slot, res: Res::Texture(&staged.view) },
        }
    }
}

/// Whether `buffer` can be staged through textures for `elements` f32 values: the copy reads
/// whole 16-byte texels, so the buffer must extend to the next multiple of 16 bytes.
pub(crate) fn stageable(buffer: &wgpu::Buffer, elements: usize) -> bool {
    buffer.size() >= (elements as u64 * 4).div_ceil(16) * 16
}

/// The input at `slot`: `elements` f32 values of `buffer` from byte `offset` (a multiple of 16
/// when staged), either bound in place or copied into a texture TEX_W texels wide inside the
/// pending encoder.
pub(crate) fn input<'a>(
    dev: &Device,
    path: InputPath,
    slot: u32,
    buffer: &'a wgpu::Buffer,
    offset: u64,
    elements: u64,
) -> Input<'a> {
    if path == InputPath::Storage {
        return Input::Buffer(Bind::range(slot, buffer, offset, elements * 4));
    }
    let width = dev.texture_width() as u64;
    let texels = elements.div_ceil(4).max(1);
    let (full_rows, rest) = (texels / width, texels % width);
    let height = full_rows + (rest > 0) as u64;
    let pooled = crate::recording::take_released_texture(dev, width as u32, height as u32)
        .or_else(|| crate::device::lock(&dev.inner.pool).take_texture(width as u32, height as u32));
    let texture = pooled.unwrap_or_else(|| {
        dev.wgpu_device().create_texture(&wgpu::TextureDescriptor {
            label: Some("wgpu-loss staged input"),
            size: wgpu::Extent3d { width: width as u32, height: height as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    });
    let copy = |enc: &mut wgpu::CommandEncoder, from: u64, y: u64, w: u64, h: u64| {
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: from,
                    bytes_per_row: Some((width * 16) as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: y as u32, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d { width: w as u32, height: h as u32, depth_or_array_layers: 1 },
        );
    };
    crate::recording::mark_staged(dev);
    dev.record(|enc| {
        if full_rows > 0 {
            copy(enc, offset, 0, width, full_rows);
        }
        if rest > 0 {
            copy(enc, offset + full_rows * width * 16, full_rows, rest, 1);
        }
    });
    crate::device::lock(&dev.inner.pool).lend(crate::pool::texture_bytes(&texture));
    let view = texture.create_view(&Default::default());
    Input::Texture(slot, Staged { texture: Some(texture), view, dev: dev.clone() })
}

/// Workgroup grid for `groups` workgroups: x up to the adapter's per-dimension limit, the rest
/// in y. Kernels rebuild the linear index with `group_index` and ignore the excess.
pub(crate) fn grid(dev: &Device, groups: u64) -> Result<(u32, u32)> {
    let max = dev.limits().max_compute_workgroups_per_dimension as u64;
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x).max(1);
    if y > max {
        return Err(Error::limit("workgroups in one dispatch", groups, max * max));
    }
    Ok((x as u32, y as u32))
}

/// Records one dispatch of `pipeline` over `groups` workgroups, with `params` as the uniform at
/// binding 0 and `binds` as storage bindings.
///
/// `trips` is the most loop iterations, summed over all its loops, that one invocation runs for
/// this dispatch (each kernel's planning states it). A dispatch past the device's loop budget
/// is refused with [`Error::Limit`]: on Mesa's software adapters it would stop early and
/// silently leave its results unfinished. Planners split their work before it comes to that.
pub(crate) fn dispatch(
    dev: &Device,
    pipeline: &Arc<Pipeline>,
    params: &[u8],
    binds: &[Bind<'_>],
    groups: u64,
    trips: u64,
) -> Result<()> {
    if groups == 0 {
        return Ok(());
    }
    if trips > dev.loop_budget() {
        return Err(Error::limit(
            format!("`{}` ({}): loop iterations of one shader invocation", pipeline.label, pipeline.entry),
            trips,
            dev.loop_budget(),
        ));
    }
    let (gx, gy) = grid(dev, groups)?;
    let device = dev.wgpu_device();
    let size = params.len().div_ceil(16).max(1) as u64 * 16;
    // Written through a mapping at creation rather than `create_buffer_init`, whose failure
    // on a lost device is a panic: here it is an error.
    let uniform = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-loss params"),
        size,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: true,
    });
    {
        let mut view = uniform.get_mapped_range_mut(..).map_err(|e| {
            dev.lost_after_error().unwrap_or_else(|| Error::Wgpu(format!("{}: {e}", pipeline.label)))
        })?;
        let mut contents = params.to_vec();
        contents.resize(size as usize, 0);
        view.copy_from_slice(&contents);
    }
    uniform.unmap();
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    for b in binds {
        let resource = match b.res {
            Res::Buffer { buffer, offset, size } => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: size.and_then(wgpu::BufferSize::new),
            }),
            Res::Texture(view) => wgpu::BindingResource::TextureView(view),
        };
        entries.push(wgpu::BindGroupEntry { binding: b.slot, resource });
    }
    // A binding wgpu refuses (a destroyed buffer, say) fails this dispatch before anything of it
    // is recorded.
    let scopes = crate::recording::Scopes::push(device);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(pipeline.label),
        layout: &pipeline.layout,
        entries: &entries,
    });
    if let Some(message) = scopes.pop() {
        return Err(dev.lost_after_error().unwrap_or(Error::Wgpu(message)));
    }
    dev.record(|enc| {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(pipeline.label),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
    });
    Ok(())
}

pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Splits `rows` rows into chunks such that, for every buffer bound per chunk (`row_bytes[i]`
/// bytes per row), the chunk's binding fits the device's binding limit and starts at an offset
/// aligned to `min_storage_buffer_offset_alignment`. Chunk lengths are multiples of `multiple`
/// (so that partitions used by reductions do not depend on the chunking).
pub(crate) fn row_chunks(
    dev: &Device,
    what: &'static str,
    rows: usize,
    row_bytes: &[u64],
    multiple: u64,
) -> Result<Vec<Range<usize>>> {
    let align = dev.limits().min_storage_buffer_offset_alignment as u64;
    let limit = dev.binding_limit();
    let mut step = multiple.max(1);
    let mut max_rows = u64::MAX;
    for &rb in row_bytes {
        if rb == 0 {
            continue;
        }
        let need = align / gcd(rb, align);
        step = step / gcd(step, need) * need;
        max_rows = max_rows.min(limit / rb);
    }
    if rows as u64 <= max_rows {
        return Ok(std::iter::once(0..rows).collect());
    }
    let chunk = max_rows / step * step;
    if chunk == 0 {
        let widest = row_bytes.iter().copied().max().unwrap_or(0);
        return Err(Error::limit(what, widest * step, limit));
    }
    let chunk = chunk as usize;
    Ok((0..rows).step_by(chunk).map(|r| r..(r + chunk).min(rows)).collect())
}

/// The size in bytes of the uniform each kernel's host side packs, for the layout test that
/// compares it with the WGSL `Params` struct.
#[doc(hidden)]
pub fn uniform_size(kernel: KernelId) -> usize {
    use crate::ops;
    match kernel {
        KernelId::Linear | KernelId::LinearBlocked => size_of::<ops::linear::Params>(),
        KernelId::LinearGradInput | KernelId::LinearGradWeight => size_of::<ops::linear::GradParams>(),
        KernelId::LogSoftmax => size_of::<ops::log_softmax::Params>(),
        KernelId::CrossEntropy | KernelId::Nll => size_of::<ops::cross_entropy::Params>(),
        KernelId::LinearCrossEntropy => size_of::<ops::linear_cross_entropy::Params>(),
        KernelId::Pointwise => size_of::<ops::pointwise::Params>(),
        KernelId::Reduce => size_of::<ops::reduce::Params>(),
        KernelId::Bandwidth => size_of::<ops::bandwidth::Params>(),
    }
}
