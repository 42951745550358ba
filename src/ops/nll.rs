//! `nll`: the negative log-likelihood gather from `(N, C)` log-probabilities
//! (`shaders/nll.wgsl`), one thread per row.

use super::Reduction;
use super::cross_entropy::{DEFAULT_IGNORE_INDEX, class_loss};
use crate::error::Result;
use crate::kernels::KernelId;
use crate::tensor::{Indices, Tensor};

const WG: u32 = 64;

/// Negative log-likelihood, as PyTorch's `F.nll_loss(logp, targets, weight, ignore_index,
/// reduction)`: per row `l = −w[t] · logp[t]`, with the same ignore, weighting and reduction
/// rules as [`CrossEntropy`](crate::CrossEntropy). `log_softmax` followed by `nll` equals
/// `cross_entropy`.
#[derive(Clone, Debug)]
pub struct Nll {
    /// Per-class weights, shape `(C)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
}

impl Default for Nll {
    fn default() -> Self {
        Nll { weight: None, ignore_index: DEFAULT_IGNORE_INDEX, reduction: Reduction::Mean }
    }
}

impl Nll {
    /// Sets per-class weights `(C)`.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the ignored target value.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss: a 0-d tensor for mean and sum, `(N)` for [`Reduction::None`].
    pub fn forward(&self, logp: &Tensor, targets: &Indices) -> Result<Tensor> {
        class_loss(
            "nll",
            KernelId::Nll,
            &[("WG", WG as f64)],
            |n| (n as u64).div_ceil(WG as u64),
            logp,
            targets,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
        )
    }
}

/// `F.nll_loss(logp, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn nll(logp: &Tensor, targets: &Indices) -> Result<Tensor> {
    Nll::default().forward(logp, targets)
}
