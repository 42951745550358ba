// embedding_rows: the embedding losses over rows of D values (the last dim), each row spread over
// TPR threads (row_tree.wgsl). LOSS (an override) picks the loss:
//   COSINE_EMBEDDING: cos = <x1, x2> / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)) per row, as PyTorch;
//                     loss = 1 - cos where y = 1, max(0, cos - margin) where y = -1, else 0.
//   TRIPLET_MARGIN:   loss = max(0, margin + d(a, p) - d(a, n)) with d(u, v) = |u - v + eps|_P
//                     (x1 = a, x2 = p, x3 = n); with SWAP, d(a, n) is min(d(a, n), d(p, n)).
//                     The max norm's gradient is shared evenly by the elements at the max, as
//                     PyTorch's.
//   backward: d1, d2 (and d3) = the loss's gradients in x1, x2 (and x3) times s_r = g[r]
//             (G_PER_ROW) or g[0] * scale. Where a hinge is 0 exactly the gradient is 0, as
//             PyTorch's; a tie of SWAP's minimum splits the gradient in halves, as PyTorch's.
//
// Magnitudes: a first pass finds each vector's (or difference's) largest magnitude, and the sums
// run on values scaled by a power of two chosen from it, which is exact: squares and p-th powers
// of values up to f32's largest neither overflow nor, for triplet's tiny differences, underflow,
// so every finite row gives the answer of float64 arithmetic rounded to f32. Cosine scales only a
// vector whose largest magnitude is 2 or more (below that its sums are PyTorch's, eps included,
// exactly as written); triplet takes each difference as (u/4 - v/4 + eps/4), the same bits as
// u - v + eps over 4 without its overflow, and scales it into [1, 4).
// NaN (cosine): a row holding a NaN or an infinity has a NaN cosine: its loss is NaN where
// y = +-1 (else 0) and its gradients are NaN, as PyTorch's. NaN (triplet): a NaN in a difference
// makes its distance NaN (the count norm counts it as non-zero) and the loss NaN; the gradient is
// then PyTorch's (NaN through a p-norm of a NaN distance, 0 elsewhere). Distances past f32's
// largest are compared in a common scale, so the loss is right while it fits f32. NaN is written
// as a bit pattern: kernels do not rely on NaN arithmetic.
// The forward loops twice over each thread's share of a row, the backward three times.
// bindings: 0 uniform Params | 1 x1 | 2 x2 | 3 x3 (rows, D) | 4 y (rows) | 5 loss (rows) write |
//           6 g | 7 d1 | 8 d2 | 9 d3 (rows, D) write

override WG: u32 = 64u;
override LOSS: u32 = 0u;
override SWAP: bool = false;
// triplet_margin's norm: 0 the p-norm of params.p, 1 the max norm (p = inf), 2 the count of
// non-zeros (p = 0, whose gradient is 0, as PyTorch's).
override NORM: u32 = 0u;
override G_PER_ROW: bool = false;

const COSINE_EMBEDDING: u32 = 0u;
const TRIPLET_MARGIN: u32 = 1u;

struct Params {
    rows: u32,
    cols: u32,
    margin: f32,
    p: f32,
    eps: f32,
    scale: f32,
    tpr: u32,       // threads per row, read where TREE (row_tree.wgsl)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> x3: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<u32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> d1: array<u32>;
@group(0) @binding(8) var<storage, read_write> d2: array<u32>;
@group(0) @binding(9) var<storage, read_write> d3: array<u32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Not NaN and not an infinity.
fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) < 0x7f800000u;
}

// f32's biased exponent of v (0 for 0 and subnormals).
fn exponent(v: f32) -> i32 {
    return i32((bitcast<u32>(v) >> 23u) & 0xffu);
}

// 2^k for an integer k in [-126, 127], exactly.
fn pow2(k: i32) -> f32 {
    return bitcast<f32>(u32(k + 127) << 23u);
}

// ---- cosine_embedding ----

// A cosine row: the largest magnitudes of x1 and x2 (finite elements), whether an element is not
// finite; then, over values scaled by ka and kb, <x1', x2'>, |x1'|^2 + 1e-12 ka^2, |x2'|^2 + 1e-12 kb^2.
struct Cosine {
    ka: f32,
    kb: f32,
    dot: f32,
    a: f32,
    b: f32,
    bad: bool,
}

