// pointwise: every elementwise loss, its gradient, and binary accuracy. LOSS (an override) picks
// the formula, so each loss compiles to straight-line code: a branch on a uniform value still
// costs both sides on software adapters. Work goes by quads: elements 4q .. 4q + 3 are one texel
// of a staged input or one vec4 (values past n are computed and ignored). Every entry takes the
// quads g * WG * ITEMS + k * WG + lid, k = 0..ITEMS, of its workgroup g: on software adapters an
// invocation's start costs more than a quad's loss.
//
//   forward_none:     out[i] = loss of element i                        (reduction none)
//   forward_partials: out[(part_base + g) * WG + lid] = this thread's sum over its quads, in
//                     order (a fixed partition of 4 * WG * ITEMS elements per workgroup,
//                     finished by reduce.wgsl's `finish`); the per-element losses are never
//                     written.
//   backward:         out[i] = dloss/dx[i] * s[i], d2[i] = the derivative in the formula's second
//                     operand * s[i] (when WANT_D2): the target y (kl_div, mse, l1, smooth_l1,
//                     huber), input2 in y (margin_ranking), or var in aux (gaussian_nll, per
//                     element: a broadcast var's sum comes after). s = the upstream gradient
//                     (per element, or g[0] * params.scale), each written in its own element type
//                     (DX_DTYPE, D2_DTYPE: 0 f32, 1 f16, 2 bf16; a quad of halves is two whole
//                     words, so no thread shares a word).
//
// NaN: kernels may not rely on NaN arithmetic (ARCHITECTURE.md), so NaN inputs are found with bit tests
// and NaN outputs are written as bit patterns: outputs are u32 views of f32 values.
// bindings: 0 uniform Params | 1 x, 2 y through ld_x, ld_y | 3 weight | 4 aux (a broadcast
//           operand: bce_with_logits' pos_weight, gaussian_nll's var, margin_ranking's target) |
//           5 out (loss, partials or dx) | 6 g (upstream gradient) | 7 d2 | 8 status (domain)

override LOSS: u32 = 0u;
override FLAGS: u32 = 0u; // bit 0: elementwise weight, bit 1: broadcast weight, bit 2: aux,
                          // bit 3: aux of the input's shape (staged with x and y)
override G_PER_ELEMENT: bool = false;
override WANT_D2: bool = false;
override DX_DTYPE: u32 = 0u;
override D2_DTYPE: u32 = 0u;
// sigmoid_focal's γ when it is a small integer (0 to 4), else -1: products instead of
// exp2(γ·log2 m), which a software adapter pays for in full even where γ is integral.
override INTEGRAL_GAMMA: i32 = -1;
// poisson_nll's log_input. An override for the same reason: a uniform branch runs both sides
// there, and each side is an exp or a log.
override LOG_INPUT: bool = false;

const MSE: u32 = 0u;
const L1: u32 = 1u;
const SMOOTH_L1: u32 = 2u;    // params.beta = beta > 0 (beta = 0 runs as L1)
const HUBER: u32 = 3u;        // params.beta = delta > 0
const BCE: u32 = 4u;          // x are probabilities in [0, 1]
const BCE_WITH_LOGITS: u32 = 5u;
const KL_DIV: u32 = 6u;       // x log-probabilities, y probabilities
const KL_DIV_LOG_TARGET: u32 = 7u;
const BINARY_ACCURACY: u32 = 8u; // 1 where (x > 0) == (y > 0.5), else 0
const SOFT_MARGIN: u32 = 9u;     // log(1 + exp(-y x)), y usually +-1
const SIGMOID_FOCAL: u32 = 10u;  // params.beta = gamma >= 0, params.alpha = alpha
const POISSON_NLL: u32 = 11u;    // params.beta = eps
const HINGE_EMBEDDING: u32 = 12u; // params.beta = margin
const GAUSSIAN_NLL: u32 = 13u;    // params.beta = eps, aux = var
const MARGIN_RANKING: u32 = 14u;  // x = input1, y = input2, aux = target, params.beta = margin

