//! `shaders/rows.wgsl`: a row spread over threads with an online (max, sum-exp) state, shared by
//! `log_softmax` and `cross_entropy`; the loop bound of its users.

use crate::gpu::spec::log2_ceil;

/// The loops a row entry point runs over its row, for its loop bound.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowLoops {
    /// Passes that fold four elements a step whatever the layout (the online state).
    pub(crate) wide: u64,
    /// Passes that take four elements a step when rows are quads, else one.
    pub(crate) plain: u64,
    /// Merges across the row's threads (a tree of log2(TPR) steps each).
    pub(crate) trees: u64,
    /// Whether the plain passes read quads when rows allow it.
    pub(crate) quads: bool,
}

/// What a row entry's [`LoopBound`](super::LoopBound) is evaluated at: the row length, the
/// threads per row, and whether rows are read as quads (1) or not (0).
pub const ROW_EXTENTS: &[&str] = &["cols", "threads_per_row", "quads"];

impl RowLoops {
    /// The most loop iterations one invocation runs for rows of `cols` elements spread over
    /// `tpr` threads: a wide pass is ⌈cols / 4·tpr⌉ steps and a tail of at most four, a plain
    /// pass ⌈cols / tpr⌉ (a quarter of that over quads).
    pub(crate) const fn trips(self, cols: u64, tpr: u64, quads: bool) -> u64 {
        let per = if quads && self.quads { 4 } else { 1 };
        self.wide * (cols.div_ceil(4 * tpr) + 5)
            + self.plain * (cols.div_ceil(per * tpr) + 1)
            + self.trees * log2_ceil(tpr)
            + 4
    }

    /// [`RowLoops::trips`] at [`ROW_EXTENTS`].
    pub(crate) fn at(self, extents: &[u64]) -> u64 {
        self.trips(extents[0], extents[1], extents[2] != 0)
    }
}
