// elementwise: the two entry points of every pointwise loss. The loss's own file (concatenated
// before this one) declares Params (with n and part_base), `out`, and fn loss_at(i) -> f32.
//   forward_none:     out[i] = loss_at(i)                         (reduction none)
//   forward_partials: out[(part_base + g) * WG + lid] = this thread's sum of loss_at over its
//                     elements of workgroup g's chunk (the partition of reduce.wgsl's partials,
//                     finished by its `finish`); the per-element losses are never written.

@compute @workgroup_size(WG)
fn forward_none(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < params.n) {
        out[i] = loss_at(i);
    }
}

@compute @workgroup_size(WG)
fn forward_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let base = g * WG * ITEMS;
    var acc = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = base + k * WG + lid;
        if (i < params.n) {
            acc += loss_at(i);
        }
    }
    out[(params.part_base + g) * WG + lid] = acc;
}
