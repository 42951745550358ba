// bandwidth: the adapter's own yardsticks, measured next to every benchmark.
//   read_sum: reads every vec4 of `src` once and sums it; each thread writes its partial sum
//             (1/ITEMS of the input's size), so the kernel is bound by reading.
//   copy:     dst[i] = src[i] with vec4 loads and stores.
// bindings: 0 uniform Params | 1 src (n4 vec4) | 2 dst write

override WG: u32 = 64u;
override ITEMS: u32 = 64u;

struct Params {
    n4: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn read_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let base = g * WG * ITEMS;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < ITEMS; k++) {
        let i = base + k * WG + lid;
        if (i < params.n4) {
            acc += src[i];
        }
    }
    dst[g * WG + lid] = acc;
}

@compute @workgroup_size(WG)
fn copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < params.n4) {
        dst[i] = src[i];
    }
}
