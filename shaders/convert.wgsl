// convert: a tensor's element type. Halves are stored two to a u32 (element 2k in the low 16
// bits of word k); see src/dtype.rs.
//
//   widen:  out[i] = the f32 value of element i of x (read through ld4_x, any element type),
//           four elements a thread; the f32's bits are written as they come, NaN payloads kept.
//   narrow: out[k] = elements 2k and 2k + 1 of `src` (f32 bits) rounded to DTYPE (1: f16,
//           2: bf16) by the prelude's half_bits.
// bindings: 0 uniform Params | 1 x (staged) | 2 out | 3 src

override WG: u32 = 64u;
override DTYPE: u32 = 1u;

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<u32>;

@compute @workgroup_size(WG)
fn widen(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = group_index(wid, nwg) * WG + lid;
    if (4u * q >= params.n) {
        return;
    }
    let v = bitcast<vec4<u32>>(ld4_x(q));
    for (var j = 0u; j < 4u; j++) {
        if (4u * q + j < params.n) {
            out[4u * q + j] = v[j];
        }
    }
}

@compute @workgroup_size(WG)
fn narrow(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let k = group_index(wid, nwg) * WG + lid;
    if (2u * k >= params.n) {
        return;
    }
    let lo = half_bits(src[2u * k], DTYPE);
    var hi = 0u;
    if (2u * k + 1u < params.n) {
        hi = half_bits(src[2u * k + 1u], DTYPE);
    }
    out[k] = lo | (hi << 16u);
}
