// divergence: distances between two distributions along a row, and their gradients in the first
// (the student's).
//
// jsd: the generalised Jensen–Shannon divergence of two logit rows, student s (x) and teacher t
// (y), each softened by the temperature T: log q = log_softmax(s / T), log p = log_softmax(t / T).
//   MODE 0 (β = 0): Σ p (log p − log q)                                  forward KL(P ‖ Q)
//   MODE 1 (β = 1): Σ q (log q − log p)                                  reverse KL(Q ‖ P)
//   MODE 2:         Σ β p (log p − log m) + (1 − β) q (log q − log m),   m = β p + (1 − β) q
// log m = logaddexp(log β + log p, log(1 − β) + log q), finite wherever p or q underflow. The
// gradient in s for a unit upstream gradient of the row:
//   MODE 0: (q − p) / T
//   MODE 1: q (log q − log p − L) / T,                 L the row's loss
//   MODE 2: (1 − β) q (log q − log m − K) / T,         K = Σ q (log q − log m)
// tvd: the total variation distance of two probability rows x and y, ½ Σ |x − y|; its gradient
// ½ sign(x − y), 0 where they are equal (autograd's gradient of abs).
//
// A row whose label is ignore_index (has_labels) has loss 0 and gradient 0, and does not count
// (counted[r] = 0). The per-row buffers (labels, loss, counted, g) are bound whole and indexed by
// the global row row_base + r; x, y and dx are bound at the dispatch's rows. A NaN in either row (or a +inf logit) makes its loss and gradient NaN.
// Layout and threads per row as in rows.wgsl: row r of an (outer, cols, inner) tensor starts at
// (r / inner) * cols * inner + r % inner, its elements `inner` apart; TPR threads share a row and
// merge through a fixed tree in workgroup memory; QUADS reads contiguous rows four at a time.
// bindings: 0 uniform Params | 1 x (student) through ld_x | 2 y (teacher) through ld_y |
//           3 labels (rows) i32 | 4 loss (rows) write | 5 counted (rows) write | 6 g | 7 denom |
//           8 dx write
// numerics: max-shifted online states (prelude); log q and log p as (v − max) − log Σ.

override WG: u32 = 64u;
// More than one thread per row (TPR > 1): the rows' threads merge through a tree in workgroup
// memory. TPR itself is the uniform's `tpr`, read through tpr(), so the segment widths share one
// pipeline (each would otherwise compile on first use); without TREE it is the constant 1.
override TREE: bool = false;

// Threads per row: the uniform's `tpr` where TREE, else 1.
fn tpr() -> u32 {
    if (TREE) {
        return params.tpr;
    }
    return 1u;
}
override QUADS: bool = false;
override MODE: u32 = 2u;

struct Params {
    rows: u32,
    cols: u32,
    inner: u32,
    row_base: u32,
    ignore_index: i32,
    has_labels: u32,
    g_mode: u32,    // backward: 0 grad per row, 1 grad[0] * scale, 2 grad[0] * scale / denom[0]
    scale: f32,
    beta: f32,
    temperature: f32,
    log_beta: f32,      // log β and log(1 − β), for log m in MODE 2
    log_one_minus_beta: f32,
    tpr: u32,       // threads per row, read where TREE
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> labels: array<i32>;
@group(0) @binding(4) var<storage, read_write> loss: array<u32>;
@group(0) @binding(5) var<storage, read_write> counted: array<f32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read> denom: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<u32>;

const ABS_MASK: u32 = 0x7fffffffu;
const INF_BITS: u32 = 0x7f800000u;

var<workgroup> pair_red: array<vec4<f32>, WG>;
var<workgroup> bad_red: array<u32, WG>;

fn row_base(row: u32) -> u32 {
    return (row / params.inner) * params.cols * params.inner + row % params.inner;
}

fn row_counts(row: u32) -> bool {
    return params.has_labels == 0u || labels[params.row_base + row] != params.ignore_index;
}

fn bad4(v: vec4<f32>) -> u32 {
    let b = bitcast<vec4<u32>>(v) & vec4<u32>(ABS_MASK);
    return max(max(b.x, b.y), max(b.z, b.w));
}

// Elements c .. c + 3 of the row at `base` (QUADS), or element c in every lane.
fn load_x(base: u32, c: u32) -> vec4<f32> {
    if (QUADS) {
        return ld4_x((base + c) / 4u);
    }
    return vec4<f32>(ld_x(base + c * params.inner));
}

fn load_y(base: u32, c: u32) -> vec4<f32> {
    if (QUADS) {
        return ld4_y((base + c) / 4u);
    }
    return vec4<f32>(ld_y(base + c * params.inner));
}

// The lanes of a step that hold elements: all four over quads, the first otherwise.
fn lanes() -> vec4<bool> {
    return vec4<bool>(true, QUADS, QUADS, QUADS);
}

// The columns a thread visits start at lane·step and go TPR·step apart.
fn step() -> u32 {
    return select(1u, 4u, QUADS);
}

// The jsd row's state: the online (max, t) of s / T (xy) and of t / T (zw), and the largest
// |bits| seen (above INF_BITS: a NaN). Every thread of the workgroup calls it (barriers).
struct Pair {
    st: vec4<f32>,
    bad: u32,
}

fn merge_pair(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(lse_merge(a.xy, b.xy), lse_merge(a.zw, b.zw));
}

fn pair_state(base: u32, lane: u32, lid: u32, live: bool) -> Pair {
    var a = Pair(vec4<f32>(NEG_BIG, -1.0, NEG_BIG, -1.0), 0u);
    if (live) {
        for (var c = lane * step(); c < params.cols; c += tpr() * step()) {
            let xs = load_x(base, c);
            let ys = load_y(base, c);
            a.bad = max(a.bad, max(bad4(xs), bad4(ys)));
            let s = xs / params.temperature;
            let t = ys / params.temperature;
            if (QUADS) {
                a.st = vec4<f32>(lse_push4(a.st.xy, s), lse_push4(a.st.zw, t));
            } else {
                a.st = vec4<f32>(lse_push(a.st.xy, s.x), lse_push(a.st.zw, t.x));
            }
        }
    }
    if (TREE) {
        pair_red[lid] = a.st;
        bad_red[lid] = a.bad;
        workgroupBarrier();
        for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                pair_red[lid] = merge_pair(pair_red[lid], pair_red[lid + s]);
                bad_red[lid] = max(bad_red[lid], bad_red[lid + s]);
            }
            workgroupBarrier();
        }
        a = Pair(pair_red[lid - lane], bad_red[lid - lane]);
        workgroupBarrier();
    }
    return a;
}

