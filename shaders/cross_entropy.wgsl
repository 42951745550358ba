// cross_entropy: fused log-softmax + NLL over (rows, cols) logits with class-id targets, one pass
// over the logits; log-probabilities are never written.
//   loss[r] = w[t] * (lse(x[r, :]) - x[r, t]),  wsum[r] = w[t]    (both 0 when t == ignore_index)
// A target outside [0, cols) that is not ignore_index contributes 0 and raises `status` to
// u32::MAX - (row_base + r) (atomicMax keeps the first bad row); the host reports it on read.
// bindings: 0 uniform Params | 1 x (rows, cols) through ld_x | 2 targets (rows) i32 | 3 weight (cols) |
//           4 loss (rows) write | 5 wsum (rows) write | 6 status (1) atomic
// numerics: max-shifted online reduction (rows.wgsl); finite for |x| < 1e30.

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

@compute @workgroup_size(WG)
fn cross_entropy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + lid / TPR;
    let lane = lid % TPR;
    let live = row < params.rows;
    let base = row * params.cols;
    let st = row_state(base, params.cols, lane, lid, live);
    if (live && lane == 0u) {
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
                l = w * (lse_value(st) - ld_x(base + u32(t)));
            }
        }
        loss[row] = l;
        wsum[row] = w;
    }
}