struct Params {
    n: u32,
    first: u32,     // flat index of this chunk's first element
    part_base: u32,
    beta: f32,
    scale: f32,
    weight_count: u32,
    aux_count: u32,
    alpha: f32,
    // Per-loss switches: sigmoid_focal bit 0 α on; poisson_nll bit 1 full; gaussian_nll bit 1
    // full. A uniform, not an override: each is a few instructions, and as an override every
    // switch doubled the loss's pipelines (each compiled on first use).
    options: u32,
    // A broadcast operand's runs (ops/broadcast.rs): element i reads the operand at
    // the sum over runs of (i / inner) % size * stride, each run (inner, size, stride, 0).
    weight_runs: array<vec4<u32>, 4>,
    aux_runs: array<vec4<u32>, 4>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
// aux (f32) is declared with its ld_aux / ld4_aux accessors (kernels/source.rs).
@group(0) @binding(5) var<storage, read_write> out: array<u32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> d2: array<u32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

// f32 bits, or the NaN pattern where `nan`.
fn bits4(v: vec4<f32>, nan: vec4<bool>) -> vec4<u32> {
    return select(bitcast<vec4<u32>>(v), vec4<u32>(NAN_BITS), nan);
}

// Where elements 4q .. 4q + 3 read the broadcast weight (or aux, when `of_aux`).
fn broadcast_index4(q: u32, of_aux: bool) -> vec4<u32> {
    let i = vec4<u32>(params.first + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
    var k = vec4<u32>(0u);
    let count = select(params.weight_count, params.aux_count, of_aux);
    for (var r = 0u; r < count; r++) {
        let run = select(params.weight_runs[r], params.aux_runs[r], of_aux);
        k += (i / run.x) % run.y * run.z;
    }
    return k;
}

// The broadcast weight (or aux, when `of_aux`) of elements 4q .. 4q + 3.
fn broadcast4(q: u32, of_aux: bool) -> vec4<f32> {
    let k = broadcast_index4(q, of_aux);
    if (of_aux) {
        return vec4<f32>(ld_aux(k.x), ld_aux(k.y), ld_aux(k.z), ld_aux(k.w));
    }
    return vec4<f32>(weight[k.x], weight[k.y], weight[k.z], weight[k.w]);
}

// log(v) for v > 0 computed from v's bits: a subnormal is m × 2^-149 (m its 23-bit mantissa, an
// integer f32 holds exactly), so log(v) = log(m) − 149 ln 2 whatever the adapter's flush mode.
fn log_bits4(v: vec4<f32>) -> vec4<f32> {
    let b = bitcast<vec4<u32>>(v);
    let subnormal = (b & vec4<u32>(0x7f800000u)) == vec4<u32>(0u);
    let m = vec4<f32>(max(b & vec4<u32>(0x007fffffu), vec4<u32>(1u)));
    // One logarithm: a software adapter computes every select's both sides.
    return log(select(v, m, subnormal)) - select(vec4<f32>(0.0), vec4<f32>(149.0 * 0.6931471805599453), subnormal);
}

// The aux operand of elements 4q .. 4q + 3: read as x is when it has the input's shape.
fn aux4(q: u32) -> vec4<f32> {
    if ((FLAGS & 8u) != 0u) {
        return ld4_aux(q);
    }
    return broadcast4(q, true);
}

fn weight4(q: u32) -> vec4<f32> {
    if ((FLAGS & 1u) != 0u) {
        let i = 4u * q;
        return vec4<f32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]);
    }
    if ((FLAGS & 2u) != 0u) {
        return broadcast4(q, false);
    }
    return vec4<f32>(1.0);
}

// m^γ with PyTorch's `pow` for a real base: |m|^γ, negated for a negative m and an odd integral
// γ, NaN for a negative m and a non-integral γ; 0^γ is 0 for γ > 0 and +inf for γ < 0 (`inf`
// says where: kernels hold no inf constants, so the caller writes infinities as bit patterns).
struct Pow4 {
    value: vec4<f32>,
    nan: vec4<bool>,
    inf: vec4<bool>,
}

fn torch_pow4(m: vec4<f32>, gamma: f32) -> Pow4 {
    let zero = vec4<f32>(0.0);
    let integral = fract(gamma) == 0.0;
    let odd = integral && fract(0.5 * gamma) != 0.0;
    let a = abs(m);
    let live = a > zero;
    let magnitude = exp2(gamma * log2(select(vec4<f32>(1.0), a, live)));
    let unsigned = select(zero, magnitude, live);
    var r: Pow4;
    r.value = select(unsigned, -unsigned, (m < zero) & vec4<bool>(odd));
    r.nan = (m < zero) & vec4<bool>(!integral);
    r.inf = !live & vec4<bool>(gamma < 0.0);
    return r;
}

