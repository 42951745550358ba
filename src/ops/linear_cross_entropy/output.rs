//! What [`LinearCrossEntropy`](super::LinearCrossEntropy)'s forward returns.

use crate::tensor::Tensor;

/// The forward results of [`LinearCrossEntropy`](super::LinearCrossEntropy).
#[derive(Clone, Debug)]
pub struct LinearCrossEntropyOutput {
    /// The loss: 0-d for `Mean` and `Sum`, the targets' shape for `None`.
    pub loss: Tensor,
    /// Each row's `logsumexp(z)` (the targets' shape).
    pub lse: Tensor,
    /// The row statistics the gradient needs, `[4, N]`: lse, the max logit,
    /// log Σ exp(z − max) and the row's token weight (the backward uses its own call's). The max and log Σ are kept apart because `z − lse` with lse rounded at
    /// the max's magnitude loses digits (an f32 ulp of 1e4 is 1e-3).
    pub(super) stats: Tensor,
}
