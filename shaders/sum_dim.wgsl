// sum_dim: the sum over the middle dim of an (outer, size, inner) tensor, in fixed chunks.
//   chunk: thread t = (o * chunks + c) * inner + i writes out[t] = the sum of
//          x[(o * size + d) * inner + i] over d = c * ITEMS .. min((c + 1) * ITEMS, size), in
//          order. ops/sum_dim.rs repeats it on the chunk sums until one chunk is left, so no
//          thread loops more than ITEMS times and the order depends on the shape alone.
// NaN: values are read as bits; a NaN among them makes the sum NaN, written as a bit pattern.
// bindings: 0 uniform Params | 1 x (f32 bits) | 2 out (f32 bits) write

override WG: u32 = 64u;
override ITEMS: u32 = 64u;

struct Params {
    total: u32,  // threads: outer * chunks * inner
    size: u32,
    inner: u32,
    chunks: u32, // ceil(size / ITEMS)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn chunk(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = group_index(wid, nwg) * WG + lid;
    if (t >= params.total) {
        return;
    }
    let i = t % params.inner;
    let oc = t / params.inner;
    let c = oc % params.chunks;
    let o = oc / params.chunks;
    let first = c * ITEMS;
    let count = min(ITEMS, params.size - first);
    var acc = 0.0;
    var nan = false;
    for (var k = 0u; k < count; k++) {
        let b = x[(o * params.size + first + k) * params.inner + i];
        let bad = (b & 0x7fffffffu) > 0x7f800000u;
        nan = nan | bad;
        acc += select(bitcast<f32>(b), 0.0, bad);
    }
    out[t] = select(bitcast<u32>(acc), NAN_BITS, nan);
}