// The loss of elements 4q .. 4q + 3 and its derivatives in x and y, with where each is NaN.
struct Eval {
    loss: vec4<f32>,
    dx: vec4<f32>,
    d2: vec4<f32>,
    nan: vec4<bool>,    // loss
    dx_nan: vec4<bool>,
    d2_nan: vec4<bool>,
    // Outside the loss's domain (bce, gaussian_nll): an error the status word reports.
    bad: vec4<bool>,
}

const NO_ELEMENT: u32 = 0xffffffffu;

// Whether the loss checks its domain (on LOSS alone, so a compile-time branch: the others pay
// nothing).
fn checks_domain() -> bool {
    return LOSS == BCE || LOSS == GAUSSIAN_NLL;
}

// The flat index of the first element of quad q (below n) that `bad` marks, or NO_ELEMENT.
fn first_bad(q: u32, bad: vec4<bool>) -> u32 {
    let i = 4u * q;
    let live = bad & (vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.n));
    let at = params.first + i;
    return select(select(select(select(NO_ELEMENT, at + 3u, live.w), at + 2u, live.z), at + 1u, live.y), at, live.x);
}

// eval(q), lowering `first` to the quad's first element outside the loss's domain, if any.
fn eval_noting(q: u32, first: ptr<function, u32>) -> Eval {
    let e = eval(q);
    if (checks_domain()) {
        *first = min(*first, first_bad(q, e.bad));
    }
    return e;
}

// Reports a thread's first bad element: one atomic per thread, not per quad (on software
// adapters an atomic in divergent code is a loop over the lanes, run whatever the mask).
fn report_bad(first: u32) {
    if (checks_domain() && first != NO_ELEMENT) {
        atomicMax(&status[0], 0xffffffffu - first);
    }
}

