//! What [`LinearCrossEntropy`](super::LinearCrossEntropy)'s forward returns.

use crate::tensor::Tensor;

/// The forward results of [`LinearCrossEntropy`](super::LinearCrossEntropy).
#[derive(Clone, Debug)]
pub struct LinearCrossEntropyOutput {
    /// The loss: 0-d for `Mean` and `Sum`, the targets' shape for `None`.
    pub loss: Tensor,
    /// Each row's `logsumexp(z)` (the targets' shape): pass it to
    /// [`LinearCrossEntropy::backward`](super::LinearCrossEntropy::backward) to skip recomputing it.
    pub lse: Tensor,
}
