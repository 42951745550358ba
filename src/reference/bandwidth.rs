//! f64 twins of the `bandwidth` yardsticks.

/// Threads per workgroup and vec4s per thread of `read_sum`.
const WG: usize = 64;
const ITEMS: usize = 64;

/// `read_sum`'s output for `x` (a multiple of 4 elements): thread `t = g·64 + l` (workgroup g,
/// lane l) adds the vec4s `g·4096 + k·64 + l`, k < 64, component by component; one vec4 per
/// thread of every workgroup.
pub fn read_sum(x: &[f32]) -> Vec<f64> {
    let n4 = x.len() / 4;
    let groups = n4.div_ceil(WG * ITEMS);
    let mut out = vec![0.0; groups * WG * 4];
    for (q, quad) in x.chunks_exact(4).enumerate() {
        let (g, rem) = (q / (WG * ITEMS), q % (WG * ITEMS));
        let t = g * WG + rem % WG;
        for (c, &v) in quad.iter().enumerate() {
            out[t * 4 + c] += v as f64;
        }
    }
    out
}

/// `copy`'s output: `x` itself.
pub fn copy(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
