// ctc: the connectionist temporal classification loss (PyTorch's F.ctc_loss) and its gradient,
// in log space. Sequence n has input length T_n, targets l_0 .. l_{L-1} (class ids) and extended
// labels l'_s, s < S' = 2L + 1: blank at even s, l_{(s-1)/2} at odd s. lp[t, n, c] are the
// log-probabilities (time-major, as PyTorch's (T, N, C)).
//   alpha:        one workgroup per sequence steps t = t0 .. t1 - 1 (a chunk of time that fits
//                 the loop budget): alpha[t, s] = lse(alpha[t-1, s], alpha[t-1, s-1],
//                 alpha[t-1, s-2] where l'_s != l'_{s-2}) + lp[t, l'_s], from alpha[0, 0] =
//                 lp[0, blank] and alpha[0, 1] = lp[0, l_0]. Thread lid keeps labels
//                 lid * P .. lid * P + P - 1 in registers; the entry is written out by
//                 kernels/ctc.rs and appended to this file.
//   loss:         one thread per sequence: nll = -lse(alpha[T_n-1, S'-1], alpha[T_n-1, S'-2]),
//                 +inf where no alignment exists (its loss 0 with zero_infinity), 0 for T_n = L = 0;
//                 loss = nll / divisor (the mean's max(L, 1)); flags targets outside [0, C).
//   beta:         the same recursion from t = T_n - 1 down (chunks of time run last to first):
//                 beta[t, s] = lse(beta[t+1, s], beta[t+1, s+1], beta[t+1, s+2] where
//                 l'_s != l'_{s+2}) + lp[t, l'_s]; also written out by kernels/ctc.rs.
//   row_scales:   one thread per row (t, n): what grad_fill writes there (below).
//   grad_fill:    dlp[t, n, c] = exp(lp[t, n, c]) * s_n for t < T_n, else 0; NaN for t < T_n
//                 where nll is +inf (0 with zero_infinity), as PyTorch; rows_per rows a
//                 workgroup, each read its row's scale once.
//   class_chains: one thread per (n, s): the class of l'_s, whether s is its class's first
//                 position, and the next position of the same class (a chain per class).
//   beta_grad:    the beta recursion, and at each step t the gradient of the classes the
//                 sequence's labels use: (exp(lp) - exp(lse over the class's labels of
//                 alpha[t, s] + beta[t, s], + nll - lp)) * s_n, PyTorch's gradient exp(lp) -
//                 gamma, which folds in the log_softmax that made lp. Each label's term is its
//                 occupation probability exp(alpha + beta + nll - lp) (at most 1, so summed
//                 as is): the blank's per thread then across the workgroup, another class's
//                 along its chain.
// s_n = g[n] (G_PER_SEQ) or g[0], over the sequence's divisor. -inf is the NEG_BIG sentinel (a
// sum with it stays below NEG_HALF); +inf and NaN are written as bit patterns (ARCHITECTURE.md).
// Sequence n's row of `seqs`: input length, target length, first target, divisor (f32 bits).
// bindings: 0 uniform Params | 1 lp (this time chunk) | 2 targets i32 | 3 seqs | 4 alpha |
//           5 beta | 6 nll | 7 loss | 8 g | 9 dlp (this time chunk) | 10 status |
//           11 chains (seqs, sp): (class, with bit 31 set at a chain's head; next position) |
//           12 odd (seqs, sp): alpha + beta of beta_grad's step | 13 scales (rows of this
//           time chunk): (what to write, s_n)

override WG: u32 = 64u;
// The extended labels one thread of a recursion keeps (a power of two, 4 .. MAX_P).
override P: u32 = 4u;
override G_PER_SEQ: bool = false;
override ZERO_INFINITY: bool = false;

const NEG_HALF: f32 = -5.0e29;
const INF_BITS: u32 = 0x7f800000u;

struct Params {
    batch: u32,   // N: the sequences of the whole input
    classes: u32, // C
    blank: u32,
    sp: u32,      // the row stride of alpha and beta: 2 * (longest target) + 1 in this chunk
    steps: u32,   // T: the time steps alpha and beta hold
    t0: u32,      // this time chunk: t0 .. t1 - 1 (lp and dlp are bound from tb)
    t1: u32,
    n0: u32,      // this sequence chunk: n0 .. n0 + seqs - 1 (alpha, beta from n0)
    seqs: u32,
    store_all: u32, // write every step of a recursion to its table
    tb: u32,        // the first step of the bound lp and dlp rows (t0, or 0 when bound whole)
    rows_per: u32,  // grad_fill's rows a workgroup
}

