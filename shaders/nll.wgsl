// nll: negative log-likelihood gather over (rows, cols) log-probabilities, one thread per row:
// the target step of class_rows.wgsl with lse = 0, i.e. loss[r] = -w[t] * logp[r, t].
// bindings: 1 logp (rows, cols), the rest as in class_rows.wgsl

override WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> logp: array<f32>;

fn ld_x(i: u32) -> f32 {
    return logp[i];
}

@compute @workgroup_size(WG)
fn nll(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row < params.rows) {
        class_row(row, row * params.cols, 0.0);
    }
}
