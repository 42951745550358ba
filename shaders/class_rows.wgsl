// class_rows: the per-row target step shared by cross_entropy and nll. The including file
// provides ld_x, through which the row's value at its target is read.
//   loss[r] = w[t] * (lse - x[r, t]),  wsum[r] = w[t]      (both 0 when t == ignore_index)
// cross_entropy passes the row's log-sum-exp, nll passes 0 (its input already holds log-probs).
// A target outside [0, cols) that is not ignore_index contributes 0 and raises `status` to
// u32::MAX - (row_base + r) (atomicMax keeps the first bad row); the host reports it on read,
// and nothing is read out of bounds.
// bindings: 0 uniform Params | 2 targets (rows) i32 | 3 weight (cols) | 4 loss (rows) write |
//           5 wsum (rows) write | 6 status (1) atomic

struct Params {
    rows: u32,
    cols: u32,
    ignore_index: i32,
    has_weight: u32,
    row_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> wsum: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;

fn class_row(row: u32, base: u32, lse: f32) {
    let t = targets[row];
    var l = 0.0;
    var w = 0.0;
    if (t != params.ignore_index) {
        if (t < 0 || u32(t) >= params.cols) {
            atomicMax(&status[0], 0xffffffffu - (params.row_base + row));
        } else {
            w = 1.0;
            if (params.has_weight != 0u) {
                w = weight[u32(t)];
            }
            l = w * (lse - ld_x(base + u32(t)));
        }
    }
    loss[row] = l;
    wsum[row] = w;
}
