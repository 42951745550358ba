// linear: y[m, n] = sum_k x[m, k] * w[n, k] + b[n]   (W stored [out, in] as in PyTorch: an "NT" GEMM)
// The GPU variant: a 16 x 16 workgroup computes a 64 x 64 tile of y, each thread a 4 x 4 block in
// registers. K advances in steps of 16: the workgroup stages x[64, 16] and w[64, 16] in workgroup
// memory (2 x 4 KiB, K-major so the inner loop reads rows of 4 contiguous values), then every
// thread accumulates 16 rank-1 updates. Loads past the edges read 0 and stores are masked, so any
// shape works. y may be a column slice of a wider matrix: y[m * ldy + n_base + n].
// k may be one piece of the in-features (rows of x and W are ldk apart, bound from the piece's
// first column): the first piece writes y and the bias, the others (accumulate) add to it, in
// order. The host keeps each piece within the software adapters' loop budget.
// (Software adapters use linear_blocked, generated in kernels.rs: no barriers, bigger blocks.)
// bindings: 0 uniform Params | 1 x (m, k) | 2 w (n, k) | 3 bias (n_base + n) | 4 y write

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    ldy: u32,
    n_base: u32,
    tiles_n: u32,
    accumulate: u32,
    ldk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// x and w (f32 or half) are declared with their ld_x / ld_w accessors (kernels/source.rs).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> xs: array<array<f32, TILE>, BK>;
var<workgroup> ws: array<array<f32, TILE>, BK>;

fn store_row(row: u32, c0: u32, acc: vec4<f32>) {
    if (row >= params.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + j;
        if (col < params.n) {
            let i = row * params.ldy + params.n_base + col;
            if (params.accumulate != 0u) {
                y[i] = y[i] + acc[j];
            } else if (params.has_bias != 0u) {
                y[i] = acc[j] + bias[params.n_base + col];
            } else {
                y[i] = acc[j];
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn linear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) l: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let row_base = (g / params.tiles_n) * TILE;
    let col_base = (g % params.tiles_n) * TILE;
    // Uniform across the workgroup (it depends on g only): the excess of a 2-D grid leaves here.
    if (row_base >= params.m) {
        return;
    }
    let k = params.k;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k; k0 += BK) {
        // 64 x 16 values of each operand, 4 per thread; adjacent threads read adjacent k.
        for (var i = 0u; i < 4u; i++) {
            let e = lid + i * 256u;
            let r = e / BK;
            let kk = e % BK;
            let gk = k0 + kk;
            var xv = 0.0;
            if (row_base + r < params.m && gk < k) {
                xv = ld_x((row_base + r) * params.ldk + gk);
            }
            xs[kk][r] = xv;
            var wv = 0.0;
            if (col_base + r < params.n && gk < k) {
                wv = ld_w((col_base + r) * params.ldk + gk);
            }
            ws[kk][r] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = vec4<f32>(xs[kk][l.y * 4u], xs[kk][l.y * 4u + 1u], xs[kk][l.y * 4u + 2u], xs[kk][l.y * 4u + 3u]);
            let b = vec4<f32>(ws[kk][l.x * 4u], ws[kk][l.x * 4u + 1u], ws[kk][l.x * 4u + 2u], ws[kk][l.x * 4u + 3u]);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let r0 = row_base + l.y * 4u;
    let c0 = col_base + l.x * 4u;
    store_row(r0, c0, acc0);
    store_row(r0 + 1u, c0, acc1);
    store_row(r0 + 2u, c0, acc2);
    store_row(r0 + 3u, c0, acc3);
}
