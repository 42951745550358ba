// multilabel_margin: PyTorch's multilabel_margin_loss over rows of C classes. Row r's targets
// are targets[r, 0 ..], class ids up to the first -1 (the rest is ignored, but every id must be in
// [-1, C), as PyTorch checks); n_r is their count, T_r their set.
//   check:    one thread per element: an id outside [-1, C) flags `status` (u32::MAX - its flat
//             position, atomicMax keeps the first); a -1 at column j offers C - j to stop[r]
//             (atomicMax), so that n_r = C - stop[r] (stop cleared to 0: no -1, n_r = C).
//   mark:     one thread per element (r, j) with j < n_r: mask[r, t_j] += 1 (atomicAdd), so the
//             mask counts how many times each class is listed.
//   partial:  one thread per (r, j): for j < n_r, part[r, j] = sum over i not in T_r of
//             max(0, 1 - x[t_j] + x[i]) / C (0 for j >= n_r); the row's loss is the sum over j
//             (sum_dim), so a repeated target counts twice, as in PyTorch.
//   backward: one thread per (r, k): for k in T_r, dx = -m_k * #{i not in T_r: 1 - x[k] + x[i] > 0}
//             (m_k = mask[r, k]); else dx = #{j < n_r: 1 - x[t_j] + x[k] > 0}; times s_r / C,
//             s_r = g[r] (G_PER_ROW) or g[0] * scale. The hinge's gradient is 0 at 0, as PyTorch's.
// partial and backward loop over i (or j) in [begin, end) only: a row longer than the loop budget
// runs in pieces, each adding its sums (its counts, exact in f32) to what the previous pieces
// left in `part` (`dx`), in order; the first piece starts from 0, the last divides by C (and
// scales the gradient).
// bindings: 0 uniform Params | 1 x (rows, C) | 2 targets (rows, C) i32 | 3 mask (rows, C) atomic |
//           4 stop (rows) atomic | 5 part (rows, C) | 6 g | 7 dx (rows, C) | 8 status

override WG: u32 = 64u;
override G_PER_ROW: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    row_base: u32, // the first row's index in the whole input, for status
    scale: f32,
    begin: u32,    // this piece's range of i (or j)
    end: u32,
    first: u32,    // 1 for the first piece (start from 0), else 0
    last: u32,     // 1 for the last piece (finish)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> mask: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> stop: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * WG + lid;
}

// The number of listed targets of row r (after `check`).
fn listed(r: u32) -> u32 {
    return params.cols - atomicLoad(&stop[r]);
}

fn listed_class(e: u32) -> bool {
    let t = targets[e];
    return t >= 0 && t < i32(params.cols);
}

@compute @workgroup_size(WG)
fn check(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = element(wid, nwg, lid);
    if (e >= params.rows * params.cols) {
        return;
    }
    let t = targets[e];
    if (t < -1 || t >= i32(params.cols)) {
        atomicMax(&status[0], 0xffffffffu - (params.row_base * params.cols + e));
    }
    if (t == -1) {
        atomicMax(&stop[e / params.cols], params.cols - e % params.cols);
    }
}

@compute @workgroup_size(WG)
fn mark(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = element(wid, nwg, lid);
    if (e >= params.rows * params.cols) {
        return;
    }
    let r = e / params.cols;
    if (e % params.cols < listed(r) && listed_class(e)) {
        atomicAdd(&mask[r * params.cols + u32(targets[e])], 1u);
    }
}

@compute @workgroup_size(WG)
fn partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = element(wid, nwg, lid);
    if (e >= params.rows * params.cols) {
        return;
    }
    let r = e / params.cols;
    let base = r * params.cols;
    var acc = select(part[e], 0.0, params.first != 0u);
    if (e - base < listed(r) && listed_class(e)) {
        let xt = x[base + u32(targets[e])];
        // Blocked: 64 terms into a block sum, then into the total (a long sum rounds less).
        var block = 0.0;
        for (var i = params.begin; i < params.end; i++) {
            if (atomicLoad(&mask[base + i]) == 0u) {
                block += max(1.0 - xt + x[base + i], 0.0);
            }
            if ((i - params.begin) % 64u == 63u) {
                acc += block;
                block = 0.0;
            }
        }
        acc += block;
    }
    if (params.last != 0u) {
        acc = acc / f32(params.cols);
    }
    part[e] = acc;
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = element(wid, nwg, lid);
    if (e >= params.rows * params.cols) {
        return;
    }
    let r = e / params.cols;
    let base = r * params.cols;
    let times = atomicLoad(&mask[e]);
    let xk = x[e];
    var count = select(dx[e], 0.0, params.first != 0u);
    // One loop for both kinds of class (a branch inside, not two loops in two branches: lanes
    // that diverge would run both, and the loop budget counts every iteration they run). A
    // listed class loops over the piece, another only over the piece's listed targets.
    let listed_end = listed(r);
    let stop = select(min(params.end, listed_end), params.end, times != 0u);
    for (var i = params.begin; i < stop; i++) {
        if (times != 0u) {
            // k is listed: the classes i that are not, whose hinge against k is open.
            if (atomicLoad(&mask[base + i]) == 0u && 1.0 - xk + x[base + i] > 0.0) {
                count += 1.0;
            }
        } else if (i < listed_end && listed_class(base + i)) {
            // k is not: the listed targets t_i whose hinge against k is open.
            if (1.0 - x[base + u32(targets[base + i])] + xk > 0.0) {
                count += 1.0;
            }
        }
    }
    if (params.last != 0u) {
        var s: f32;
        if (G_PER_ROW) {
            s = g[r];
        } else {
            s = g[0] * params.scale;
        }
        count = select(count, -f32(times) * count, times != 0u) * s / f32(params.cols);
    }
    dx[e] = count;
}
