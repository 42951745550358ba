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

// The two bf16 halves of a word as f32 (element 2k in the low bits of word k): a bf16 is the
// top 16 bits of an f32, so widening is a shift and exact.
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