@group(0) @binding(0) var<uniform> params: Params;
// lp (binding 1, this time chunk) is read through ld_lp.
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> seqs: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> alpha: array<f32>;
@group(0) @binding(5) var<storage, read_write> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> nll: array<u32>;
@group(0) @binding(7) var<storage, read_write> loss: array<u32>;
@group(0) @binding(8) var<storage, read> g: array<f32>;
@group(0) @binding(9) var<storage, read_write> dlp: array<u32>;
@group(0) @binding(10) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(11) var<storage, read_write> chains: array<vec2<u32>>;
@group(0) @binding(12) var<storage, read_write> odd: array<f32>;
@group(0) @binding(13) var<storage, read_write> scales: array<vec2<f32>>;

const HEAD: u32 = 0x80000000u;
const NONE: u32 = 0xffffffffu;
// The recursions' edge values: per thread, the two labels its neighbour needs, in two halves
// that alternate from step to step.
var<workgroup> edges: array<vec2<f32>, 2u * WG>;

// Publishes this thread's edge values in half p & 1: step t reads half (t + 1) & 1, so a step
// publishes with its own t what the next one reads, whichever the direction.
fn publish(p: u32, lid: u32, v: vec2<f32>) {
    edges[(p & 1u) * WG + lid] = v;
}

// beta_grad's per-thread partial sums of the blank's occupation probabilities.
var<workgroup> parts: array<f32, WG>;

// Thread `other`'s edge values for step t (NEG_BIG where there is no such thread).
fn neighbour(t: u32, other: u32) -> vec2<f32> {
    if (other == NONE) {
        return vec2<f32>(NEG_BIG);
    }
    return edges[((t + 1u) & 1u) * WG + other];
}

fn lse2(a: f32, b: f32) -> f32 {
    let m = max(a, b);
    if (m < NEG_HALF) {
        return NEG_BIG;
    }
    return m + log(exp(a - m) + exp(b - m));
}

fn lse3(a: f32, b: f32, c: f32) -> f32 {
    let m = max(max(a, b), c);
    if (m < NEG_HALF) {
        return NEG_BIG;
    }
    return m + log(exp(a - m) + exp(b - m) + exp(c - m));
}

// The class of extended label s of sequence n (its row of seqs given), clamped into [0, C) so
// that a bad target reads in bounds (the loss entry flags it).
fn label(row: vec4<u32>, s: u32) -> u32 {
    if (s % 2u == 0u) {
        return params.blank;
    }
    let t = targets[row.z + (s - 1u) / 2u];
    return u32(clamp(t, 0, i32(params.classes) - 1));
}

// lp[t, n, c] (bound from step tb).
fn lp_at(t: u32, n: u32, c: u32) -> f32 {
    return ld_lp(((t - params.tb) * params.batch + n) * params.classes + c);
}

// alpha and beta of sequence j of this chunk at (t, s).
fn at(j: u32, t: u32, s: u32) -> u32 {
    return (j * params.steps + t) * params.sp + s;
}

// The negative log-likelihood of sequence j of this chunk, as f32 bits (+inf where impossible).
fn nll_bits(j: u32, row: vec4<u32>) -> u32 {
    if (row.x == 0u) {
        return select(INF_BITS, 0u, row.y == 0u);
    }
    let last = 2u * row.y;
    let t = row.x - 1u;
    var b = NEG_BIG;
    if (last >= 1u) {
        b = alpha[at(j, t, last - 1u)];
    }
    let l = lse2(alpha[at(j, t, last)], b);
    if (l < NEG_HALF) {
        return INF_BITS;
    }
    return bitcast<u32>(-l);
}

