// class_margin: the class-margin losses over rows of C classes (the last dim), one thread per row.
// LOSS (an override) picks the loss:
//   MULTI_MARGIN:           loss[r] = sum over i != t of w[t] * max(0, margin - x[t] + x[i])^P / C,
//                           t = targets[r] (P = 1 or 2); a target outside [0, C) flags `status`
//                           (u32::MAX - row, atomicMax keeps the first) and gives 0.
//   MULTILABEL_SOFT_MARGIN: loss[r] = sum over c of w[c] * (max(x, 0) - x y + log(1 + e^-|x|)) / C
//                           with y = y[r, c] (a stable -(y log s(x) + (1 - y) log s(-x))).
//   backward: dx[r, c] = d loss[r] / d x[r, c] * s_r, s_r = g[r] (G_PER_ROW) or g[0] * scale.
// Where the hinge is 0 exactly the gradient is 0, as PyTorch's. NaN: a NaN in a row makes its loss
// NaN (written as a bit pattern); kernels do not rely on NaN arithmetic (ARCHITECTURE.md).
// Each thread loops once over its row's C classes.
// bindings: 0 uniform Params | 1 x (rows, C) | 2 targets (rows) i32 | 3 y (rows, C) | 4 weight (C)
//           | 5 loss (rows) write | 6 g | 7 dx (rows, C) write | 8 status (1) atomic

override WG: u32 = 64u;
override LOSS: u32 = 0u;
override P: u32 = 1u;
override HAS_WEIGHT: bool = false;
override G_PER_ROW: bool = false;

const MULTI_MARGIN: u32 = 0u;
const MULTILABEL_SOFT_MARGIN: u32 = 1u;

struct Params {
    rows: u32,
    cols: u32,
    row_base: u32, // the first row's index in the whole input, for status
    margin: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<u32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<u32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return weight[c];
    }
    return 1.0;
}

// The row's target, or -1 (flagged in status) when outside [0, C).
fn checked_target(row: u32) -> i32 {
    let t = targets[row];
    if (t < 0 || u32(t) >= params.cols) {
        atomicMax(&status[0], 0xffffffffu - (params.row_base + row));
        return -1;
    }
    return t;
}

// The hinge's value and its derivative in z (both 0 where z <= 0).
fn hinge(z: f32) -> vec2<f32> {
    if (z <= 0.0) {
        return vec2<f32>(0.0);
    }
    if (P == 2u) {
        return vec2<f32>(z * z, 2.0 * z);
    }
    return vec2<f32>(z, 1.0);
}

fn log1p_exp_neg_abs(v: f32) -> f32 {
    return log1p_01(exp(-abs(v)));
}

fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var acc = 0.0;
    var nan = false;
    if (LOSS == MULTI_MARGIN) {
        let t = checked_target(row);
        if (t < 0) {
            loss[row] = 0u;
            return;
        }
        let xt = x[base + u32(t)];
        nan = is_nan(xt);
        for (var c = 0u; c < params.cols; c++) {
            let v = x[base + c];
            nan = nan | is_nan(v);
            if (c != u32(t)) {
                acc += hinge(params.margin - xt + select(v, 0.0, is_nan(v))).x;
            }
        }
        acc *= class_weight(u32(t));
    } else {
        for (var c = 0u; c < params.cols; c++) {
            let v = x[base + c];
            let t = y[base + c];
            nan = nan | is_nan(v) | is_nan(t);
            let l = max(v, 0.0) - v * t + log1p_exp_neg_abs(v);
            acc += select(class_weight(c) * l, 0.0, is_nan(v) | is_nan(t));
        }
    }
    loss[row] = select(bitcast<u32>(acc / f32(params.cols)), NAN_BITS, nan);
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var s: f32;
    if (G_PER_ROW) {
        s = g[row];
    } else {
        s = g[0] * params.scale;
    }
    s = s / f32(params.cols);
    if (LOSS == MULTI_MARGIN) {
        let t = checked_target(row);
        if (t < 0) {
            for (var c = 0u; c < params.cols; c++) {
                dx[base + c] = 0u;
            }
            return;
        }
        let xt = x[base + u32(t)];
        let st = s * class_weight(u32(t));
        var dt = 0.0;
        for (var c = 0u; c < params.cols; c++) {
            if (c != u32(t)) {
                let d = hinge(params.margin - xt + x[base + c]).y * st;
                dx[base + c] = bitcast<u32>(d);
                dt -= d;
            }
        }
        dx[base + u32(t)] = bitcast<u32>(dt);
    } else {
        for (var c = 0u; c < params.cols; c++) {
            let d = class_weight(c) * (sigmoid(x[base + c]) - y[base + c]) * s;
            dx[base + c] = bitcast<u32>(d);
        }
    }
}
