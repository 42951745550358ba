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

@compute @workgroup_size(WG)
fn log_softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row * params.cols;
    let st = row_state(base, params.cols, lane, lid, live);
    if (live && QUADS) {
        let lse = lse_value(st);
        for (var q = lane; q < params.cols / 4u; q += TPR) {
            let v = ld4_x(base / 4u + q) - lse;
            let i = base + 4u * q;
            y[i] = v.x;
            y[i + 1u] = v.y;
            y[i + 2u] = v.z;
            y[i + 3u] = v.w;
        }
    } else if (live) {
        let lse = lse_value(st);
        for (var c = lane; c < params.cols; c += TPR) {
            y[base + c] = ld_x(base + c) - lse;
        }
    }
}

@compute @workgroup_size(WG)
fn softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row * params.cols;
    let st = row_state(base, params.cols, lane, lid, live);
    if (live && QUADS) {
        let inv = 1.0 / st.y;
        for (var q = lane; q < params.cols / 4u; q += TPR) {
            let v = exp(ld4_x(base / 4u + q) - st.x) * inv;
            let i = base + 4u * q;
            y[i] = v.x;
            y[i + 1u] = v.y;
            y[i + 2u] = v.z;
            y[i + 3u] = v.w;
        }
    } else if (live) {
        let inv = 1.0 / st.y;
        for (var c = lane; c < params.cols; c += TPR) {
            y[base + c] = exp(ld_x(base + c) - st.x) * inv;
        }
    }
}