@compute @workgroup_size(WG)
fn sequence_loss(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = group_index(wid, nwg) * WG + lid;
    if (j >= params.seqs) {
        return;
    }
    let n = params.n0 + j;
    let row = seqs[n];
    for (var k = 0u; k < row.y; k++) {
        let t = targets[row.z + k];
        if (t < 0 || u32(t) >= params.classes) {
            atomicMax(&status[0], 0xffffffffu - (row.z + k));
        }
    }
    // nll keeps +inf (the gradient reads it); the loss is 0 there with zero_infinity.
    nll[n] = nll_bits(j, row);
    var bits = nll[n];
    if (ZERO_INFINITY && bits == INF_BITS) {
        bits = 0u;
    }
    let divisor = bitcast<f32>(row.w);
    loss[n] = select(bitcast<u32>(bitcast<f32>(bits) / divisor), bits, bits == INF_BITS || divisor == 1.0);
}

// The gradient at lp index `index` (this time chunk) of a class whose labels' occupation
// probabilities sum to gamma: (exp(lp) - gamma) * scale.
fn write_gamma(index: u32, gamma: f32, scale: f32) {
    dlp[index] = bitcast<u32>((exp(ld_lp(index)) - gamma) * scale);
}

// s_n: the upstream gradient of sequence n over its divisor.
fn seq_scale(n: u32, row: vec4<u32>) -> f32 {
    var s: f32;
    if (G_PER_SEQ) {
        s = g[n];
    } else {
        s = g[0];
    }
    return s / bitcast<f32>(row.w);
}

// What grad_fill writes in a row (t, n): x = 0, exp(lp) * y; x = 1, zeros; x = 2, NaN.
const SCALED: f32 = 0.0;
const ZEROS: f32 = 1.0;
const NANS: f32 = 2.0;

@compute @workgroup_size(WG)
fn row_scales(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Rows (t, j) of this time and sequence chunk.
    let e = group_index(wid, nwg) * WG + lid;
    if (e >= (params.t1 - params.t0) * params.seqs) {
        return;
    }
    let t = params.t0 + e / params.seqs;
    let j = e % params.seqs;
    let n = params.n0 + j;
    let row = seqs[n];
    var mode = vec2<f32>(ZEROS, 0.0);
    if (t < row.x) {
        if (nll[n] != INF_BITS) {
            mode = vec2<f32>(SCALED, seq_scale(n, row));
        } else if (!ZERO_INFINITY) {
            mode = vec2<f32>(NANS, 0.0);
        }
    }
    scales[e] = mode;
}

@compute @workgroup_size(WG)
fn grad_fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroup g: step t0 + g / blocks, sequences from (g % blocks) * rows_per, rows_per of
    // them, each a row of C classes.
    let g = group_index(wid, nwg);
    let blocks = (params.seqs + params.rows_per - 1u) / params.rows_per;
    let t = params.t0 + g / blocks;
    if (t >= params.t1) {
        return;
    }
    let j0 = (g % blocks) * params.rows_per;
    for (var r = 0u; r < params.rows_per; r++) {
        let j = j0 + r;
        if (j >= params.seqs) {
            break;
        }
        let mode = scales[(t - params.t0) * params.seqs + j];
        let base = ((t - params.tb) * params.batch + params.n0 + j) * params.classes;
        for (var c = lid; c < params.classes; c += WG) {
            var out = 0u;
            if (mode.x == NANS) {
                out = NAN_BITS;
            } else if (mode.x == SCALED) {
                out = bitcast<u32>(exp(ld_lp(base + c)) * mode.y);
            }
            dlp[base + c] = out;
        }
    }
}

@compute @workgroup_size(WG)
fn class_chains(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Threads (j, s) of this sequence chunk.
    let e = group_index(wid, nwg) * WG + lid;
    if (e >= params.seqs * params.sp) {
        return;
    }
    let j = e / params.sp;
    let s = e % params.sp;
    let row = seqs[params.n0 + j];
    let positions = 2u * row.y + 1u;
    if (s >= positions) {
        chains[e] = vec2<u32>(0u, NONE);
        return;
    }
    let cls = label(row, s);
    var head = HEAD;
    for (var q = 0u; q < s; q++) {
        if (label(row, q) == cls) {
            head = 0u;
            break;
        }
    }
    var next = NONE;
    for (var q = s + 1u; q < positions; q++) {
        if (label(row, q) == cls) {
            next = q;
            break;
        }
    }
    chains[e] = vec2<u32>(cls | head, next);
}
