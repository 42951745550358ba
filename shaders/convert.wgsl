// convert: a tensor's element type. Halves are stored two to a u32 (element 2k in the low 16
// bits of word k); see src/dtype.rs.
//
//   widen:  out[i] = the f32 value of element i of x (read through ld4_x, any element type),
//           four elements a thread; the f32's bits are written as they come, NaN payloads kept.
//   narrow: out[k] = elements 2k and 2k + 1 of `src` (f32 bits) rounded to DTYPE (1: f16,
//           2: bf16), nearest with ties to even, in integer arithmetic so that subnormals,
//           infinities and NaN convert the same on every adapter, whatever its float modes.
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

// f32 bits to bf16 bits: the top half, rounded to nearest even; NaN stays a (quiet) NaN.
fn to_bf16(b: u32) -> u32 {
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// f32 bits to f16 bits, rounded to nearest even: 65520 and above overflow to infinity, below
// 2^-14 the result is subnormal (a multiple of 2^-24), at 2^-25 and below it is zero.
fn to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u | ((a >> 13u) & 0x1ffu);
    }
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        // Rebias the exponent (127 - 15 = 112) and round the 13 dropped mantissa bits.
        let r = a - 0x38000000u;
        return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    if (a <= 0x33000000u) {
        return sign;
    }
    // a = m 2^(e - 150) with the 24-bit significand m: in units of 2^-24 that is m >> (126 - e).
    let e = a >> 23u;
    let m = (a & 0x7fffffu) | 0x800000u;
    let s = 126u - e;
    let q = m >> s;
    let rest = m & ((1u << s) - 1u);
    let half = 1u << (s - 1u);
    let up = rest > half || (rest == half && (q & 1u) == 1u);
    return sign | (q + select(0u, 1u, up));
}

fn to_half(b: u32) -> u32 {
    if (DTYPE == 2u) {
        return to_bf16(b);
    }
    return to_f16(b);
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
    let lo = to_half(src[2u * k]);
    var hi = 0u;
    if (2u * k + 1u < params.n) {
        hi = to_half(src[2u * k + 1u]);
    }
    out[k] = lo | (hi << 16u);
}
