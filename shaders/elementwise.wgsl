// elementwise: the two entry points of every pointwise loss. The loss's own file (concatenated
// before this one) declares Params (with n and part_base), `out`, and fn loss_at(i) -> f32.
//   forward_none:     out[i] = loss_at(i)                         (reduction none)
//   forward_partials: out[part_base + g] = sum of loss_at over workgroup g's chunk (sum.wgsl),
//                     finished by reduce.wgsl; the per-element losses are never written.

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
    let s = tree_sum(vec2<f32>(acc, 0.0), lid);
    if (lid == 0u) {
        out[params.part_base + g] = s.x;
    }
}
