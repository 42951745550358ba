// cross_entropy: fused log-softmax + NLL, one pass over the logits (rows.wgsl), then the target
// step (class_rows.wgsl); log-probabilities are never written. With PROBS the targets are
// probabilities y of the input's shape (read through ld_y) and the row loss is
//   sum_c w[c] y'[c] (lse - x[c]) = ((max - x0) + log sum) * sum(w y') - sum(w y' (x - x0)),
//   y' = y (1 - eps) + eps / C, x0 the row's first element (rows.wgsl).
// cross_entropy_backward writes the gradient, softmax minus the (smoothed, weighted) target:
//   class ids:  s * [(1 - eps) w[t] (p[c] - [c == t]) + eps / C (W p[c] - w[c])],  W = sum w
//               (p[t] - 1 = expm1(x[t] - lse): no cancellation when the target dominates)
//   PROBS:      s * (p[c] sum(w y') - w[c] y'[c]);  target gradient -s (1 - eps) w[c] (x[c] - lse)
// with s the upstream gradient of the row (see g_mode); ignored rows get 0, NaN rows NaN.
// accuracy counts a row as right when fewer than top_k classes have a larger logit than the
// target's (TPR threads count a share of the row's classes each, then add their counts).
// bindings: 1 x through ld_x | 7 y through ld_y (PROBS; a stand-in otherwise) | 8 g | 9 denom |
//           10 dx write | 11 dy write, the rest as in class_rows.wgsl
// numerics: max-shifted online reduction; finite for |x| < 1e30.

override PROBS: bool = false;
override WANT_DY: bool = false;
// The gradients' element types (0 f32, 1 f16, 2 bf16): halves only with QUADS, where a thread
// owns whole words.
override DX_DTYPE: u32 = 0u;
override DY_DTYPE: u32 = 0u;

@group(0) @binding(8) var<storage, read> g: array<f32>;
@group(0) @binding(9) var<storage, read> denom: array<f32>;
@group(0) @binding(10) var<storage, read_write> dx: array<u32>;
@group(0) @binding(11) var<storage, read_write> dy: array<u32>;

fn smoothed(y: vec4<f32>) -> vec4<f32> {
    let eps = params.smoothing;
    return y * (1.0 - eps) + eps / f32(params.cols);
}

fn row_aux4(c: vec4<u32>, i: vec4<u32>, v: vec4<f32>, m: vec4<bool>) -> vec2<f32> {
    var w = vec4<f32>(1.0);
    if (params.has_weight != 0u) {
        w = vec4<f32>(weight[c.x], weight[c.y], weight[c.z], weight[c.w]);
    }
    w = select(vec4<f32>(0.0), w, m);
    if (PROBS) {
        let wy = w * smoothed(vec4<f32>(ld_y(i.x), ld_y(i.y), ld_y(i.z), ld_y(i.w)));
        return vec2<f32>(dot(wy, vec4<f32>(1.0)), dot(wy, select(vec4<f32>(0.0), v, m)));
    }
    return vec2<f32>(dot(w, select(vec4<f32>(0.0), v, m)), dot(w, vec4<f32>(1.0)));
}

@compute @workgroup_size(WG)
fn cross_entropy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let base = row_base(row);
    let a = row_state(base, params.inner, params.cols, lane, lid, live);
    if (live && lane == 0u) {
        if (PROBS) {
            // Σ w y' (lse − x) = Σwy'·((max − x0) + log sum) − Σ w y' (x − x0)
            let l = ((a.st.x - a.x0) + log1p_state(a.st.y)) * a.aux.x - a.aux.y;
            loss[row] = select(bitcast<u32>(l), NAN_BITS, row_has_nan(a));
            wsum[row] = 1.0;
        } else {
            class_row(row, base, a.st.x, log1p_state(a.st.y), a.x0, a.aux, row_has_nan(a));
        }
    }
}

// What the backward pass needs of a row besides its elements.
struct RowGrad {
    m: f32,         // the row's max
    log_sum: f32,   // log sum exp(x - m)
    s: f32,     // the row's upstream gradient
    t: i32,     // the target class, -1 when the row does not count
    wt: f32,    // its weight
    k: f32,     // PROBS: sum_c w[c] y'[c]; SMOOTH: sum_c w[c]
}