fn pair_nan(a: Pair) -> bool {
    return a.bad > INF_BITS || bitcast<u32>(a.st.x) == INF_BITS || bitcast<u32>(a.st.z) == INF_BITS;
}

// The sum of `v` over the TPR threads of a row, returned to all of them. Every thread of the
// workgroup calls it.
fn row_total(v: f32, lane: u32, lid: u32) -> f32 {
    if (!TREE) {
        return v;
    }
    pair_red[lid] = vec4<f32>(v, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            pair_red[lid].x = pair_red[lid].x + pair_red[lid + s].x;
        }
        workgroupBarrier();
    }
    let total = pair_red[lid - lane].x;
    workgroupBarrier();
    return total;
}

// log q and log p of four elements (xs, ys raw) for the row state a.
struct LogProbs {
    q: vec4<f32>,
    p: vec4<f32>,
}

fn log_probs(a: Pair, xs: vec4<f32>, ys: vec4<f32>) -> LogProbs {
    let lq = (xs / params.temperature - vec4<f32>(a.st.x)) - log1p_state(a.st.y);
    let lp = (ys / params.temperature - vec4<f32>(a.st.z)) - log1p_state(a.st.w);
    return LogProbs(lq, lp);
}

// log(β p + (1 − β) q) as a log-add-exp: finite wherever the logits are.
fn log_m(l: LogProbs) -> vec4<f32> {
    let u = vec4<f32>(params.log_beta) + l.p;
    let v = vec4<f32>(params.log_one_minus_beta) + l.q;
    return max(u, v) + log1p_01v(exp(-abs(u - v)));
}

// The loss terms of four elements.
fn jsd_terms(l: LogProbs) -> vec4<f32> {
    if (MODE == 0u) {
        return exp(l.p) * (l.p - l.q);
    }
    if (MODE == 1u) {
        return exp(l.q) * (l.q - l.p);
    }
    let lm = log_m(l);
    return params.beta * exp(l.p) * (l.p - lm) + (1.0 - params.beta) * exp(l.q) * (l.q - lm);
}

// The row sum each mode's gradient needs besides the state: L (MODE 1) or K (MODE 2).
fn grad_sum_terms(l: LogProbs) -> vec4<f32> {
    if (MODE == 1u) {
        return exp(l.q) * (l.q - l.p);
    }
    return exp(l.q) * (l.q - log_m(l));
}

// The gradient of four elements per unit upstream gradient, `k` the row's sum of grad_sum_terms.
fn jsd_grad(l: LogProbs, k: f32) -> vec4<f32> {
    let q = exp(l.q);
    if (MODE == 0u) {
        return (q - exp(l.p)) / params.temperature;
    }
    if (MODE == 1u) {
        return q * ((l.q - l.p) - vec4<f32>(k)) / params.temperature;
    }
    return (1.0 - params.beta) * q * ((l.q - log_m(l)) - vec4<f32>(k)) / params.temperature;
}

// This thread's share of the row sum of `terms` (jsd_terms, or grad_sum_terms when `for_grad`).
fn jsd_share(a: Pair, base: u32, lane: u32, live: bool, for_grad: bool) -> f32 {
    var sum = 0.0;
    if (live) {
        let m = lanes();
        for (var c = lane * step(); c < params.cols; c += tpr() * step()) {
            let l = log_probs(a, load_x(base, c), load_y(base, c));
            var t: vec4<f32>;
            if (for_grad) {
                t = grad_sum_terms(l);
            } else {
                t = jsd_terms(l);
            }
            sum += dot(select(vec4<f32>(0.0), t, m), vec4<f32>(1.0));
        }
    }
    return sum;
}

