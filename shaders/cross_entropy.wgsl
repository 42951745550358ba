// cross_entropy: fused log-softmax + NLL over (rows, cols) logits with class-id targets, one pass
// over the logits (rows.wgsl), then the target step (class_rows.wgsl); log-probabilities are
// never written.
// bindings: 1 x (rows, cols) through ld_x, the rest as in class_rows.wgsl
// numerics: max-shifted online reduction; finite for |x| < 1e30.

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
        class_row(row, base, lse_value(st));
    }
}