fn eval(q: u32) -> Eval {
    let v = ld4_x(q);
    let t = ld4_y(q);
    var e: Eval;
    e.nan = is_nan4(v) | is_nan4(t);
    e.dx_nan = e.nan;
    e.d2_nan = e.nan;
    let d = v - t;
    let a = abs(d);
    let small = a < vec4<f32>(params.beta);
    if (LOSS == MSE) {
        e.loss = d * d;
        e.dx = 2.0 * d;
        e.d2 = -e.dx;
    } else if (LOSS == L1) {
        e.loss = a;
        e.dx = sign(d);
        e.d2 = -e.dx;
    } else if (LOSS == SMOOTH_L1) {
        let b = params.beta;
        e.loss = select(a - 0.5 * b, 0.5 * d * d / b, small);
        e.dx = select(sign(d), d / b, small);
        e.d2 = -e.dx;
    } else if (LOSS == HUBER) {
        let b = params.beta;
        e.loss = select(b * (a - 0.5 * b), 0.5 * d * d, small);
        e.dx = select(b * sign(d), d, small);
        e.d2 = -e.dx;
    } else if (LOSS == BCE) {
        // log clamped at -100 as in PyTorch; log(0) is never used. log(p) comes from p's bits
        // (log_bits4), so a subnormal p gives its own log whether or not the adapter flushes it.
        let zero = vec4<f32>(0.0);
        let one = vec4<f32>(1.0);
        let p_zero = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) == vec4<u32>(0u);
        let lp = select(max(log_bits4(v), vec4<f32>(-100.0)), vec4<f32>(-100.0), p_zero | (v < zero));
        let lq = select(max(log(1.0 - v), vec4<f32>(-100.0)), vec4<f32>(-100.0), v >= one);
        e.loss = -(t * lp + (1.0 - t) * lq);
        e.dx = (v - t) / max((1.0 - v) * v, vec4<f32>(1e-12));
        e.bad = is_nan4(v) | (v < zero) | (v > one);
    } else if (LOSS == BCE_WITH_LOGITS) {
        // dloss/dx = (1 - y) sigma(x) - p y sigma(-x): both sigmoids computed directly, so
        // neither is 1 minus the other.
        let ex = exp(-abs(v));
        let big = 1.0 / (1.0 + ex);
        let tiny = ex / (1.0 + ex);
        let sig = select(tiny, big, v >= vec4<f32>(0.0));
        let sig_neg = select(big, tiny, v >= vec4<f32>(0.0));
        if ((FLAGS & 4u) != 0u) {
            let pw = aux4(q);
            let sp = max(-v, vec4<f32>(0.0)) + log1p_01v(ex);
            e.loss = (1.0 - t) * v + (1.0 + (pw - 1.0) * t) * sp;
            e.dx = (1.0 - t) * sig - pw * t * sig_neg;
        } else {
            // max(x, 0) - x y + log(1 + e^-|x|), each product kept apart from the other so
            // that an infinite logit gives the loss's limit: (+inf, 0) and (-inf, 1) are +inf,
            // (+inf, 1) and (-inf, 0) are 0.
            let zero = vec4<f32>(0.0);
            let pos = select(-t * v, (1.0 - t) * v, v >= zero);
            let lin = select(pos, zero, select(t == zero, t == vec4<f32>(1.0), v >= zero));
            e.loss = lin + log1p_01v(ex);
            e.dx = (1.0 - t) * sig - t * sig_neg;
        }
    } else if (LOSS == KL_DIV) {
        // xlogy(y, y) - y x, as PyTorch: 0 where y == 0, NaN where y < 0. The y-gradient
        // log(y) + 1 - x is NaN where y == 0 (PyTorch's autograd gives 0/0 there).
        let zero = t == vec4<f32>(0.0);
        let neg = t < vec4<f32>(0.0);
        e.loss = select(t * log(t), vec4<f32>(0.0), zero) - t * v;
        e.dx = -t;
        e.d2 = log(t) + 1.0 - v;
        e.nan |= neg;
        e.dx_nan = is_nan4(t);
        e.d2_nan |= zero | neg;
    } else if (LOSS == KL_DIV_LOG_TARGET) {
        let et = exp(t);
        e.loss = et * (t - v);
        e.dx = -et;
        e.d2 = et * (t - v + 1.0);
    } else if (LOSS == SOFT_MARGIN) {
        // softplus(z), z = -y x, as max(z, 0) + log1p(e^-|z|): exact where PyTorch's
        // log1p(exp(z)) overflows (z > 88.7). d/dx = -y sigmoid(z), the sigmoid taken on the
        // side where it does not cancel. No target gradient.
        let z = -t * v;
        let ez = exp(-abs(z));
        let sig = select(ez / (1.0 + ez), 1.0 / (1.0 + ez), z >= vec4<f32>(0.0));
        e.loss = max(z, vec4<f32>(0.0)) + log1p_01v(ez);
        e.dx = -t * sig;
        e.d2_nan = vec4<bool>(true);
    } else if (LOSS == SIGMOID_FOCAL) {
        // torchvision's a_t·ce·(1 − p_t)^γ with ce bce_with_logits' loss, p = σ(x) and
        // m = 1 − p_t = y·σ(−x) + (1 − y)·σ(x), each sigmoid taken directly (no 1 − p). d/dx:
        // a_t·[(p − y)·m^γ + ce·γ·m^(γ−1)·(1 − 2y)·p·(1 − p)].
        let zero = vec4<f32>(0.0);
        let ex = exp(-abs(v));
        let big = 1.0 / (1.0 + ex);
        let tiny = ex * big;
        let p = select(tiny, big, v >= zero);
        let q = select(big, tiny, v >= zero);
        let pos = select(-t * v, (1.0 - t) * v, v >= zero);
        let lin = select(pos, zero, select(t == zero, t == vec4<f32>(1.0), v >= zero));
        let ce = lin + log1p_01v(ex);
        let m = t * q + (1.0 - t) * p;
        var at = vec4<f32>(1.0);
        if ((params.options & 1u) != 0u) {
            at = params.alpha * t + (1.0 - params.alpha) * (1.0 - t);
        }
        let dce = (1.0 - t) * p - t * q;
        if (INTEGRAL_GAMMA == 0) {
            e.loss = at * ce;
            e.dx = at * dce;
        } else if (INTEGRAL_GAMMA > 0) {
            // m^γ and γ·m^(γ−1) by products, as PyTorch's pow takes a small integral scalar
            // exponent (no log, no exp; exact at m = 0 and for a negative m).
            var below = vec4<f32>(1.0);
            for (var k = 1; k < INTEGRAL_GAMMA; k++) {
                below *= m;
            }
            e.loss = at * ce * (below * m);
            e.dx = at * (dce * (below * m) + ce * f32(INTEGRAL_GAMMA) * below * (1.0 - 2.0 * t) * p * q);
        } else {
            let gamma = params.beta;
            let mg = torch_pow4(m, gamma);
            // γ·m^(γ−1), from m^γ / m where m ≠ 0; at m = 0 PyTorch's γ·0^(γ−1): 0 for γ > 1, 1
            // for γ = 1, and an infinity times the zero slope of a saturated sigmoid (NaN) below.
            let live = m != zero;
            let at_zero = select(select(vec4<f32>(0.0), vec4<f32>(1.0), gamma == 1.0), zero, gamma > 1.0);
            let slope = select(at_zero, gamma * mg.value / select(vec4<f32>(1.0), m, live), live);
            let slope_nan = mg.nan | (!live & vec4<bool>(gamma < 1.0));
            let dmg = slope * (1.0 - 2.0 * t) * p * q;
            e.loss = at * ce * mg.value;
            e.dx = at * (dce * mg.value + ce * dmg);
            // 0^γ = inf for γ < 0 (where 1 − p_t rounds to 0, |x| past ~88): the loss is
            // a_t·ce·inf, ±inf, or NaN where a_t·ce is 0, as PyTorch's product.
            let scale = at * ce;
            let signed_inf = bitcast<vec4<f32>>(vec4<u32>(0x7f800000u) | (bitcast<vec4<u32>>(scale) & vec4<u32>(0x80000000u)));
            e.loss = select(e.loss, signed_inf, mg.inf);
            e.nan |= mg.nan | (mg.inf & (scale == zero));
            e.dx_nan |= mg.nan | slope_nan;
        }
        e.d2_nan = vec4<bool>(true);
    } else if (LOSS == POISSON_NLL) {
        // PyTorch's poisson_nll_loss: exp(x) − y·x (log_input), else x − y·log(x + eps); with
        // full, Stirling's y·log y − y + ½·log(2πy) where y > 1. The loss at a negative x + eps
        // is NaN, as in PyTorch. No target gradient.
        if (LOG_INPUT) {
            let ev = exp(v);
            e.loss = ev - t * v;
            e.dx = ev - t;
        } else {
            // The gradient stays finite where the loss is NaN (d log(a) = 1/a for a < 0 too),
            // as PyTorch's autograd gives it.
            let arg = v + params.beta;
            e.loss = v - t * log(arg);
            e.dx = 1.0 - t / arg;
            e.nan |= arg < vec4<f32>(0.0);
        }
        if ((params.options & 2u) != 0u) {
            let big_t = t > vec4<f32>(1.0);
            // log(2π·y) as log(2π) + log(y): one logarithm, not two.
            let log_t = log(max(t, vec4<f32>(1.0)));
            let st = t * log_t - t + 0.5 * (1.8378770664093453 + log_t);
            e.loss += select(vec4<f32>(0.0), st, big_t);
        }
        e.d2_nan = vec4<bool>(true);
    } else if (LOSS == HINGE_EMBEDDING) {
        // PyTorch's hinge_embedding_loss: max(0, margin − x) where y != 1, plus x where
        // y != −1 (so both for a target that is neither). No target gradient.
        let zero = vec4<f32>(0.0);
        let one = vec4<f32>(1.0);
        let gap = params.beta - v;
        let by_margin = t != one;
        let by_self = t != -one;
        e.loss = select(zero, max(gap, zero), by_margin) + select(zero, v, by_self);
        e.dx = select(zero, select(zero, -one, gap > zero), by_margin) + select(zero, one, by_self);
        e.d2_nan = vec4<bool>(true);
    } else if (LOSS == GAUSSIAN_NLL) {
        // PyTorch's gaussian_nll_loss: ½·(log v + (x − y)² / v) with v = max(var, eps), plus
        // ½·log(2π) with full. PyTorch clamps var without recording it, so the var gradient
        // ½·(1/v − (x − y)²/v²) passes to var unchanged where var < eps. A negative var is an
        // error (the status word names the input's first element where var is negative; the
        // host finds var's own element from it).
        let variance = aux4(q);
        let vc = max(variance, vec4<f32>(params.beta));
        let r = d / vc;
        e.loss = 0.5 * (log(vc) + d * r);
        if ((params.options & 2u) != 0u) {
            e.loss += 0.9189385332046727;
        }
        e.dx = r;
        e.d2 = 0.5 * (1.0 - d * r) / vc;
        e.nan |= is_nan4(variance);
        e.dx_nan |= is_nan4(variance);
        e.d2_nan |= is_nan4(variance);
        e.bad = variance < vec4<f32>(0.0);
    } else if (LOSS == MARGIN_RANKING) {
        // PyTorch's margin_ranking_loss: max(0, −t·(x1 − x2) + margin), t in aux. The gradient
        // is 0 where the hinge is 0 exactly, as PyTorch's; d/dx2 = −d/dx1.
        let t_rank = aux4(q);
        let z = params.beta - t_rank * d;
        let on = z > vec4<f32>(0.0);
        e.loss = max(z, vec4<f32>(0.0));
        e.dx = select(vec4<f32>(0.0), -t_rank, on);
        e.d2 = -e.dx;
        e.nan |= is_nan4(t_rank);
        e.dx_nan = e.nan;
        e.d2_nan = e.nan;
    } else if (LOSS == BINARY_ACCURACY) {
        // A NaN logit predicts 0, as (x > 0) does in PyTorch.
        let pred = (v > vec4<f32>(0.0)) & !is_nan4(v);
        e.loss = select(vec4<f32>(0.0), vec4<f32>(1.0), pred == (t > vec4<f32>(0.5)));
        e.nan = is_nan4(t);
    }
    let w = weight4(q);
    e.loss *= w;
    e.dx *= w;
    e.d2 *= w;
    return e;
}