fn put_loss(row: u32, counts: bool, l: f32, nan: bool) {
    loss[params.row_base + row] = select(0u, select(bitcast<u32>(l), NAN_BITS, nan), counts);
    counted[params.row_base + row] = select(0.0, 1.0, counts);
}

// The upstream gradient of row `row`, per the uniform's g_mode.
fn upstream(row: u32) -> f32 {
    if (params.g_mode == 0u) {
        return g[params.row_base + row];
    }
    if (params.g_mode == 2u) {
        return g[0] * params.scale / denom[0];
    }
    return g[0] * params.scale;
}

// Stores gradients of the elements at columns c .. (c + 3 over quads) of the row at `base`, NaN
// where `nan` holds.
fn put_grad(base: u32, c: u32, d: vec4<f32>, nan: vec4<bool>) {
    let bits = select(bitcast<vec4<u32>>(d), vec4<u32>(NAN_BITS), nan);
    if (QUADS) {
        let i = base + c;
        dx[i] = bits.x;
        dx[i + 1u] = bits.y;
        dx[i + 2u] = bits.z;
        dx[i + 3u] = bits.w;
    } else {
        dx[base + c * params.inner] = bits.x;
    }
}

@compute @workgroup_size(WG)
fn jsd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let counts = live && row_counts(row);
    let base = row_base(row);
    let a = pair_state(base, lane, lid, counts);
    let l = row_total(jsd_share(a, base, lane, counts, false), lane, lid);
    if (live && lane == 0u) {
        put_loss(row, counts, l, pair_nan(a));
    }
}

@compute @workgroup_size(WG)
fn jsd_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let counts = live && row_counts(row);
    let base = row_base(row);
    let a = pair_state(base, lane, lid, counts);
    var k = 0.0;
    if (MODE != 0u) {
        k = row_total(jsd_share(a, base, lane, counts, true), lane, lid);
    }
    if (!live) {
        return;
    }
    let nan = pair_nan(a) && counts;
    let s = select(0.0, upstream(row), counts);
    for (var c = lane * step(); c < params.cols; c += tpr() * step()) {
        var d = vec4<f32>(0.0);
        if (counts) {
            d = s * jsd_grad(log_probs(a, load_x(base, c), load_y(base, c)), k);
        }
        put_grad(base, c, d, vec4<bool>(nan));
    }
}

// This thread's share of the row's ½ Σ |x − y| and the largest |bits| it saw.
fn tvd_share(base: u32, lane: u32, live: bool) -> vec2<u32> {
    var sum = 0.0;
    var bad = 0u;
    if (live) {
        let m = lanes();
        for (var c = lane * step(); c < params.cols; c += tpr() * step()) {
            let xs = load_x(base, c);
            let ys = load_y(base, c);
            bad = max(bad, max(bad4(xs), bad4(ys)));
            sum += dot(select(vec4<f32>(0.0), abs(xs - ys), m), vec4<f32>(0.5));
        }
    }
    return vec2<u32>(bitcast<u32>(sum), bad);
}

@compute @workgroup_size(WG)
fn tvd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let counts = live && row_counts(row);
    let base = row_base(row);
    let share = tvd_share(base, lane, counts);
    let l = row_total(bitcast<f32>(share.x), lane, lid);
    // The largest |bits| over the row's threads.
    var bad = share.y;
    if (TREE) {
        bad_red[lid] = bad;
        workgroupBarrier();
        for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                bad_red[lid] = max(bad_red[lid], bad_red[lid + s]);
            }
            workgroupBarrier();
        }
        bad = bad_red[lid - lane];
    }
    if (live && lane == 0u) {
        put_loss(row, counts, l, bad > INF_BITS);
    }
}

@compute @workgroup_size(WG)
fn tvd_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    if (row >= params.rows) {
        return;
    }
    let counts = row_counts(row);
    let base = row_base(row);
    let s = select(0.0, 0.5 * upstream(row), counts);
    for (var c = lane * step(); c < params.cols; c += tpr() * step()) {
        let xs = load_x(base, c);
        let ys = load_y(base, c);
        let sign = select(vec4<f32>(0.0), select(vec4<f32>(-1.0), vec4<f32>(1.0), xs > ys), xs != ys);
        // Element-wise NaN: a NaN element's gradient is NaN, its neighbours' are not.
        let bx = bitcast<vec4<u32>>(xs) & vec4<u32>(ABS_MASK);
        let by = bitcast<vec4<u32>>(ys) & vec4<u32>(ABS_MASK);
        let nan = ((bx > vec4<u32>(INF_BITS)) | (by > vec4<u32>(INF_BITS))) & vec4<bool>(counts);
        put_grad(base, c, s * sign, nan);
    }
}

// The rows that count (label not ignore_index), one thread a row: the mean's denominator terms
// for a backward that does not visit the rows otherwise.
@compute @workgroup_size(64)
fn counted_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * 64u + lid;
    if (row < params.rows) {
        counted[params.row_base + row] = select(0.0, 1.0, row_counts(row));
    }
}
