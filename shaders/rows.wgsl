// rows: the online (max, sum-exp) reduction of one row, shared by log_softmax, softmax and
// cross_entropy. The (rows, cols) input is read through ld_x (kernels.rs declares it: a storage
// buffer, or a texture staged by the copy engine on software adapters).
//
// A workgroup of WG threads handles WG / TPR rows with TPR threads per row: TPR = 1 is thread
// per row (no barriers: best for short rows and on software adapters), TPR = WG is workgroup
// per row (vocabulary-sized rows on GPUs), anything between is a segment per row. Thread `lane`
// of a row folds elements lane, lane + TPR, ... (adjacent threads read adjacent elements), then
// the TPR states merge through a fixed tree in workgroup memory, so results do not depend on
// timing. TPR is a power of two chosen by the host.

override WG: u32 = 64u;
override TPR: u32 = 1u;
// cols % 4 == 0: every row starts on a quad, so rows are read four elements (one texel of a
// staged input) at a time.
override QUADS: bool = false;

var<workgroup> row_red: array<vec2<f32>, WG>;

// The (max, sum) state of the row starting at `base`, the same in every thread of the row.
// Every thread of the workgroup must call it (it may hold barriers); `live` is false for the
// threads past the last row.
fn row_state(base: u32, cols: u32, lane: u32, lid: u32, live: bool) -> vec2<f32> {
    var st = vec2<f32>(NEG_BIG, 0.0);
    if (live && QUADS) {
        let q0 = base / 4u;
        for (var q = lane; q < cols / 4u; q += TPR) {
            st = lse_push4(st, ld4_x(q0 + q));
        }
    } else if (live) {
        var c = lane;
        loop {
            if (c + 3u * TPR >= cols) {
                break;
            }
            let v = vec4<f32>(ld_x(base + c), ld_x(base + c + TPR), ld_x(base + c + 2u * TPR), ld_x(base + c + 3u * TPR));
            st = lse_push4(st, v);
            c += 4u * TPR;
        }
        for (; c < cols; c += TPR) {
            st = lse_push(st, ld_x(base + c));
        }
    }
    if (TPR > 1u) {
        row_red[lid] = st;
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                row_red[lid] = lse_merge(row_red[lid], row_red[lid + s]);
            }
            workgroupBarrier();
        }
        st = row_red[lid - lane];
    }
    return st;
}