// The gradients at columns c (values v, flat indices i) of a row: (dx, dy).
fn grad4(r: RowGrad, c: vec4<u32>, v: vec4<f32>, y: vec4<f32>) -> array<vec4<f32>, 2> {
    let eps = params.smoothing;
    let shifted = (v - vec4<f32>(r.m)) - r.log_sum;   // x - lse, exact at large magnitudes
    let p = exp(shifted);
    var w = vec4<f32>(1.0);
    if (params.has_weight != 0u) {
        w = vec4<f32>(weight[c.x], weight[c.y], weight[c.z], weight[c.w]);
    }
    if (PROBS) {
        let ys = smoothed(y);
        return array<vec4<f32>, 2>(r.s * (p * r.k - w * ys), -r.s * (1.0 - eps) * w * shifted);
    }
    if (r.t < 0) {
        return array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    }
    // p - [c == t]; at the target exp(x - lse) - 1 as expm1, exact for a confident row's
    // dominant class where p rounds near 1.
    let hit = c == vec4<u32>(u32(r.t));
    var pt = p;
    if (any(hit)) {
        pt = select(p, expm1v(shifted), hit);
    }
    var d = (1.0 - eps) * r.wt * pt;
    if (SMOOTH) {
        d += eps / f32(params.cols) * (r.k * p - w);
    }
    return array<vec4<f32>, 2>(r.s * d, vec4<f32>(0.0));
}

// Gradients of a whole quad of a row (dx, or dy with to_dy) in their element type: four f32
// words or two words of halves, stored without a loop (a loop per quad would count against the
// software adapters' loop budget).
fn put_quad(i: u32, v: vec4<f32>, nan: bool, to_dy: bool) {
    let dtype = select(DX_DTYPE, DY_DTYPE, to_dy);
    let w = quad_words(i, select(bitcast<vec4<u32>>(v), vec4<u32>(NAN_BITS), nan), dtype, i + 4u);
    put_word(w.first, w.words.x, to_dy);
    put_word(w.first + 1u, w.words.y, to_dy);
    if (dtype == 0u) {
        put_word(w.first + 2u, w.words.z, to_dy);
        put_word(w.first + 3u, w.words.w, to_dy);
    }
}

fn put_word(k: u32, word: u32, to_dy: bool) {
    if (to_dy) {
        dy[k] = word;
    } else {
        dx[k] = word;
    }
}

@compute @workgroup_size(WG)
fn cross_entropy_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    let base = row_base(row);
    let stride = params.inner;
    let a = row_state(base, stride, params.cols, lane, lid, live);
    if (!live) {
        return;
    }
    let nan = row_has_nan(a);
    var r = RowGrad(a.st.x, log1p_state(a.st.y), g[0] * params.scale, -1, 0.0, a.aux.y);
    if (params.g_mode == 0u) {
        r.s = g[row];
    } else if (params.g_mode == 2u) {
        r.s = r.s / denom[0];
    }
    if (PROBS) {
        r.k = a.aux.x;
    } else {
        // Validated by the target pass; an invalid target is treated as ignored here.
        let raw = targets[row];
        if (raw != params.ignore_index && raw >= 0 && u32(raw) < params.cols) {
            r.t = raw;
            r.wt = class_weight(u32(raw));
        }
    }
    if (QUADS) {
        for (var q = lane; q < params.cols / 4u; q += tpr()) {
            let c = 4u * q;
            let cs = vec4<u32>(c, c + 1u, c + 2u, c + 3u);
            var y = vec4<f32>(0.0);
            if (PROBS) {
                y = ld4_y(base / 4u + q);
            }
            let d = grad4(r, cs, ld4_x(base / 4u + q), y);
            let i = base + c;
            put_quad(i, d[0], nan, false);
            if (WANT_DY) {
                put_quad(i, d[1], nan, true);
            }
        }
    } else {
        for (var c = lane; c < params.cols; c += tpr()) {
            let i = base + c * stride;
            var y = 0.0;
            if (PROBS) {
                y = ld_y(i);
            }
            let d = grad4(r, vec4<u32>(c), vec4<f32>(ld_x(i)), vec4<f32>(y));
            dx[i] = select(bitcast<u32>(d[0].x), NAN_BITS, nan);
            if (WANT_DY) {
                dy[i] = select(bitcast<u32>(d[1].x), NAN_BITS, nan);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn accuracy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * (WG / tpr()) + lid / tpr();
    let lane = lid % tpr();
    let live = row < params.rows;
    var t = -1;
    var above = 0u;
    if (live) {
        t = checked_target(row);
        if (t >= 0) {
            let base = row_base(row);
            let xt = ld_x(base + u32(t) * params.inner);
            for (var c = lane; c < params.cols; c += tpr()) {
                above += select(0u, 1u, ld_x(base + c * params.inner) > xt);
            }
        }
    }
    let total = row_count(above, lane, lid);
    if (live && lane == 0u) {
        loss[row] = bitcast<u32>(select(0.0, 1.0, t >= 0 && total < params.top_k));
        wsum[row] = select(0.0, 1.0, t >= 0);
    }
}
