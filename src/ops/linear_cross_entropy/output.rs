//! What [`LinearCrossEntropy`](super::LinearCrossEntropy)'s forward returns.

use crate::kernels::linear_cross_entropy::PART_WORDS;
use crate::tensor::{Indices, Tensor};

/// The forward results of [`LinearCrossEntropy`](super::LinearCrossEntropy).
#[derive(Clone, Debug)]
pub struct LinearCrossEntropyOutput {
    /// The loss: 0-d for `Mean` and `Sum`, the targets' shape for `None`.
    pub loss: Tensor,
    /// Each row's `logsumexp(z)` (the targets' shape).
    pub lse: Tensor,
    /// The per-token outputs, when [`token_outputs`](super::LinearCrossEntropy::token_outputs)
    /// asked for them.
    pub tokens: Option<TokenOutputs>,
    /// The row statistics the gradient needs, `[5, N]`: lse, the max logit,
    /// log Σ exp(z − max), the entropy (with token outputs) and the row's token weight (the
    /// backward uses its own call's). The max and log Σ are kept apart because `z − lse` with lse
    /// rounded at the max's magnitude loses digits (an f32 ulp of 1e4 is 1e-3).
    pub(super) stats: Tensor,
}

/// Per-token outputs of the LM head, from the same pass over the vocabulary as the loss: what
/// policy-gradient and preference objectives (DPO, KTO, GRPO) need of each token. Every tensor
/// has the targets' shape except `accuracy`. All are of the logits the loss sees, `cap(z) / T`.
#[derive(Clone, Debug)]
pub struct TokenOutputs {
    /// The target's log-probability, `z[t] − lse` (0 for ignored rows).
    pub logprob: Tensor,
    /// The entropy of the row's softmax, `lse − Σ p·z` (0 for ignored rows).
    pub entropy: Tensor,
    /// The predicted class, the first index of the row's largest logit as `torch.argmax`
    /// (−1 for a row whose logits hold a NaN or an infinity; ignored rows have theirs too).
    pub argmax: Indices,
    /// 1 where the argmax is the target, 0 elsewhere (and for ignored rows).
    pub correct: Tensor,
    /// Token accuracy: the mean of `correct` over the counted rows (0-d; NaN when none counts).
    pub accuracy: Tensor,
}

/// Upstream gradients of the per-token outputs ([`TokenOutputs`]), each the targets' shape, for
/// [`LinearCrossEntropy::backward_with_tokens`](super::LinearCrossEntropy::backward_with_tokens): what a policy-gradient objective (the
/// gradient of Σ g·logprob) or an entropy bonus (of Σ g·entropy) sends back.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenGrads<'a> {
    /// d objective / d logprob per row (ignored rows' logprob is the constant 0).
    pub logprob: Option<&'a Tensor>,
    /// d objective / d entropy per row (ignored rows' entropy is the constant 0).
    pub entropy: Option<&'a Tensor>,
}

/// Where a vocabulary shard of an LM head's W sits: its rows are classes
/// `start .. start + rows` of a vocabulary of `vocab` classes (see
/// [`LinearCrossEntropy::shard_state`](super::LinearCrossEntropy::shard_state)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabShard {
    pub start: usize,
    pub vocab: usize,
}

/// One vocabulary shard's per-row state: what a shard sends to the combine step, `O(N)`.
/// Ten 32-bit words a row, in row order: the shard's max logit m; Σ e^(z − m) less the max's own
/// term; Σ w·(z − x0) over its classes; the target's logit if the target is one of its classes
/// (else 0); x0 (the shard's first logit); Σ w over its classes; 1 (x0 set); Σ e^(z − m)·(z − m);
/// the shard's argmax as a global class; 0. A row holding a NaN or an infinity has a NaN first
/// word. The words are bit patterns of f32 except the argmax (u32).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardState {
    pub shard: VocabShard,
    /// The shard's classes, `V_k` (W's rows).
    pub classes: usize,
    pub rows: usize,
    pub words: Vec<u32>,
}

/// The words of a row in a [`ShardState`]: those of the kernel's partials.
pub const SHARD_STATE_WORDS: usize = PART_WORDS as usize;
