//! What [`LinearCrossEntropy`](super::LinearCrossEntropy)'s forward returns.

use std::sync::{Arc, Weak};

use super::options::LinearCrossEntropy;
use crate::kernels::linear_cross_entropy::PART_WORDS;
use crate::tensor::{Indices, Storage, Tensor};

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
    /// What the statistics were computed from, checked by a backward given this output.
    pub(super) source: Source,
}

/// What a forward output's row statistics were computed from: x, W and the bias (held weakly:
/// the output keeps no input alive, and a dropped input never matches a new one, even in the
/// same pooled buffer), the softcap and the temperature. A backward given the output of
/// another call refuses it rather than compute gradients from the wrong statistics.
#[derive(Clone, Debug, Default)]
pub(super) struct Source {
    inputs: Vec<Option<Weak<Storage>>>,
    softcap: Option<u32>,
    temperature: u32,
}

impl Source {
    pub(super) fn of(o: &LinearCrossEntropy, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Source {
        let weak = |t: Option<&Tensor>| t.map(|t| Arc::downgrade(&t.storage));
        Source {
            inputs: vec![weak(Some(x)), weak(Some(w)), weak(bias)],
            softcap: o.softcap.map(f32::to_bits),
            temperature: o.temperature.to_bits(),
        }
    }

    /// Whether `self` (an output's) is the source `call` describes.
    pub(super) fn matches(&self, call: &Source) -> bool {
        let same = |a: &Option<Weak<Storage>>, b: &Option<Weak<Storage>>| match (a, b) {
            (Some(a), Some(b)) => Weak::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.inputs.len() == call.inputs.len()
            && self.inputs.iter().zip(&call.inputs).all(|(a, b)| same(a, b))
            && self.softcap == call.softcap
            && self.temperature == call.temperature
    }
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

/// Where a vocabulary shard of an LM head's W sits in the whole vocabulary: its rows are the
/// classes `start .. start + rows` of a vocabulary of `global_vocab` classes, the same number on
/// every shard (see [`LinearCrossEntropy::shard_state`](super::LinearCrossEntropy::shard_state)).
/// The shard's own size is its W's rows.
///
/// ```
/// // The second half of a 32 000-class vocabulary: W_shard holds its 16 000 rows.
/// let shard = wgpu_loss::VocabShard { start: 16_000, global_vocab: 32_000 };
/// # let _ = shard;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabShard {
    /// The class of the shard's first row.
    pub start: usize,
    /// The whole vocabulary's size V (not the shard's).
    pub global_vocab: usize,
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
