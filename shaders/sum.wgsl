// sum: the partition shared by every reduction to a scalar, and the tree of its last stage.
// A workgroup's chunk is WG * ITEMS consecutive elements; thread `lid` adds lid, lid + WG, ... in
// order into its own partial, so partials depend only on the data and these two constants.
// tree_sum (a fixed tree in workgroup memory, WG a power of two) is used by the single-workgroup
// finishing stage only.

override WG: u32 = 64u;
override ITEMS: u32 = 64u;

var<workgroup> sum_red: array<vec2<f32>, WG>;

// The sum over the workgroup of `v`, returned to every thread. Call from uniform control flow.
fn tree_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
    sum_red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            sum_red[lid] = sum_red[lid] + sum_red[lid + s];
        }
        workgroupBarrier();
    }
    let total = sum_red[0];
    workgroupBarrier();
    return total;
}
