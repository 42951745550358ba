// rows: the online (max, sum-exp) reduction of one row, shared by log_softmax, softmax and
// cross_entropy. The input is read through ld_x (kernels.rs declares it: a storage buffer, or a
// texture staged by the copy engine on software adapters).
//
// Layout: a row is `cols` elements `stride` apart starting at `base`. The normalised dim of an
// (outer, cols, inner) tensor gives rows r = o * inner + d with base o * cols * inner + d and
// stride inner; stride 1 is the usual last-dim case.
//
// A workgroup of WG threads handles WG / TPR rows with TPR threads per row: TPR = 1 is thread
// per row (no barriers: best for short rows, strided rows and software adapters), TPR = WG is
// workgroup per row (vocabulary-sized rows on GPUs), anything between is a segment per row.
// Thread `lane` of a row folds elements lane, lane + TPR, ... then the TPR states merge through
// a fixed tree in workgroup memory, so results do not depend on timing. TPR is a power of two.
//
// Besides (max, sum) a row can fold an auxiliary pair of sums (AUX): the including file defines
// row_aux4(c, i, v, m), the pair summed over the elements at columns c, flat indices i, values
// v where m holds. The values it sees are shifted by the row's first element x0 (RowAcc.x0):
// sums of x − x0 keep their digits at large magnitudes, where sums of x would round at the
// magnitude of x and cancel against lse · Σw later.
// NaN: `bad` is the largest |bits| seen; above 0x7f800000 the row holds a NaN.
// -inf elements fall below the NEG_BIG sentinel and add exp(-inf) = 0, as in PyTorch.

override WG: u32 = 64u;
// More than one thread per row (TPR > 1): the rows' threads merge through a tree in workgroup
// memory. TPR itself is the uniform's `tpr`, read through tpr(), so the segment widths share one
// pipeline (each would otherwise compile on first use); without TREE it is the constant 1.
override TREE: bool = false;

// Threads per row: the uniform's `tpr` where TREE, else 1.
fn tpr() -> u32 {
    if (TREE) {
        return params.tpr;
    }
    return 1u;
}
// stride 1 and cols % 4 == 0: every row starts on a quad, so rows are read four elements (one
// texel of a staged input) at a time.
override QUADS: bool = false;
override AUX: bool = false;

const ABS_MASK: u32 = 0x7fffffffu;
const INF_BITS: u32 = 0x7f800000u;

struct RowAcc {
    st: vec2<f32>,
    aux: vec2<f32>,
    bad: u32,
    x0: f32,
}

var<workgroup> row_red: array<vec4<f32>, WG>;
var<workgroup> row_bad: array<u32, WG>;

fn acc_push4(a: ptr<function, RowAcc>, c: vec4<u32>, i: vec4<u32>, v: vec4<f32>) {
    (*a).st = lse_push4((*a).st, v);
    let b = bitcast<vec4<u32>>(v) & vec4<u32>(ABS_MASK);
    (*a).bad = max((*a).bad, max(max(b.x, b.y), max(b.z, b.w)));
    if (AUX) {
        (*a).aux += row_aux4(c, i, v - vec4<f32>((*a).x0), vec4<bool>(true));
    }
}

// One element: lane 0 of a quad whose other lanes are masked off.
fn acc_push1(a: ptr<function, RowAcc>, c: u32, i: u32, v: f32) {
    (*a).st = lse_push((*a).st, v);
    (*a).bad = max((*a).bad, bitcast<u32>(v) & ABS_MASK);
    if (AUX) {
        let shifted = vec4<f32>(v - (*a).x0);
        (*a).aux += row_aux4(vec4<u32>(c), vec4<u32>(i), shifted, vec4<bool>(true, false, false, false));
    }
}

// Whether the row's softmax is NaN: a NaN in the row, or a +inf (its max, so x - max = inf - inf
// for that element, as PyTorch computes it).
fn row_has_nan(a: RowAcc) -> bool {
    return a.bad > INF_BITS || bitcast<u32>(a.st.x) == INF_BITS;
}

// The row's accumulated state, the same in every thread of the row. Every thread of the
// workgroup must call it (it may hold barriers); `live` is false past the last row.
fn row_state(base: u32, stride: u32, cols: u32, lane: u32, lid: u32, live: bool) -> RowAcc {
    var a = RowAcc(vec2<f32>(NEG_BIG, -1.0), vec2<f32>(0.0), 0u, 0.0);
    if (AUX && live && cols > 0u) {
        // A non-finite first element shifts nothing (its sums then follow the formulas as before).
        let first = ld_x(base);
        a.x0 = select(0.0, first, (bitcast<u32>(first) & ABS_MASK) < INF_BITS);
    }
    if (live && QUADS) {
        let q0 = base / 4u;
        for (var q = lane; q < cols / 4u; q += tpr()) {
            let c = 4u * q;
            acc_push4(&a, vec4<u32>(c, c + 1u, c + 2u, c + 3u), vec4<u32>(base + c) + vec4<u32>(0u, 1u, 2u, 3u), ld4_x(q0 + q));
        }
    } else if (live) {
        var c = lane;
        loop {
            if (c + 3u * tpr() >= cols) {
                break;
            }
            let cs = vec4<u32>(c, c + tpr(), c + 2u * tpr(), c + 3u * tpr());
            let is = vec4<u32>(base) + cs * stride;
            acc_push4(&a, cs, is, vec4<f32>(ld_x(is.x), ld_x(is.y), ld_x(is.z), ld_x(is.w)));
            c += 4u * tpr();
        }
        for (; c < cols; c += tpr()) {
            acc_push1(&a, c, base + c * stride, ld_x(base + c * stride));
        }
    }
    if (TREE) {
        row_red[lid] = vec4<f32>(a.st, a.aux);
        row_bad[lid] = a.bad;
        workgroupBarrier();
        for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                let x = row_red[lid];
                let y = row_red[lid + s];
                row_red[lid] = vec4<f32>(lse_merge(x.xy, y.xy), x.zw + y.zw);
                row_bad[lid] = max(row_bad[lid], row_bad[lid + s]);
            }
            workgroupBarrier();
        }
        let r = row_red[lid - lane];
        a = RowAcc(r.xy, r.zw, row_bad[lid - lane], a.x0);
    }
    return a;
}

// The sum of `v` over the TPR threads of a row, returned to all of them (for the backward
// passes). Call from uniform control flow.
fn row_sum(v: f32, lane: u32, lid: u32) -> f32 {
    if (!TREE) {
        return v;
    }
    workgroupBarrier();
    row_red[lid] = vec4<f32>(v, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            row_red[lid].x = row_red[lid].x + row_red[lid + s].x;
        }
        workgroupBarrier();
    }
    return row_red[lid - lane].x;
}

// The exact sum of the counts `v` over the TPR threads of a row, returned to all of them.
// Call from uniform control flow.
fn row_count(v: u32, lane: u32, lid: u32) -> u32 {
    if (!TREE) {
        return v;
    }
    workgroupBarrier();
    row_bad[lid] = v;
    workgroupBarrier();
    for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            row_bad[lid] = row_bad[lid] + row_bad[lid + s];
        }
        workgroupBarrier();
    }
    return row_bad[lid - lane];
}
