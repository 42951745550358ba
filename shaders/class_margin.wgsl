// class_margin: the class-margin losses over rows of C classes (the last dim), each row spread over
// TPR threads (row_tree.wgsl): lane l folds classes l, l + TPR, ..., and the lanes' sums merge in
// a fixed tree. LOSS (an override) picks the loss:
//   MULTI_MARGIN:           loss[r] = sum over i != t of w[t] * max(0, margin - x[t] + x[i])^P / C,
//                           t = targets[r] (P = 1 or 2); a target outside [0, C) flags `status`
//                           (u32::MAX - row, atomicMax keeps the first) and gives 0.
//   MULTILABEL_SOFT_MARGIN: loss[r] = sum over c of w[c] * (max(x, 0) - x y + log(1 + e^-|x|)) / C
//                           with y = y[r, c] (a stable -(y log s(x) + (1 - y) log s(-x))).
//   backward: dx[r, c] = d loss[r] / d x[r, c] * s_r, s_r = g[r] (G_PER_ROW) or g[0] * scale;
//             multi_margin's dx[r, t] is minus the sum of the row's others, merged over lanes.
// Where the hinge is 0 exactly the gradient is 0, as PyTorch's. NaN: a NaN in a row makes its loss
// NaN (written as a bit pattern); kernels do not rely on NaN arithmetic (ARCHITECTURE.md).
// Each thread loops once over its ceil(C / TPR) classes, then merges in log2(TPR) steps.
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
    tpr: u32,       // threads per row, read where TREE (row_tree.wgsl)
    _pad0: u32,
    _pad1: u32,
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
    let at = row_slot(wid, nwg, lid);
    let row = at.x;
    let lane = at.y;
    let live = row < params.rows;
    let base = row * params.cols;
    // (the lane's sum, its NaN count)
    var acc = vec2<f32>(0.0);
    var t = -1;
    if (live && LOSS == MULTI_MARGIN) {
        t = checked_target(row);
        if (t >= 0) {
            let xt = x[base + u32(t)];
            acc.y = f32(is_nan(xt));
            var sum = blocked();
            for (var c = lane; c < params.cols; c += tpr()) {
                let v = x[base + c];
                acc.y += f32(is_nan(v));
                let h = hinge(params.margin - xt + select(v, 0.0, is_nan(v))).x;
                blocked_add(&sum, vec4<f32>(select(h, 0.0, c == u32(t)), 0.0, 0.0, 0.0));
            }
            acc.x = blocked_sum(sum).x;
        }
    } else if (live) {
        var sum = blocked();
        for (var c = lane; c < params.cols; c += tpr()) {
            let v = x[base + c];
            let yv = y[base + c];
            let bad = is_nan(v) | is_nan(yv);
            acc.y += f32(bad);
            let l = max(v, 0.0) - v * yv + log1p_exp_neg_abs(v);
            blocked_add(&sum, vec4<f32>(select(class_weight(c) * l, 0.0, bad), 0.0, 0.0, 0.0));
        }
        acc.x = blocked_sum(sum).x;
    }
    let sums = row_sum4(vec4<f32>(acc, 0.0, 0.0), lane, lid);
    if (!live || lane != 0u) {
        return;
    }
    var total = sums.x;
    if (LOSS == MULTI_MARGIN) {
        if (t < 0) {
            loss[row] = 0u;
            return;
        }
        total *= class_weight(u32(t));
    }
    loss[row] = select(bitcast<u32>(total / f32(params.cols)), NAN_BITS, sums.y > 0.0);
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = row_slot(wid, nwg, lid);
    let row = at.x;
    let lane = at.y;
    let live = row < params.rows;
    let base = row * params.cols;
    var s = 0.0;
    if (live) {
        if (G_PER_ROW) {
            s = g[row];
        } else {
            s = g[0] * params.scale;
        }
        s = s / f32(params.cols);
    }
    // multi_margin: minus the sum of this lane's other classes' gradients, for dx[r, t].
    var dt = 0.0;
    var t = -1;
    if (live && LOSS == MULTI_MARGIN) {
        // One loop for rows with a target and rows without (gradient 0): two loops in two
        // branches would both run where rows diverge, past the loop budget planned.
        t = checked_target(row);
        let tu = u32(max(t, 0));
        let xt = x[base + tu];
        let st = s * class_weight(tu);
        var sum = blocked();
        for (var c = lane; c < params.cols; c += tpr()) {
            // dx[r, t] is lane 0's, written after the merge (never by two invocations).
            if (t < 0) {
                dx[base + c] = 0u;
            } else if (c != tu) {
                let d = hinge(params.margin - xt + x[base + c]).y * st;
                dx[base + c] = bitcast<u32>(d);
                blocked_add(&sum, vec4<f32>(-d, 0.0, 0.0, 0.0));
            }
        }
        dt = blocked_sum(sum).x;
    } else if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let d = class_weight(c) * (sigmoid(x[base + c]) - y[base + c]) * s;
            dx[base + c] = bitcast<u32>(d);
        }
    }
    let total = row_sum4(vec4<f32>(dt, 0.0, 0.0, 0.0), lane, lid).x;
    if (live && lane == 0u && LOSS == MULTI_MARGIN && t >= 0) {
        dx[base + u32(t)] = bitcast<u32>(total);
    }
}
