// log_softmax and softmax over the last dim of a (rows, cols) view.
//   log_softmax: y[r, c] = x[r, c] - lse(x[r, :])        softmax: y[r, c] = exp(x[r, c] - max) / sum
// bindings: 0 uniform Params | 1 x (rows, cols) read through ld_x | 2 y (rows, cols) write
// numerics: max-shifted online reduction (rows.wgsl); finite for |x| < 1e30.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Writes this thread's share of the row: x - lse (log_softmax) or exp(x - max) / sum (softmax).
fn normalize(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, soft: bool) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row * params.cols;
    let st = row_state(base, params.cols, lane, lid, live);
    // out = (x - shift) for log_softmax, exp(x - shift) * scale for softmax
    let shift = select(lse_value(st), st.x, soft);
    let scale = 1.0 / st.y;
    if (live && QUADS) {
        for (var q = lane; q < params.cols / 4u; q += TPR) {
            var v = ld4_x(base / 4u + q) - shift;
            if (soft) {
                v = exp(v) * scale;
            }
            let i = base + 4u * q;
            y[i] = v.x;
            y[i + 1u] = v.y;
            y[i + 2u] = v.z;
            y[i + 3u] = v.w;
        }
    } else if (live) {
        for (var c = lane; c < params.cols; c += TPR) {
            var v = ld_x(base + c) - shift;
            if (soft) {
                v = exp(v) * scale;
            }
            y[base + c] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn log_softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    normalize(wid, nwg, lid, false);
}

@compute @workgroup_size(WG)
fn softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    normalize(wid, nwg, lid, true);
}