// The scale of a vector whose largest magnitude is m: 2^(128 - e) for m >= 2 (e its exponent),
// bringing m into [2, 4); 1 below 2.
fn down_scale(m: f32) -> f32 {
    let e = exponent(m);
    return select(1.0, pow2(128 - e), e >= 128);
}

fn cosine_sums(base: u32, lane: u32, lid: u32, live: bool) -> Cosine {
    var m = vec4<f32>(0.0);
    if (live) {
        for (var k = lane; k < params.cols; k += tpr()) {
            let u = x1[base + k];
            let v = x2[base + k];
            let bad = !is_finite(u) || !is_finite(v);
            m = max(m, vec4<f32>(select(abs(u), 0.0, bad), select(abs(v), 0.0, bad), f32(bad), 0.0));
        }
    }
    m = row_max4(m, lane, lid);
    let ka = down_scale(m.x);
    let kb = down_scale(m.y);
    var sum = blocked();
    if (live && m.z == 0.0) {
        for (var k = lane; k < params.cols; k += tpr()) {
            let u = x1[base + k] * ka;
            let v = x2[base + k] * kb;
            blocked_add(&sum, vec4<f32>(u * v, u * u, v * v, 0.0));
        }
    }
    let s = row_sum4(blocked_sum(sum), lane, lid);
    return Cosine(ka, kb, s.x, s.y + 1e-12 * ka * ka, s.z + 1e-12 * kb * kb, m.z > 0.0);
}

// ---- triplet_margin ----

// A difference element over 4: the same bits as (u - v + eps) / 4, and finite for finite u, v.
fn quarter_diff(u: f32, v: f32) -> f32 {
    return 0.25 * u - 0.25 * v + 0.25 * params.eps;
}

// The scale that brings a difference whose largest quarter-magnitude is m into [1, 4):
// 2^(127 - e), e m's exponent, within f32's normal powers of two.
fn up_scale(m: f32) -> f32 {
    return pow2(clamp(127 - exponent(m), -126, 127));
}

// |v|^P / 4^P for a scaled difference |v| < 4 (so at most 1: no overflow for any P), exact for
// P = 1 and 2 (then without the 4^P); 1 for a non-zero v with the count norm.
fn pow_abs(v: f32) -> f32 {
    let a = abs(v);
    if (NORM == 2u) {
        return select(1.0, 0.0, a == 0.0);
    }
    if (params.p == 2.0) {
        return a * a;
    }
    if (params.p == 1.0) {
        return a;
    }
    return select(exp2(params.p * (log2(a) - 2.0)), 0.0, a == 0.0);
}

// The norm of the scaled difference from its sum s of pow_abs terms.
fn root(s: f32) -> f32 {
    if (NORM == 2u || params.p == 1.0) {
        return s;
    }
    if (params.p == 2.0) {
        return sqrt(s);
    }
    return select(4.0 * exp2(log2(s) / params.p), 0.0, s == 0.0);
}

// d|v|_P / dv for one element v of a (scaled) vector whose norm is `d` (0 where v or d is 0);
// for the max norm, `ties` is how many elements reach d.
fn norm_grad(v: f32, d: f32, ties: f32) -> f32 {
    if (d == 0.0 || v == 0.0 || NORM == 2u) {
        return 0.0;
    }
    if (NORM == 1u) {
        return select(0.0, sign(v) / ties, abs(v) == d);
    }
    if (params.p == 2.0) {
        return v / d;
    }
    if (params.p == 1.0) {
        return sign(v);
    }
    return sign(v) * exp2((params.p - 1.0) * (log2(abs(v)) - log2(d)));
}

// A triplet row: per distance (ap, an, pn) its scale k and the norm of its scaled difference
// (the max norm: the largest scaled magnitude, with its ties), the distances brought to one
// scale K (the smallest k: `near` = d·K/4, no overflow when a distance passes f32's largest, whose
// difference may not), and which distances are NaN (a NaN in their difference; the count norm
// counts a NaN as non-zero, as PyTorch's).
struct Triplet {
    k: vec3<f32>,
    scaled: vec3<f32>,
    ties: vec3<f32>,
    near: vec3<f32>,
    big_k: f32,
    nan: vec3<bool>,
}

