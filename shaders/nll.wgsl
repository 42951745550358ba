// nll: negative log-likelihood gather over (rows, cols) log-probabilities, one thread per row.
//   loss[r] = -w[t] * logp[r, t],  wsum[r] = w[t]    (both 0 when t == ignore_index)
// Bad targets are flagged in `status` exactly as in cross_entropy.wgsl.
// bindings: 0 uniform Params | 1 logp (rows, cols) | 2 targets (rows) i32 | 3 weight (cols) |
//           4 loss (rows) write | 5 wsum (rows) write | 6 status (1) atomic

override WG: u32 = 64u;

struct Params {
    rows: u32,
    cols: u32,
    ignore_index: i32,
    has_weight: u32,
    row_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logp: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> wsum: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;

@compute @workgroup_size(WG)
fn nll(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let t = targets[row];
    var l = 0.0;
    var w = 0.0;
    if (t != params.ignore_index) {
        if (t < 0 || u32(t) >= params.cols) {
            atomicMax(&status[0], 0xffffffffu - (params.row_base + row));
        } else {
            w = 1.0;
            if (params.has_weight != 0u) {
                w = weight[u32(t)];
            }
            l = -w * logp[row * params.cols + u32(t)];
        }
    }
    loss[row] = l;
    wsum[row] = w;
}
