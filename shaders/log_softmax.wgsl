// log_softmax and softmax over one dim of an (outer, cols, inner) view, and their gradients.
//   log_softmax: y[c] = x[c] - lse(x)        softmax: y[c] = exp(x[c] - max) / sum
//   log_softmax_backward: dx[c] = g[c] - exp(y[c]) sum(g)      (x holds y, the forward output)
//   softmax_backward:     dx[c] = y[c] (g[c] - sum(g y))
// A row holding a NaN gives NaN throughout (as PyTorch, whose max and sum then are NaN).
// bindings: 0 uniform Params | 1 x (or y) through ld_x | 2 out write | 3 g through ld_g
// numerics: max-shifted online reduction (rows.wgsl); finite for |x| < 1e30.

struct Params {
    rows: u32,
    cols: u32,
    inner: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

fn row_aux4(c: vec4<u32>, i: vec4<u32>, v: vec4<f32>, m: vec4<bool>) -> vec2<f32> {
    return vec2<f32>(0.0);
}

fn row_base(row: u32) -> u32 {
    return (row / params.inner) * params.cols * params.inner + row % params.inner;
}

fn put(i: u32, v: f32, nan: bool) {
    out[i] = select(bitcast<u32>(v), NAN_BITS, nan);
}

// Writes this thread's share of the row: x - lse (log_softmax) or exp(x - max) / sum (softmax).
fn normalize(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, soft: bool) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row_base(row);
    let a = row_state(base, params.inner, params.cols, lane, lid, live);
    let nan = row_has_nan(a);
    // out = (x - shift) for log_softmax, exp(x - shift) * scale for softmax
    let shift = select(lse_value(a.st), a.st.x, soft);
    let scale = 1.0 / a.st.y;
    if (live && QUADS) {
        for (var q = lane; q < params.cols / 4u; q += TPR) {
            var v = ld4_x(base / 4u + q) - shift;
            if (soft) {
                v = exp(v) * scale;
            }
            let i = base + 4u * q;
            put(i, v.x, nan);
            put(i + 1u, v.y, nan);
            put(i + 2u, v.z, nan);
            put(i + 3u, v.w, nan);
        }
    } else if (live) {
        for (var c = lane; c < params.cols; c += TPR) {
            let i = base + c * params.inner;
            var v = ld_x(i) - shift;
            if (soft) {
                v = exp(v) * scale;
            }
            put(i, v, nan);
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

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & ABS_MASK) > INF_BITS;
}

fn gradient(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, soft: bool) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row_base(row);
    let stride = params.inner;
    var s = 0.0;
    var nans = 0.0;
    if (live) {
        for (var c = lane; c < params.cols; c += TPR) {
            let i = base + c * stride;
            let gv = ld_g(i);
            var term = gv;
            var bad = is_nan(gv);
            if (soft) {
                let yv = ld_x(i);
                term = gv * yv;
                bad = bad || is_nan(yv);
            }
            s += select(term, 0.0, bad);
            nans += select(0.0, 1.0, bad);
        }
    }
    let total = row_sum(s, lane, lid);
    let nan = row_sum(nans, lane, lid) > 0.0;
    if (live) {
        for (var c = lane; c < params.cols; c += TPR) {
            let i = base + c * stride;
            let gv = ld_g(i);
            let yv = ld_x(i);
            var d: f32;
            if (soft) {
                d = yv * (gv - total);
            } else {
                d = gv - exp(yv) * total;
            }
            put(i, d, nan || is_nan(gv) || is_nan(yv));
        }
    }
}

@compute @workgroup_size(WG)
fn log_softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    gradient(wid, nwg, lid, false);
}

@compute @workgroup_size(WG)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    gradient(wid, nwg, lid, true);
}
