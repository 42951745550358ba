// embedding_rows: the embedding losses over rows of D values (the last dim), one thread per row.
// LOSS (an override) picks the loss:
//   COSINE_EMBEDDING: cos = <x1, x2> / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)) per row, as PyTorch;
//                     loss = 1 - cos where y = 1, max(0, cos - margin) where y = -1, else 0.
//   TRIPLET_MARGIN:   loss = max(0, margin + d(a, p) - d(a, n)) with d(u, v) = |u - v + eps|_P
//                     (x1 = a, x2 = p, x3 = n); with SWAP, d(a, n) is min(d(a, n), d(p, n)).
//                     The max norm's gradient is shared evenly by the elements at the max, as
//                     PyTorch's.
//   backward: d1, d2 (and d3) = the loss's gradients in x1, x2 (and x3) times s_r = g[r]
//             (G_PER_ROW) or g[0] * scale. Where a hinge is 0 exactly the gradient is 0, as
//             PyTorch's; a tie of SWAP's minimum splits the gradient in halves, as PyTorch's.
// NaN: a NaN in a row makes its loss NaN through arithmetic on the row's sums, written through
// a bit test (kernels do not rely on NaN arithmetic, ARCHITECTURE.md).
// The forward loops once over a row's D values, the backward twice.
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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> x3: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<u32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> d1: array<f32>;
@group(0) @binding(8) var<storage, read_write> d2: array<f32>;
@group(0) @binding(9) var<storage, read_write> d3: array<f32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// |v|^P, exact for P = 1 and 2; 1 for a non-zero v with the count norm.
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
    return select(exp2(params.p * log2(a)), 0.0, a == 0.0);
}

// s^(1/P) for a sum s >= 0 of |v|^P.
fn root(s: f32) -> f32 {
    if (NORM == 2u || params.p == 1.0) {
        return s;
    }
    if (params.p == 2.0) {
        return sqrt(s);
    }
    return select(exp2(log2(s) / params.p), 0.0, s == 0.0);
}

// d|v|_P / dv for one element v of a vector whose norm is `d` (0 where v or d is 0); for the
// max norm, `ties` is how many elements reach d.
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

// The running max of |v| and how many elements reach it.
fn max_tie(m: vec2<f32>, v: f32) -> vec2<f32> {
    let a = abs(v);
    if (a > m.x) {
        return vec2<f32>(a, 1.0);
    }
    return vec2<f32>(m.x, m.y + select(0.0, 1.0, a == m.x));
}

// A cosine row's sums: <x1, x2>, |x1|^2 + 1e-12, |x2|^2 + 1e-12, and whether a value is NaN.
struct Cosine {
    dot: f32,
    a: f32,
    b: f32,
    nan: bool,
}

fn cosine_sums(base: u32) -> Cosine {
    var c = Cosine(0.0, 1e-12, 1e-12, false);
    for (var k = 0u; k < params.cols; k++) {
        let u = x1[base + k];
        let v = x2[base + k];
        c.nan = c.nan | is_nan(u) | is_nan(v);
        c.dot += u * v;
        c.a += u * u;
        c.b += v * v;
    }
    return c;
}

// A triplet row's distances d(a, p), d(a, n), d(p, n) (the last with SWAP), the max norm's
// ties of each, and NaN.
struct Triplet {
    ap: f32,
    an: f32,
    pn: f32,
    ties: vec3<f32>,
    nan: bool,
}

fn triplet_distances(base: u32) -> Triplet {
    var s = vec3<f32>(0.0);
    var m_ap = vec2<f32>(0.0, 0.0);
    var m_an = vec2<f32>(0.0, 0.0);
    var m_pn = vec2<f32>(0.0, 0.0);
    var nan = false;
    for (var k = 0u; k < params.cols; k++) {
        let a = x1[base + k];
        let p = x2[base + k];
        let n = x3[base + k];
        nan = nan | is_nan(a) | is_nan(p) | is_nan(n);
        if (NORM == 1u) {
            m_ap = max_tie(m_ap, a - p + params.eps);
            m_an = max_tie(m_an, a - n + params.eps);
            m_pn = max_tie(m_pn, p - n + params.eps);
        } else {
            s.x += pow_abs(a - p + params.eps);
            s.y += pow_abs(a - n + params.eps);
            if (SWAP) {
                s.z += pow_abs(p - n + params.eps);
            }
        }
    }
    if (NORM == 1u) {
        return Triplet(m_ap.x, m_an.x, select(0.0, m_pn.x, SWAP), vec3<f32>(m_ap.y, m_an.y, m_pn.y), nan);
    }
    return Triplet(root(s.x), root(s.y), root(s.z), vec3<f32>(1.0), nan);
}

// The weights of d(a, n) and d(p, n) in the negative distance (SWAP's minimum; halves on a tie).
fn negative_weights(t: Triplet) -> vec2<f32> {
    if (!SWAP || t.an < t.pn) {
        return vec2<f32>(1.0, 0.0);
    }
    if (t.pn < t.an) {
        return vec2<f32>(0.0, 1.0);
    }
    return vec2<f32>(0.5, 0.5);
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var nan: bool;
    var l: f32;
    if (LOSS == COSINE_EMBEDDING) {
        let c = cosine_sums(base);
        let cos = c.dot / sqrt(c.a * c.b);
        let t = y[row];
        nan = c.nan | is_nan(t);
        l = select(0.0, 1.0 - cos, t == 1.0) + select(0.0, max(cos - params.margin, 0.0), t == -1.0);
    } else {
        let t = triplet_distances(base);
        let w = negative_weights(t);
        nan = t.nan;
        l = max(params.margin + t.ap - (w.x * t.an + w.y * t.pn), 0.0);
    }
    loss[row] = select(bitcast<u32>(l), NAN_BITS, nan);
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var s: f32;
    if (G_PER_ROW) {
        s = g[row];
    } else {
        s = g[0] * params.scale;
    }
    if (LOSS == COSINE_EMBEDDING) {
        let c = cosine_sums(base);
        let root_ab = sqrt(c.a * c.b);
        let cos = c.dot / root_ab;
        let t = y[row];
        var dcos = 0.0;
        if (t == 1.0) {
            dcos = -s;
        } else if (t == -1.0 && cos - params.margin > 0.0) {
            dcos = s;
        }
        for (var k = 0u; k < params.cols; k++) {
            let u = x1[base + k];
            let v = x2[base + k];
            d1[base + k] = dcos * (v / root_ab - cos * u / c.a);
            d2[base + k] = dcos * (u / root_ab - cos * v / c.b);
        }
    } else {
        let t = triplet_distances(base);
        let w = negative_weights(t);
        let z = params.margin + t.ap - (w.x * t.an + w.y * t.pn);
        let on = select(0.0, s, z > 0.0);
        for (var k = 0u; k < params.cols; k++) {
            let a = x1[base + k];
            let p = x2[base + k];
            let n = x3[base + k];
            let g_ap = norm_grad(a - p + params.eps, t.ap, t.ties.x);
            let g_an = w.x * norm_grad(a - n + params.eps, t.an, t.ties.y);
            var g_pn = 0.0;
            if (SWAP) {
                g_pn = w.y * norm_grad(p - n + params.eps, t.pn, t.ties.z);
            }
            d1[base + k] = on * (g_ap - g_an);
            d2[base + k] = on * (-g_ap - g_pn);
            d3[base + k] = on * (g_an + g_pn);
        }
    }
}
