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

// softplus(x) = log(1 + exp(x)), finite for every finite x.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_01(exp(-abs(x)));
}

// Online (max, sum of exp(v - max)) state of a row; (NEG_BIG, 0) is the empty state.
fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// Folds four values into a state with one rescale (five exps for four values, not eight).
fn lse_push4(st: vec2<f32>, v: vec4<f32>) -> vec2<f32> {
    let m = max(st.x, max(max(v.x, v.y), max(v.z, v.w)));
    let e = exp(v - vec4<f32>(m));
    return vec2<f32>(m, st.y * exp(st.x - m) + ((e.x + e.y) + (e.z + e.w)));
}

fn lse_push(st: vec2<f32>, v: f32) -> vec2<f32> {
    let m = max(st.x, v);
    return vec2<f32>(m, st.y * exp(st.x - m) + exp(v - m));
}

// log-sum-exp of a non-empty state.
fn lse_value(st: vec2<f32>) -> f32 {
    return st.x + log(st.y);
}
