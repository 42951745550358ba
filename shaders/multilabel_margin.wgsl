// multilabel_margin: PyTorch's multilabel_margin_loss over rows of C classes. Row r's targets
// are targets[r, 0 ..], class ids up to the first -1 (the rest is ignored); T_r is their set.
//   mark:    one thread per row: mask[r, c] = 1 where c is in T_r, else 0; a target outside
//            [-1, C) flags `status` (u32::MAX - its flat position) and counts as the end.
//   partial: one thread per (r, j): for the j-th target y_j (0 past the list's end),
//            part[r, j] = sum over i not in T_r of max(0, 1 - x[y_j] + x[i]) / C; the row's loss
//            is the sum over j (sum_dim), so a repeated target counts twice, as in PyTorch.
//   backward: one thread per (r, k): for k in T_r, dx = -m_k * #{i not in T_r: 1 - x[k] + x[i] > 0}
//            (m_k the times k is listed); else dx = #{j: 1 - x[y_j] + x[k] > 0}; times s_r / C,
//            s_r = g[r] (G_PER_ROW) or g[0] * scale. The hinge's gradient is 0 at 0, as PyTorch's.
// Each thread loops at most twice over its row's C classes.
// bindings: 0 uniform Params | 1 x (rows, C) | 2 targets (rows, C) i32 | 3 mask (rows, C) |
//           4 part (rows, C) write | 5 g | 6 dx (rows, C) write | 7 status

override WG: u32 = 64u;
override G_PER_ROW: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    row_base: u32, // the first row's index in the whole input, for status
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> status: array<atomic<u32>>;

// The number of listed targets of row r: up to the first -1 or out-of-range value.
fn listed(r: u32) -> u32 {
    let base = r * params.cols;
    for (var j = 0u; j < params.cols; j++) {
        let t = targets[base + j];
        if (t < 0 || u32(t) >= params.cols) {
            return j;
        }
    }
    return params.cols;
}

@compute @workgroup_size(WG)
fn mark(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = group_index(wid, nwg) * WG + lid;
    if (r >= params.rows) {
        return;
    }
    let base = r * params.cols;
    for (var c = 0u; c < params.cols; c++) {
        mask[base + c] = 0u;
    }
    for (var j = 0u; j < params.cols; j++) {
        let t = targets[base + j];
        if (t < -1 || t >= i32(params.cols)) {
            atomicMax(&status[0], 0xffffffffu - ((params.row_base + r) * params.cols + j));
            break;
        }
        if (t == -1) {
            break;
        }
        mask[base + u32(t)] = 1u;
    }
}

@compute @workgroup_size(WG)
fn partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = group_index(wid, nwg) * WG + lid;
    if (e >= params.rows * params.cols) {
        return;
    }
    let r = e / params.cols;
    let j = e % params.cols;
    let base = r * params.cols;
    if (j >= listed(r)) {
        part[e] = 0.0;
        return;
    }
    let xt = x[base + u32(targets[e])];
    var acc = 0.0;
    for (var i = 0u; i < params.cols; i++) {
        if (mask[base + i] == 0u) {
            acc += max(1.0 - xt + x[base + i], 0.0);
        }
    }
    part[e] = acc / f32(params.cols);
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = group_index(wid, nwg) * WG + lid;
    if (e >= params.rows * params.cols) {
        return;
    }
    let r = e / params.cols;
    let k = e % params.cols;
    let base = r * params.cols;
    var s: f32;
    if (G_PER_ROW) {
        s = g[r];
    } else {
        s = g[0] * params.scale;
    }
    let n = listed(r);
    let xk = x[e];
    var count = 0.0;
    if (mask[e] != 0u) {
        var open = 0.0;
        for (var i = 0u; i < params.cols; i++) {
            if (mask[base + i] == 0u && 1.0 - xk + x[base + i] > 0.0) {
                open += 1.0;
            }
        }
        var times = 0.0;
        for (var j = 0u; j < n; j++) {
            if (u32(targets[base + j]) == k) {
                times += 1.0;
            }
        }
        count = -times * open;
    } else {
        for (var j = 0u; j < n; j++) {
            if (1.0 - x[base + u32(targets[base + j])] + xk > 0.0) {
                count += 1.0;
            }
        }
    }
    dx[e] = count * s / f32(params.cols);
}
