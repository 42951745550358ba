// elementwise: the two entry points of every pointwise loss, over groups of four elements (one
// texel of a staged input, one vec4 of a storage buffer). The loss's own file (concatenated
// before this one) declares Params (with n and part_base), `out`, and fn loss4(q) -> vec4<f32>,
// the losses of elements 4q .. 4q + 3 (values past n are computed and ignored).
//   forward_none:     out[i] = loss of element i                     (reduction none)
//   forward_partials: out[(part_base + g) * WG + lid] = this thread's sum over quads
//                     g * WG * ITEMS + k * WG + lid, k = 0..ITEMS, in order (a fixed partition of
//                     4 * WG * ITEMS elements per workgroup), finished by reduce.wgsl's `finish`;
//                     the per-element losses are never written.

@compute @workgroup_size(WG)
fn forward_none(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = group_index(wid, nwg) * WG + lid;
    let i = 4u * q;
    if (i < params.n) {
        let l = loss4(q);
        for (var j = 0u; j < 4u; j++) {
            if (i + j < params.n) {
                out[i + j] = l[j];
            }
        }
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
        let q = base + k * WG + lid;
        let i = 4u * q;
        if (i < params.n) {
            let keep = vec4<f32>(vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(params.n));
            let l = loss4(q) * keep;
            acc += (l.x + l.y) + (l.z + l.w);
        }
    }
    out[(params.part_base + g) * WG + lid] = acc;
}