// The three differences of element c, over 4 (pn's is 0 without SWAP: it is not used).
fn quarter_diffs(base: u32, c: u32) -> vec3<f32> {
    let a = x1[base + c];
    let p = x2[base + c];
    let n = x3[base + c];
    return vec3<f32>(quarter_diff(a, p), quarter_diff(a, n), select(0.0, quarter_diff(p, n), SWAP));
}

fn nan3(v: vec3<f32>) -> vec3<bool> {
    return (bitcast<vec3<u32>>(v) & vec3<u32>(0x7fffffffu)) > vec3<u32>(0x7f800000u);
}

fn triplet_distances(base: u32, lane: u32, lid: u32, live: bool) -> Triplet {
    // Per distance, the largest magnitude of a difference that is not NaN, and whether one is.
    var m = vec4<f32>(0.0);
    var bad = vec4<f32>(0.0);
    if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let q = quarter_diffs(base, c);
            let nan = nan3(q);
            m = max(m, vec4<f32>(select(abs(q), vec3<f32>(0.0), nan), 0.0));
            bad = max(bad, vec4<f32>(select(vec3<f32>(0.0), vec3<f32>(1.0), nan), 0.0));
        }
    }
    m = row_max4(m, lane, lid);
    bad = row_max4(bad, lane, lid);
    let k = vec3<f32>(up_scale(m.x), up_scale(m.y), up_scale(m.z));
    let top = m.xyz * k;
    var sum = blocked();
    if (live) {
        for (var c = lane; c < params.cols; c += tpr()) {
            let v = quarter_diffs(base, c) * k;
            if (NORM == 1u) {
                blocked_add(&sum, vec4<f32>(select(vec3<f32>(0.0), vec3<f32>(1.0), abs(v) == top), 0.0));
            } else if (NORM == 2u) {
                // A NaN counts: it is not 0.
                blocked_add(&sum, vec4<f32>(select(vec3<f32>(1.0), vec3<f32>(0.0), v == vec3<f32>(0.0)), 0.0));
            } else {
                let nan = nan3(v);
                let terms = vec3<f32>(pow_abs(v.x), pow_abs(v.y), pow_abs(v.z));
                blocked_add(&sum, vec4<f32>(select(terms, vec3<f32>(0.0), nan), 0.0));
            }
        }
    }
    let s = row_sum4(blocked_sum(sum), lane, lid);
    var t: Triplet;
    t.k = k;
    t.nan = (bad.xyz > vec3<f32>(0.0)) & vec3<bool>(NORM != 2u) & vec3<bool>(true, true, SWAP);
    t.big_k = min(min(k.x, k.y), select(k.x, k.z, SWAP));
    if (NORM == 1u) {
        t.scaled = top;
        t.ties = s.xyz;
    } else {
        t.scaled = vec3<f32>(root(s.x), root(s.y), root(s.z));
        t.ties = vec3<f32>(1.0);
    }
    // d·K/4 = scaled·(K/k), a power of two at most 1; the count norm's counts are exact as
    // they are.
    t.near = select(t.scaled * (vec3<f32>(t.big_k) / k), s.xyz, NORM == 2u);
    if (!SWAP) {
        t.near.z = 0.0;
    }
    return t;
}

// The negative distance of the hinge, in the scale of `near`: d(a, n), or with SWAP the smaller
// of d(a, n) and d(p, n); and the weights of the two in it (halves on a tie).
fn negative(t: Triplet) -> vec3<f32> {
    if (!SWAP || t.near.y < t.near.z) {
        return vec3<f32>(t.near.y, 1.0, 0.0);
    }
    if (t.near.z < t.near.y) {
        return vec3<f32>(t.near.z, 0.0, 1.0);
    }
    return vec3<f32>(t.near.y, 0.5, 0.5);
}

// The hinge's argument margin + d(a, p) − d_neg in the scale of `near` (its sign is the true
// one's), and whether the loss is NaN.
fn hinge_argument(t: Triplet) -> vec2<f32> {
    let margin = select(params.margin * t.big_k * 0.25, params.margin, NORM == 2u);
    return vec2<f32>(margin + t.near.x - negative(t).x, f32(any(t.nan)));
}

