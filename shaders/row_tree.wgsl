// row_tree: a row spread over TPR threads whose per-thread values merge through a fixed tree in
// workgroup memory, so results do not depend on timing. Shared by class_margin and
// embedding_rows: a workgroup of WG threads holds WG / TPR rows, thread `lid` is lane
// `lid % TPR` of row slot `lid / TPR`, and the row's lanes fold elements lane, lane + TPR, ...
// TPR is a power of two (1: a thread per row, and no barrier at all).
//
// Every thread of the workgroup, past the last row or not, must call the merges from uniform
// control flow: they hold barriers.

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

// Long sums are blocked: a lane adds BLOCK terms into a block sum, then the block sum into its
// total, so a sum of n terms rounds like one of BLOCK + n / BLOCK (a million classes over 32
// lanes: 550 roundings in place of 31 250). No compensated (Kahan) sum: drivers may reassociate
// float arithmetic that is not marked exact.
const BLOCK: u32 = 64u;

// A blocked running sum of vec4 terms.
struct Blocked {
    total: vec4<f32>,
    block: vec4<f32>,
    terms: u32,
}

fn blocked() -> Blocked {
    return Blocked(vec4<f32>(0.0), vec4<f32>(0.0), 0u);
}

fn blocked_add(b: ptr<function, Blocked>, v: vec4<f32>) {
    (*b).block += v;
    (*b).terms += 1u;
    if ((*b).terms == BLOCK) {
        (*b).total += (*b).block;
        (*b).block = vec4<f32>(0.0);
        (*b).terms = 0u;
    }
}

fn blocked_sum(b: Blocked) -> vec4<f32> {
    return b.total + b.block;
}

var<workgroup> tree: array<vec4<f32>, WG>;

// This thread's row slot in the dispatch and its lane in the row.
fn row_slot(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
    return vec2<u32>(group_index(wid, nwg) * (WG / tpr()) + lid / tpr(), lid % tpr());
}

// The sums of `v` over the row's threads, returned to all of them.
fn row_sum4(v: vec4<f32>, lane: u32, lid: u32) -> vec4<f32> {
    return row_merge4(v, lane, lid, false);
}

// The maxima of `v` (no NaN) over the row's threads, returned to all of them.
fn row_max4(v: vec4<f32>, lane: u32, lid: u32) -> vec4<f32> {
    return row_merge4(v, lane, lid, true);
}

// `v` merged over the row's threads by a fixed tree: summed, or the maxima when `take_max`.
fn row_merge4(v: vec4<f32>, lane: u32, lid: u32, take_max: bool) -> vec4<f32> {
    if (!TREE) {
        return v;
    }
    workgroupBarrier();
    tree[lid] = v;
    workgroupBarrier();
    for (var s = tpr() / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            let a = tree[lid];
            let b = tree[lid + s];
            tree[lid] = select(a + b, max(a, b), take_max);
        }
        workgroupBarrier();
    }
    return tree[lid - lane];
}
