// reduce: deterministic two-stage reductions to a scalar, no atomics.
//   partials: thread lid of workgroup g sums a (and b) over elements g * WG * ITEMS + k * WG + lid,
//             k = 0..ITEMS, in order, into parts[p] (or the pair parts[2p], parts[2p + 1]),
//             p = (part_base + g) * WG + lid. No barrier: on software adapters a single barrier
//             turns the whole kernel into coroutines and costs ~40 %.
//   finish:   workgroup g sums partials g * WG * ITEMS + k * WG + lid, k = 0..ITEMS, in the same
//             fixed partition, then through a fixed tree. Mode 3 (a stage, for more than
//             WG * ITEMS partials) writes each workgroup's sum as one partial of the next stage;
//             the last stage is one workgroup and writes, as f32 bits,
//             mode 0: sum a | mode 1: sum a / count | mode 2: sum a / sum b.
//             A mean over nothing (count or sum b == 0) is NaN, written as an integer pattern.
//             Every thread loops ITEMS times whatever n is: the loop budget of software
//             adapters (65 535 iterations per invocation) bounds nothing here.
// NaN: values of a and partials are read as bits; a NaN anywhere makes its partial NaN and the
// result NaN, found with bit tests rather than by NaN arithmetic (WGSL may assume no NaN).
// bindings (partials): 0 uniform Params | 1 a (n) | 2 b (n) | 3 parts write
// bindings (finish):   0 uniform Params | 4 parts (n or 2n) | 5 result (1, or the next stage's
//                      partials) u32 write

struct Params {
    n: u32,
    part_base: u32,
    has_b: u32,
    mode: u32,
    count: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> parts: array<u32>;
@group(0) @binding(4) var<storage, read> parts_in: array<u32>;

fn is_nan(bits: u32) -> bool {
    return (bits & 0x7fffffffu) > 0x7f800000u;
}
@group(0) @binding(5) var<storage, read_write> result: array<u32>;

@compute @workgroup_size(WG)
fn partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let base = g * WG * ITEMS;
    var acc = vec2<f32>(0.0, 0.0);
    var nan = false;
    for (var k = 0u; k < ITEMS; k++) {
        let i = base + k * WG + lid;
        if (i < params.n) {
            let bits = a[i];
            nan = nan | is_nan(bits);
            acc.x += select(bitcast<f32>(bits), 0.0, is_nan(bits));
            if (params.has_b != 0u) {
                acc.y += b[i];
            }
        }
    }
    let p = (params.part_base + g) * WG + lid;
    let x = select(bitcast<u32>(acc.x), NAN_BITS, nan);
    if (params.has_b != 0u) {
        parts[2u * p] = x;
        parts[2u * p + 1u] = bitcast<u32>(acc.y);
    } else {
        parts[p] = x;
    }
}

@compute @workgroup_size(WG)
fn finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let base = g * WG * ITEMS;
    let stride = select(1u, 2u, params.has_b != 0u);
    var acc = vec2<f32>(0.0, 0.0);
    var nans = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = base + k * WG + lid;
        if (i < params.n) {
            let bits = parts_in[stride * i];
            nans += select(0.0, 1.0, is_nan(bits));
            acc.x += select(bitcast<f32>(bits), 0.0, is_nan(bits));
            if (params.has_b != 0u) {
                acc.y += bitcast<f32>(parts_in[2u * i + 1u]);
            }
        }
    }
    let s = tree_sum(acc, lid);
    let any_nan = tree_sum(vec2<f32>(nans, 0.0), lid).x > 0.0;
    if (lid != 0u) {
        return;
    }
    if (params.mode == 3u) {
        // A stage: this workgroup's sum becomes one partial (a pair) of the next level.
        result[stride * g] = select(bitcast<u32>(s.x), NAN_BITS, any_nan);
        if (params.has_b != 0u) {
            result[2u * g + 1u] = bitcast<u32>(s.y);
        }
        return;
    }
    var bits = bitcast<u32>(s.x);
    if (params.mode == 1u) {
        if (params.count == 0.0) {
            bits = NAN_BITS;
        } else {
            bits = bitcast<u32>(s.x / params.count);
        }
    } else if (params.mode == 2u) {
        if (s.y == 0.0) {
            bits = NAN_BITS;
        } else {
            bits = bitcast<u32>(s.x / s.y);
        }
    }
    if (any_nan) {
        bits = NAN_BITS;
    }
    result[0] = bits;
}
