// bce_with_logits: binary cross-entropy on logits x with targets y, optional weight and pos_weight.
//   l = (1 - y) x + (1 + (pw - 1) y) softplus(-x), times weight   (pw = 1: max(x,0) - x y + log(1 + e^-|x|))
// weight is either elementwise (bound at the chunk's offset) or one value per last-dim column;
// pos_weight is one value per column. Column of element i: (col_offset + i) % cols.
// FLAGS is an override so that each combination compiles to straight-line code: a branch on a
// uniform value still costs both sides on software adapters.
// bindings: 0 uniform Params | 1 x, 2 y through ld_x, ld_y | 3 weight | 4 pos_weight | 5 out write
// numerics: softplus with an atanh-series log1p; finite and accurate for every finite x.

override FLAGS: u32 = 0u; // bit 0: elementwise weight, bit 1: per-column weight, bit 2: pos_weight

struct Params {
    n: u32,
    cols: u32,
    col_offset: u32,
    _pad3: u32,
    part_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> pos_weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// The per-column weight and pos_weight of elements 4q .. 4q + 3.
fn col_weight(q: u32) -> vec4<f32> {
    let c = params.col_offset + 4u * q;
    return vec4<f32>(weight[c % params.cols], weight[(c + 1u) % params.cols],
                     weight[(c + 2u) % params.cols], weight[(c + 3u) % params.cols]);
}

fn col_pos_weight(q: u32) -> vec4<f32> {
    let c = params.col_offset + 4u * q;
    return vec4<f32>(pos_weight[c % params.cols], pos_weight[(c + 1u) % params.cols],
                     pos_weight[(c + 2u) % params.cols], pos_weight[(c + 3u) % params.cols]);
}

fn loss4(q: u32) -> vec4<f32> {
    let v = ld4_x(q);
    let t = ld4_y(q);
    var l: vec4<f32>;
    if ((FLAGS & 4u) != 0u) {
        let pw = col_pos_weight(q);
        let sp = max(-v, vec4<f32>(0.0)) + log1p_01v(exp(-abs(v)));
        l = (1.0 - t) * v + (1.0 + (pw - 1.0) * t) * sp;
    } else {
        l = max(v, vec4<f32>(0.0)) - v * t + log1p_01v(exp(-abs(v)));
    }
    if ((FLAGS & 1u) != 0u) {
        let i = 4u * q;
        l *= vec4<f32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]);
    } else if ((FLAGS & 2u) != 0u) {
        l *= col_weight(q);
    }
    return l;
}
