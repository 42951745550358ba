// ctc: the connectionist temporal classification loss (PyTorch's F.ctc_loss) and its gradient,
// in log space. Sequence n has input length T_n, targets l_0 .. l_{L-1} (class ids) and extended
// labels l'_s, s < S' = 2L + 1: blank at even s, l_{(s-1)/2} at odd s. lp[t, n, c] are the
// log-probabilities (time-major, as PyTorch's (T, N, C)).
//   alpha:        one workgroup per sequence steps t = t0 .. t1 - 1 (a chunk of time that fits
//                 the loop budget): alpha[t, s] = lse(alpha[t-1, s], alpha[t-1, s-1],
//                 alpha[t-1, s-2] where l'_s != l'_{s-2}) + lp[t, l'_s], from alpha[0, 0] =
//                 lp[0, blank] and alpha[0, 1] = lp[0, l_0]; threads take s = lid, lid + WG, ..
//                 and a storage barrier ends each step.
//   loss:         one thread per sequence: nll = -lse(alpha[T_n-1, S'-1], alpha[T_n-1, S'-2]),
//                 +inf where no alignment exists (0 with zero_infinity), 0 for T_n = L = 0;
//                 loss = nll / divisor (the mean's max(L, 1)); flags targets outside [0, C).
//   beta:         the same recursion from t = T_n - 1 down (chunks of time run last to first):
//                 beta[t, s] = lse(beta[t+1, s], beta[t+1, s+1], beta[t+1, s+2] where
//                 l'_s != l'_{s+2}) + lp[t, l'_s].
//   grad_fill:    dlp[t, n, c] = exp(lp[t, n, c]) * s_n for t < T_n, else 0; NaN for t < T_n
//                 where nll is +inf (0 with zero_infinity), as PyTorch.
//   class_chains: one thread per (n, s): the class of l'_s, whether s is its class's first
//                 position, and the next position of the same class (a chain per class, so that
//                 the gradient visits each position once a step).
//   grad_classes: one thread per (t, n, s) whose s heads a chain: its class gets
//                 (exp(lp) - exp(lse over the chain of alpha[t, s] + beta[t, s], + nll - lp)) * s_n:
//                 PyTorch's gradient, exp(lp) - gamma, which folds in the log_softmax that made lp.
// s_n = g[n] (G_PER_SEQ) or g[0], over the sequence's divisor. -inf is the NEG_BIG sentinel (a
// sum with it stays below NEG_HALF); +inf and NaN are written as bit patterns (ARCHITECTURE.md).
// Sequence n's row of `seqs`: input length, target length, first target, divisor (f32 bits).
// bindings: 0 uniform Params | 1 lp (this time chunk) | 2 targets i32 | 3 seqs | 4 alpha |
//           5 beta | 6 nll | 7 loss | 8 g | 9 dlp (this time chunk) | 10 status |
//           11 chains (seqs, sp): (class, with bit 31 set at a chain's head; next position)

override WG: u32 = 64u;
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
    t0: u32,      // this time chunk: t0 .. t1 - 1 (lp and dlp are bound from t0)
    t1: u32,
    n0: u32,      // this sequence chunk: n0 .. n0 + seqs - 1 (alpha, beta from n0)
    seqs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lp: array<f32>;
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

const HEAD: u32 = 0x80000000u;
const NONE: u32 = 0xffffffffu;

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

// lp[t, n, c] of this time chunk.
fn lp_at(t: u32, n: u32, c: u32) -> f32 {
    return lp[((t - params.t0) * params.batch + n) * params.classes + c];
}

// alpha and beta of sequence j of this chunk at (t, s).
fn at(j: u32, t: u32, s: u32) -> u32 {
    return (j * params.steps + t) * params.sp + s;
}

@compute @workgroup_size(WG)
fn alpha_steps(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = group_index(wid, nwg);
    let live = j < params.seqs;
    let n = params.n0 + min(j, params.seqs - 1u);
    let row = seqs[n];
    let positions = 2u * row.y + 1u;
    for (var t = params.t0; t < params.t1; t++) {
        for (var s = lid; s < params.sp; s += WG) {
            if (live && t < row.x && s < positions) {
                let c = label(row, s);
                var v: f32;
                if (t == 0u) {
                    v = select(NEG_BIG, lp_at(t, n, c), s < 2u);
                } else {
                    let a = alpha[at(j, t - 1u, s)];
                    var b = NEG_BIG;
                    var d = NEG_BIG;
                    if (s >= 1u) {
                        b = alpha[at(j, t - 1u, s - 1u)];
                    }
                    if (s >= 2u && label(row, s - 2u) != c) {
                        d = alpha[at(j, t - 1u, s - 2u)];
                    }
                    v = lse3(a, b, d);
                    if (v > NEG_HALF) {
                        v += lp_at(t, n, c);
                    }
                }
                alpha[at(j, t, s)] = v;
            }
        }
        storageBarrier();
    }
}

