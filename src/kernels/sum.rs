//! `shaders/sum.wgsl`: the fixed-order workgroup sum shared by `pointwise` and `reduce`.

/// Elements in one workgroup's chunk of a reduction to a scalar (64 threads × 64 items), the same
/// on every adapter, so the partition of a sum does not depend on the hardware.
pub(crate) const SUM_WG: u32 = 64;
pub(crate) const SUM_ITEMS: u32 = 64;
pub(crate) const SUM_CHUNK: u64 = (SUM_WG * SUM_ITEMS) as u64;

/// The override constants of a kernel that includes `sum.wgsl`.
pub(crate) fn sum_constants() -> [(&'static str, f64); 2] {
    [("WG", SUM_WG as f64), ("ITEMS", SUM_ITEMS as f64)]
}