@compute @workgroup_size(WG)
fn forward_none(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let base = group_index(wid, nwg) * WG * ITEMS;
    var bad = NO_ELEMENT;
    for (var k = 0u; k < ITEMS; k++) {
        let q = base + k * WG + lid;
        let i = 4u * q;
        if (i < params.n) {
            let e = eval_noting(q, &bad);
            let b = bits4(e.loss, e.nan);
            out[i] = b.x;
            if (i + 1u < params.n) {
                out[i + 1u] = b.y;
            }
            if (i + 2u < params.n) {
                out[i + 2u] = b.z;
            }
            if (i + 3u < params.n) {
                out[i + 3u] = b.w;
            }
        }
    }
    report_bad(bad);
}

@compute @workgroup_size(WG)
fn forward_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let base = g * WG * ITEMS;
    var acc = 0.0;
    var nan = false;
    var bad = NO_ELEMENT;
    for (var k = 0u; k < ITEMS; k++) {
        let q = base + k * WG + lid;
        let i = 4u * q;
        if (i < params.n) {
            let keep = vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(params.n);
            let e = eval_noting(q, &bad);
            let l = select(vec4<f32>(0.0), e.loss, keep & !e.nan);
            nan = nan | any(keep & e.nan);
            acc += (l.x + l.y) + (l.z + l.w);
        }
    }
    report_bad(bad);
    out[(params.part_base + g) * WG + lid] = select(bitcast<u32>(acc), NAN_BITS, nan);
}

