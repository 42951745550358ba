// nll: negative log-likelihood gather over log-probabilities, one thread per row: the target
// step of class_rows.wgsl with lse = 0, i.e. loss[r] = -w[t] * logp[r, t]; and its gradient,
// dx[r, c] = -w[t] s_r where c == t, else 0.
// bindings: 1 logp (rows, cols) | 7 g | 8 denom | 9 dx write, the rest as in class_rows.wgsl

override WG: u32 = 64u;
// The gradient's element type (0 f32, 1 f16, 2 bf16). A half is or-ed into its word of the
// cleared gradient, so rows whose nonzeros share a word do not race.
override DX_DTYPE: u32 = 0u;

// logp (f32 or half) is declared with its ld_logp accessor (kernels/source.rs).
@group(0) @binding(7) var<storage, read> g: array<f32>;
@group(0) @binding(8) var<storage, read> denom: array<f32>;
@group(0) @binding(9) var<storage, read_write> dx: array<atomic<u32>>;

fn ld_x(i: u32) -> f32 {
    return ld_logp(i);
}

@compute @workgroup_size(WG)
fn nll(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row < params.rows) {
        class_row(row, row_base(row), 0.0, 0.0, 0.0, vec2<f32>(0.0), false);
    }
}

// One thread per row scatters the row's one nonzero, -w[t] s_r, into dx, which the host has
// cleared with the copy engine (far cheaper than a kernel writing the zeros). Targets are
// validated by target_weights.
@compute @workgroup_size(WG)
fn nll_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let t = targets[row];
    if (t != params.ignore_index && t >= 0 && u32(t) < params.cols) {
        var s = g[0] * params.scale;
        if (params.g_mode == 0u) {
            s = g[row];
        } else if (params.g_mode == 2u) {
            s = s / denom[0];
        }
        let i = row_base(row) + u32(t) * params.inner;
        let b = bitcast<u32>(-class_weight(u32(t)) * s);
        if (DX_DTYPE == 0u) {
            atomicStore(&dx[i], b);
        } else {
            atomicOr(&dx[i / 2u], half_bits(b, DX_DTYPE) << (16u * (i % 2u)));
        }
    }
}
