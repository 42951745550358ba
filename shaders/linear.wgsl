// linear: y[m, n] = sum_k x[m, k] * w[n, k] + b[n]   (W stored [out, in] as in PyTorch: an "NT" GEMM)
// A 16 x 16 workgroup computes a 64 x 64 tile of y, each thread a 4 x 4 block held in registers.
// This variant reads its operands straight from memory with no workgroup barriers: on software
// adapters every barrier is a round of coroutine switches, and the CPU's caches do the tiling.
// Rows and columns past the edge are clamped for loads and masked for stores (any shape works).
// y may be a column slice of a wider matrix: y[m * ldy + n_base + n].
// bindings: 0 uniform Params | 1 x (m, k) | 2 w (n, k) | 3 bias (n_base + n) | 4 y write

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    ldy: u32,
    n_base: u32,
    tiles_n: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn store_row(row: u32, c0: u32, acc: vec4<f32>) {
    if (row >= params.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + j;
        if (col < params.n) {
            var v = acc[j];
            if (params.has_bias != 0u) {
                v += bias[params.n_base + col];
            }
            y[row * params.ldy + params.n_base + col] = v;
        }
    }
}

@compute @workgroup_size(16, 16)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) l: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    let r0 = (g / params.tiles_n) * 64u + l.y * 4u;
    let c0 = (g % params.tiles_n) * 64u + l.x * 4u;
    if (r0 >= params.m || c0 >= params.n) {
        return;
    }
    let k = params.k;
    let xr0 = r0 * k;
    let xr1 = min(r0 + 1u, params.m - 1u) * k;
    let xr2 = min(r0 + 2u, params.m - 1u) * k;
    let xr3 = min(r0 + 3u, params.m - 1u) * k;
    let wr0 = c0 * k;
    let wr1 = min(c0 + 1u, params.n - 1u) * k;
    let wr2 = min(c0 + 2u, params.n - 1u) * k;
    let wr3 = min(c0 + 3u, params.n - 1u) * k;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k; kk++) {
        let wv = vec4<f32>(w[wr0 + kk], w[wr1 + kk], w[wr2 + kk], w[wr3 + kk]);
        acc0 = fma(vec4<f32>(x[xr0 + kk]), wv, acc0);
        acc1 = fma(vec4<f32>(x[xr1 + kk]), wv, acc1);
        acc2 = fma(vec4<f32>(x[xr2 + kk]), wv, acc2);
        acc3 = fma(vec4<f32>(x[xr3 + kk]), wv, acc3);
    }
    store_row(r0, c0, acc0);
    store_row(r0 + 1u, c0, acc1);
    store_row(r0 + 2u, c0, acc2);
    store_row(r0 + 3u, c0, acc3);
}