// The loss from the hinge's argument in the scale of `near`: back to the true scale with 4/K
// taken as 4 then 1/K, each exact (4/K alone may pass f32's largest where the loss does not).
fn triplet_loss(t: Triplet, z: f32) -> f32 {
    let l = max(z, 0.0);
    if (NORM == 2u) {
        return l;
    }
    return (4.0 * l) * (1.0 / t.big_k);
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = row_slot(wid, nwg, lid);
    let row = at.x;
    let lane = at.y;
    let live = row < params.rows;
    let base = row * params.cols;
    var nan: bool;
    var l: f32;
    if (LOSS == COSINE_EMBEDDING) {
        let c = cosine_sums(base, lane, lid, live);
        let cos = c.dot / sqrt(c.a * c.b);
        var t = 0.0;
        if (live) {
            t = y[row];
        }
        let chosen = t == 1.0 || t == -1.0;
        nan = c.bad && chosen;
        l = select(0.0, 1.0 - cos, t == 1.0) + select(0.0, max(cos - params.margin, 0.0), t == -1.0);
    } else {
        let t = triplet_distances(base, lane, lid, live);
        let z = hinge_argument(t);
        nan = z.y > 0.0;
        l = triplet_loss(t, z.x);
    }
    if (live && lane == 0u) {
        loss[row] = select(bitcast<u32>(l), NAN_BITS, nan);
    }
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = row_slot(wid, nwg, lid);
    let row = at.x;
    let lane = at.y;
    let live = row < params.rows;
    let base = row * params.cols;
    var s = 0.0;
    if (live) {
        if (G_PER_ROW) {
            s = g[row];
        } else {
            s = g[0] * params.scale;
        }
    }
    if (LOSS == COSINE_EMBEDDING) {
        let c = cosine_sums(base, lane, lid, live);
        if (!live) {
            return;
        }
        let root_ab = sqrt(c.a * c.b);
        let cos = c.dot / root_ab;
        let t = y[row];
        var dcos = 0.0;
        if (t == 1.0) {
            dcos = -s;
        } else if (t == -1.0 && cos - params.margin > 0.0) {
            dcos = s;
        }
        // d cos / d x1 = ka (x2' / sqrt(a' b') - cos x1' / a') over the scaled values x' = k x;
        // NaN throughout a row holding a NaN or an infinity. One loop either way: two loops in
        // two branches would both run where rows diverge, past the loop budget planned.
        let fa = dcos * c.ka;
        let fb = dcos * c.kb;
        for (var k = lane; k < params.cols; k += tpr()) {
            let u = x1[base + k] * c.ka;
            let v = x2[base + k] * c.kb;
            d1[base + k] = select(bitcast<u32>(fa * (v / root_ab - cos * u / c.a)), NAN_BITS, c.bad);
            d2[base + k] = select(bitcast<u32>(fb * (u / root_ab - cos * v / c.b)), NAN_BITS, c.bad);
        }
    } else {
        let t = triplet_distances(base, lane, lid, live);
        if (!live) {
            return;
        }
        let w = negative(t).yz;
        let z = hinge_argument(t);
        // A NaN loss passes no gradient (PyTorch's clamp), but a pair whose distance is NaN
        // gives its two inputs NaN everywhere through a p-norm's gradient (x / NaN), as
        // PyTorch's; not through p = 1's (sign), the max norm's or the count norm's.
        let on = select(0.0, s, z.x > 0.0 && z.y == 0.0);
        let pair_nan = t.nan & vec3<bool>(NORM == 0u && params.p != 1.0);
        for (var c = lane; c < params.cols; c += tpr()) {
            let v = quarter_diffs(base, c) * t.k;
            let g_ap = norm_grad(v.x, t.scaled.x, t.ties.x);
            let g_an = w.x * norm_grad(v.y, t.scaled.y, t.ties.y);
            var g_pn = 0.0;
            if (SWAP) {
                g_pn = w.y * norm_grad(v.z, t.scaled.z, t.ties.z);
            }
            let d = on * vec3<f32>(g_ap - g_an, -g_ap - g_pn, g_an + g_pn);
            // Input 1 is in pairs ap and an, input 2 in ap and pn, input 3 in an and pn.
            let nan = vec3<bool>(pair_nan.x || pair_nan.y, pair_nan.x || pair_nan.z, pair_nan.y || pair_nan.z);
            let bits = select(bitcast<vec3<u32>>(d), vec3<u32>(NAN_BITS), nan);
            d1[base + c] = bits.x;
            d2[base + c] = bits.y;
            d3[base + c] = bits.z;
        }
    }
}
