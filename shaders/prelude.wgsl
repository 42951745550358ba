// prelude: constants and helpers shared by every kernel (concatenated in front of each file).
//
// Numerics contract (ARCHITECTURE.md): kernels never produce or test for inf/NaN in float arithmetic,
// because WGSL lets implementations assume they never occur. A finite sentinel stands for -inf,
// masks are explicit, and NaN results (a mean over nothing) are written as integer bit patterns.

const NEG_BIG: f32 = -1.0e30;      // finite stand-in for -inf in running maxima
const NAN_BITS: u32 = 0x7fc00000u; // quiet NaN, stored through a u32 view

// The linear index of this workgroup in a grid split over x and y (x <= 65535).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// log(1 + z) for z in [0, 1]: 2 atanh(s) with s = z / (2 + z) in [0, 1/3], odd series in s.
// About 3 ulp; the naive log(1 + z) loses all relative accuracy for small z.
fn log1p_01(z: f32) -> f32 {
    let s = z / (2.0 + z);
    let t = s * s;
    var p = 1.0 / 15.0;
    p = fma(p, t, 1.0 / 13.0);
    p = fma(p, t, 1.0 / 11.0);
    p = fma(p, t, 1.0 / 9.0);
    p = fma(p, t, 1.0 / 7.0);
    p = fma(p, t, 1.0 / 5.0);
    p = fma(p, t, 1.0 / 3.0);
    p = fma(p, t, 1.0);
    return 2.0 * s * p;
}

// log1p_01 on four values at once.
fn log1p_01v(z: vec4<f32>) -> vec4<f32> {
    let s = z / (2.0 + z);
    let t = s * s;
    var p = vec4<f32>(1.0 / 15.0);
    p = fma(p, t, vec4<f32>(1.0 / 13.0));
    p = fma(p, t, vec4<f32>(1.0 / 11.0));
    p = fma(p, t, vec4<f32>(1.0 / 9.0));
    p = fma(p, t, vec4<f32>(1.0 / 7.0));
    p = fma(p, t, vec4<f32>(1.0 / 5.0));
    p = fma(p, t, vec4<f32>(1.0 / 3.0));
    p = fma(p, t, vec4<f32>(1.0));
    return 2.0 * s * p;
}

// exp(u) - 1 for |u| < 1/2 by its Taylor series in nested form (degree 11: under 1e-10
// relative), exp(u) - 1 beyond, where nothing cancels. p - 1 for a probability p near 1 (a
// confident row's dominant class) is expm1(x - lse): exp(x - lse) - 1 would keep only the
// digits of p's rounding near 1.
fn expm1(u: f32) -> f32 {
    return expm1v(vec4<f32>(u)).x;
}

// expm1 on four values at once.
fn expm1v(u: vec4<f32>) -> vec4<f32> {
    var p = 1.0 + u / 11.0;
    p = 1.0 + u / 10.0 * p;
    p = 1.0 + u / 9.0 * p;
    p = 1.0 + u / 8.0 * p;
    p = 1.0 + u / 7.0 * p;
    p = 1.0 + u / 6.0 * p;
    p = 1.0 + u / 5.0 * p;
    p = 1.0 + u / 4.0 * p;
    p = 1.0 + u / 3.0 * p;
    p = 1.0 + u / 2.0 * p;
    return select(u * p, exp(u) - 1.0, abs(u) >= vec4<f32>(0.5));
}

// softplus(x) = log(1 + exp(x)), finite for every finite x.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_01(exp(-abs(x)));
}

// Online state of a row: (max, t) with t = the sum of exp(v - max) over every element but one
// maximal one, whose term is exactly 1 and is kept out, so that log sum = log1p(t) keeps its
// digits when one value dominates the row (t tiny: a confident row's loss). (NEG_BIG, -1) is the
// empty state.
fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let a_top = a.x >= b.x;
    let hi = select(b, a, a_top);
    let lo = select(a, b, a_top);
    return vec2<f32>(hi.x, hi.y + (lo.y + 1.0) * exp(lo.x - hi.x));
}

// Folds four values into a state with one rescale (five exps for four values). Where a value
// is the new max, the first lane holding it is left out (its term is 1) and the state's own terms
// join the others; otherwise the state's max stays the one left out.
fn lse_push4(st: vec2<f32>, v: vec4<f32>) -> vec2<f32> {
    let vm = max(max(v.x, v.y), max(v.z, v.w));
    let m = max(st.x, vm);
    let e = exp(v - vec4<f32>(m));
    let moved = vm > st.x;
    let top = v == vec4<f32>(vm);
    let first = top & !vec4<bool>(false, top.x, top.x || top.y, top.x || top.y || top.z);
    let others = select(e, vec4<f32>(0.0), first & vec4<bool>(moved));
    let carried = select(st.y, (st.y + 1.0) * exp(st.x - m), moved);
    return vec2<f32>(m, carried + ((others.x + others.y) + (others.z + others.w)));
}

fn lse_push(st: vec2<f32>, v: f32) -> vec2<f32> {
    return lse_merge(st, vec2<f32>(v, 0.0));
}

// log(1 + t) for t >= -1: the series of log1p_01 on [0, 1], log(1 + t) above (no cancellation
// there).
fn log1p_state(t: f32) -> f32 {
    return select(log(1.0 + t), log1p_01(t), t >= 0.0 && t <= 1.0);
}

// log-sum-exp of a non-empty state.
fn lse_value(st: vec2<f32>) -> f32 {
    return st.x + log1p_state(st.y);
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

// f32 bits to the bits of the half type `dtype` (1: f16, 2: bf16), nearest with ties to even,
// in integer arithmetic so that subnormals, infinities and NaN convert the same on every
// adapter, whatever its float modes. Kernels that write a half output use it as they store.
fn half_bits(b: u32, dtype: u32) -> u32 {
    if (dtype == 2u) {
        return to_bf16(b);
    }
    return to_f16(b);
}

// Four results (f32 bits) of elements 4q .. 4q + 3 as the two words of halves of type `dtype`
// that hold them (element 2k in the low 16 bits of word k).
fn half_words(b: vec4<u32>, dtype: u32) -> vec2<u32> {
    return vec2<u32>(
        half_bits(b.x, dtype) | (half_bits(b.y, dtype) << 16u),
        half_bits(b.z, dtype) | (half_bits(b.w, dtype) << 16u),
    );
}

// How results b (f32 bits) of elements i .. i + 3 of an n-element output (i a multiple of 4)
// are stored in its element type `dtype` (0: f32): `count` words from word `first`. Halves
// fill whole words (the word past an odd n's last element is padding), so no two threads
// write one word.
struct QuadWords {
    first: u32,
    count: u32,
    words: vec4<u32>,
}

fn quad_words(i: u32, b: vec4<u32>, dtype: u32, n: u32) -> QuadWords {
    let live = min(4u, n - i);
    if (dtype == 0u) {
        return QuadWords(i, live, b);
    }
    return QuadWords(i / 2u, (live + 1u) / 2u, vec4<u32>(half_words(b, dtype), 0u, 0u));
}

// The two bf16 halves of a word as f32 (element 2k in the low bits of word k): a bf16 is the
// top 16 bits of an f32, so widening is a shift and exact.
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
