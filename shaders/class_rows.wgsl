// class_rows: the per-row target step shared by cross_entropy and nll, and the target pass that
// their backward kernels use. The including file provides ld_x, through which the row's value at
// its target is read.
//   loss[r] = w[t] * (lse - x[r, t]),  wsum[r] = w[t]      (both 0 when t == ignore_index)
// with label smoothing eps (SMOOTH): (1 - eps) times that + eps / C * sum_c w[c] (lse - x[r, c]).
// cross_entropy passes the row's log-sum-exp, nll passes 0 (its input already holds log-probs).
// A target outside [0, cols) that is not ignore_index contributes 0 and raises `status` to
// u32::MAX - (row_base + r) (atomicMax keeps the first bad row); the host reports it on read,
// and nothing is read out of bounds. Losses are written as f32 bits (NaN rows as NAN_BITS).
// Row r of an (outer, C, inner) input starts at (r / inner) * C * inner + r % inner, stride inner.
// bindings: 0 uniform Params | 2 targets (rows) i32 | 3 weight (cols) | 4 loss (rows) write |
//           5 wsum (rows) write | 6 status (1) atomic

override SMOOTH: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    ignore_index: i32,
    has_weight: u32,
    row_base: u32,
    inner: u32,
    smoothing: f32,
    g_mode: u32,    // backward: 0 grad per row, 1 grad[0] * scale, 2 grad[0] * scale / denom[0]
    scale: f32,
    top_k: u32,
    tpr: u32,       // threads per row, read where TREE (rows.wgsl)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<u32>;
@group(0) @binding(5) var<storage, read_write> wsum: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;

fn row_base(row: u32) -> u32 {
    return (row / params.inner) * params.cols * params.inner + row % params.inner;
}

fn class_weight(c: u32) -> f32 {
    if (params.has_weight != 0u) {
        return weight[c];
    }
    return 1.0;
}

// The row's target if it counts, -1 if ignored or out of range (the latter flagged in status).
fn checked_target(row: u32) -> i32 {
    let t = targets[row];
    if (t == params.ignore_index) {
        return -1;
    }
    if (t < 0 || u32(t) >= params.cols) {
        atomicMax(&status[0], 0xffffffffu - (params.row_base + row));
        return -1;
    }
    return t;
}

// `aux` = (sum_c w[c] x[c], sum_c w[c]) when SMOOTH; `nan`: the row holds a NaN.
// The row's loss w[t]·(log sum − (x[t] − max)) from its online state (max, log sum): x[t] − max
// is exact where the row's values are close, so large magnitudes cost no digits.
// With label smoothing, `aux` = (Σ w·(x − x0), Σ w) over the row, x0 its first element, and the
// smoothing term Σ w·(lse − x) = Σw·((max − x0) + log sum) − Σ w·(x − x0).
fn class_row(row: u32, base: u32, m: f32, log_sum: f32, x0: f32, aux: vec2<f32>, nan: bool) {
    let t = checked_target(row);
    var l = 0.0;
    var w = 0.0;
    var bad = false;
    if (t >= 0) {
        w = class_weight(u32(t));
        let xt = ld_x(base + u32(t) * params.inner);
        l = w * (log_sum - (xt - m));
        if (SMOOTH) {
            let eps = params.smoothing;
            l = (1.0 - eps) * l + eps / f32(params.cols) * (((m - x0) + log_sum) * aux.y - aux.x);
        }
        bad = nan || (bitcast<u32>(xt) & 0x7fffffffu) > 0x7f800000u;
    }
    loss[row] = select(bitcast<u32>(l), NAN_BITS, bad);
    wsum[row] = w;
}

// The target pass of the backward kernels: checks every target and writes w[t] (0 for ignored
// rows), whose sum is the weighted mean's denominator.
@compute @workgroup_size(64)
fn target_weights(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * 64u + lid;
    if (row < params.rows) {
        let t = checked_target(row);
        wsum[row] = select(0.0, class_weight(u32(max(t, 0))), t >= 0);
    }
}