@compute @workgroup_size(WG)
fn beta_steps(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = group_index(wid, nwg);
    let live = j < params.seqs;
    let n = params.n0 + min(j, params.seqs - 1u);
    let row = seqs[n];
    let positions = 2u * row.y + 1u;
    for (var i = 0u; i < params.t1 - params.t0; i++) {
        let t = params.t1 - 1u - i;
        for (var s = lid; s < params.sp; s += WG) {
            if (live && t < row.x && s < positions) {
                let c = label(row, s);
                var v: f32;
                if (t + 1u == row.x) {
                    v = select(NEG_BIG, lp_at(t, n, c), s + 2u >= positions);
                } else {
                    let a = beta[at(j, t + 1u, s)];
                    var b = NEG_BIG;
                    var d = NEG_BIG;
                    if (s + 1u < positions) {
                        b = beta[at(j, t + 1u, s + 1u)];
                    }
                    if (s + 2u < positions && label(row, s + 2u) != c) {
                        d = beta[at(j, t + 1u, s + 2u)];
                    }
                    v = lse3(a, b, d);
                    if (v > NEG_HALF) {
                        v += lp_at(t, n, c);
                    }
                }
                beta[at(j, t, s)] = v;
            }
        }
        storageBarrier();
    }
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
    var bits = nll_bits(j, row);
    if (ZERO_INFINITY && bits == INF_BITS) {
        bits = 0u;
    }
    nll[n] = bits;
    let divisor = bitcast<f32>(row.w);
    loss[n] = select(bitcast<u32>(bitcast<f32>(bits) / divisor), bits, bits == INF_BITS || divisor == 1.0);
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

@compute @workgroup_size(WG)
fn grad_fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Elements (t, j, c) of this time and sequence chunk.
    let e = group_index(wid, nwg) * WG + lid;
    let per_t = params.seqs * params.classes;
    if (e >= (params.t1 - params.t0) * per_t) {
        return;
    }
    let t = params.t0 + e / per_t;
    let j = (e % per_t) / params.classes;
    let c = e % params.classes;
    let n = params.n0 + j;
    let row = seqs[n];
    let k = ((t - params.t0) * params.batch + n) * params.classes + c;
    if (t >= row.x) {
        dlp[k] = 0u;
        return;
    }
    if (nll[n] == INF_BITS) {
        dlp[k] = NAN_BITS;
        return;
    }
    let is_inf_zeroed = ZERO_INFINITY && nll_bits(j, row) == INF_BITS;
    dlp[k] = select(bitcast<u32>(exp(lp[k]) * seq_scale(n, row)), 0u, is_inf_zeroed);
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

@compute @workgroup_size(WG)
fn grad_classes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Threads (t, j, s) of this time and sequence chunk.
    let e = group_index(wid, nwg) * WG + lid;
    let per_t = params.seqs * params.sp;
    if (e >= (params.t1 - params.t0) * per_t) {
        return;
    }
    let t = params.t0 + e / per_t;
    let j = (e % per_t) / params.sp;
    let s = e % params.sp;
    let n = params.n0 + j;
    let row = seqs[n];
    let link = chains[j * params.sp + s];
    if (t >= row.x || (link.x & HEAD) == 0u || s > 2u * row.y || nll_bits(j, row) == INF_BITS) {
        return;
    }
    let cls = link.x & ~HEAD;
    // The online log-sum-exp of alpha + beta along the chain.
    var m = NEG_BIG;
    var sum = 0.0;
    var q = s;
    for (var k = 0u; k < params.sp && q != NONE; k++) {
        let v = alpha[at(j, t, q)] + beta[at(j, t, q)];
        if (v > m) {
            sum = sum * exp(m - v) + 1.0;
            m = v;
        } else {
            sum += exp(v - m);
        }
        q = chains[j * params.sp + q].y;
    }
    let index = ((t - params.t0) * params.batch + n) * params.classes + cls;
    let v = lp[index];
    var gamma = 0.0;
    if (m > NEG_HALF) {
        gamma = exp(m + log(sum) + bitcast<f32>(nll[n]) - v);
    }
    dlp[index] = bitcast<u32>((exp(v) - gamma) * seq_scale(n, row));
}