@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let base = group_index(wid, nwg) * WG * ITEMS;
    var bad = NO_ELEMENT;
    for (var k = 0u; k < ITEMS; k++) {
        let q = base + k * WG + lid;
        let i = 4u * q;
        if (i < params.n) {
            let e = eval_noting(q, &bad);
            var s: vec4<f32>;
            if (G_PER_ELEMENT) {
                let at = min(vec4<u32>(i, i + 1u, i + 2u, i + 3u), vec4<u32>(params.n - 1u));
                s = vec4<f32>(g[at.x], g[at.y], g[at.z], g[at.w]);
            } else {
                s = vec4<f32>(g[0] * params.scale);
            }
            put_grad(i, bits4(e.dx * s, e.dx_nan), false);
            if (WANT_D2) {
                put_grad(i, bits4(e.d2 * s, e.d2_nan), true);
            }
        }
    }
    report_bad(bad);
}

// Elements i .. i + 3 (those below n) of the input's gradient, or of the target's with to_d2,
// each in its element type (quad_words: four f32 words or two words of halves). Written out
// word by word, each store masked by the count: a loop indexing the quad's words at run time
// cost software adapters three times the kernel's reads.
fn put_grad(i: u32, b: vec4<u32>, to_d2: bool) {
    let dtype = select(DX_DTYPE, D2_DTYPE, to_d2);
    let q = quad_words(i, b, dtype, params.n);
    put_word(q.first, q.words.x, to_d2);
    if (q.count > 1u) {
        put_word(q.first + 1u, q.words.y, to_d2);
    }
    if (dtype == 0u) {
        if (q.count > 2u) {
            put_word(q.first + 2u, q.words.z, to_d2);
        }
        if (q.count > 3u) {
            put_word(q.first + 3u, q.words.w, to_d2);
        }
    }
}

fn put_word(k: u32, word: u32, to_d2: bool) {
    if (to_d2) {
        d2[k] = word;
    } else {
        out[k] = word;
    }
}
