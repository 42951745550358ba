// log_softmax and softmax over one dim of an (outer, cols, inner) view, and their gradients.
//   log_softmax: y[c] = (x[c] - max) - log(sum)   softmax: y[c] = exp(x[c] - max) / sum
// (x - max is exact where the row's values are close, as at large magnitudes; x - (max + log sum)
// would round at the magnitude of the max first.)
//   log_softmax_backward: dx[c] = g[c] - exp(y[c]) sum(g)      (x holds y, the forward output)
//   softmax_backward:     dx[c] = y[c] (g[c] - sum(g y))
// A row holding a NaN gives NaN throughout (as PyTorch, whose max and sum then are NaN).
// bindings: 0 uniform Params | 1 x (or y) through ld_x | 2 out write | 3 g through ld_g
// numerics: max-shifted online reduction (rows.wgsl); finite for |x| < 1e30.

struct Params {
    rows: u32,
    cols: u32,
    inner: u32,
    tpr: u32,       // threads per row, read where TREE (rows.wgsl)
}

// The output's element type (0 f32, 1 f16, 2 bf16): halves only with QUADS, where a thread owns
// whole words.
override OUT_DTYPE: u32 = 0u;

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

// Elements i .. i + 3 of a quad row (i a multiple of 4), NaN where `nan`, in OUT_DTYPE: four
// f32 words or two words of halves, stored without a loop (a loop per quad would count against
// the software adapters' loop budget).
fn put4(i: u32, v: vec4<f32>, nan: vec4<bool>) {
    let w = quad_words(i, select(bitcast<vec4<u32>>(v), vec4<u32>(NAN_BITS), nan), OUT_DTYPE, i + 4u);
    out[w.first] = w.words.x;
    out[w.first + 1u] = w.words.y;
    if (OUT_DTYPE == 0u) {
        out[w.first + 2u] = w.words.z;
        out[w.first + 3u] = w.words.w;
    }
}

// Writes this thread's share of the row: (x - max) - log(sum) (log_softmax) or
// exp(x - max) / sum (softmax).
fn normalize(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, soft: bool) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let base = row_base(row);
    let a = row_state(base, params.inner, params.cols, lane, lid, live);
    let nan = row_has_nan(a);
    let shift = a.st.x;
    let log_sum = log1p_state(a.st.y);
    let scale = 1.0 / (a.st.y + 1.0);
    if (live && QUADS) {
        for (var q = lane; q < params.cols / 4u; q += tpr()) {
            var v = ld4_x(base / 4u + q) - shift;
            if (soft) {
                v = exp(v) * scale;
            } else {
                v = v - log_sum;
            }
            put4(base + 4u * q, v, vec4<bool>(nan));
        }
    } else if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let i = base + c * params.inner;
            var v = ld_x(i) - shift;
            if (soft) {
                v = exp(v) * scale;
            } else {
                v = v - log_sum;
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

fn nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(ABS_MASK)) > vec4<u32>(INF_BITS);
}

// The terms of the row sum (g, or g y for softmax) of four elements, NaN ones zeroed and counted.
fn sum_terms(gv: vec4<f32>, yv: vec4<f32>, soft: bool) -> vec2<f32> {
    var term = gv;
    var bad = nan4(gv);
    if (soft) {
        term = gv * yv;
        bad = bad | nan4(yv);
    }
    let kept = select(term, vec4<f32>(0.0), bad);
    let count = select(vec4<f32>(0.0), vec4<f32>(1.0), bad);
    return vec2<f32>((kept.x + kept.y) + (kept.z + kept.w), dot(count, vec4<f32>(1.0)));
}

fn grad_of(gv: vec4<f32>, yv: vec4<f32>, total: f32, soft: bool) -> vec4<f32> {
    if (soft) {
        return yv * (gv - total);
    }
    return gv - exp(yv) * total;
}

fn gradient(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, soft: bool) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let base = row_base(row);
    let stride = params.inner;
    var acc = vec2<f32>(0.0);
    if (live && QUADS) {
        for (var q = lane; q < params.cols / 4u; q += tpr()) {
            acc += sum_terms(ld4_g(base / 4u + q), ld4_x(base / 4u + q), soft);
        }
    } else if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let i = base + c * stride;
            acc += sum_terms(vec4<f32>(ld_g(i), 0.0, 0.0, 0.0), vec4<f32>(ld_x(i), 0.0, 0.0, 0.0), soft);
        }
    }
    let total = row_sum(acc.x, lane, lid);
    let nan = row_sum(acc.y, lane, lid) > 0.0;
    if (live && QUADS) {
        for (var q = lane; q < params.cols / 4u; q += tpr()) {
            let gv = ld4_g(base / 4u + q);
            let yv = ld4_x(base / 4u + q);
            put4(base + 4u * q, grad_of(gv, yv, total, soft), nan4(gv) | nan4(yv) | vec4<bool>(nan));
        }
    } else if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let i = base + c * stride;
            let gv = ld_g(i);
            let yv = ld_x(i);
            put(i, grad_of(vec4<f32>(gv), vec4<f32>(yv), total, soft).x, nan || is_nan(gv) || is_nan(yv));
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
