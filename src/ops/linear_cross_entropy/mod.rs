//! `linear_cross_entropy`: the LM-head loss `cross_entropy(x·Wᵀ + b, targets)` and its gradients
//! in x, W and b without ever holding the N×V logits (`shaders/linear_cross_entropy.wgsl`).
//!
//! - **Forward, split-V:** threads own (a block of rows, a slice of the vocabulary), compute their
//!   logits with a register-blocked GEMM and fold them straight into per-row online
//!   log-sum-exp partials; a second kernel merges the partials of each row in slice order. Only
//!   `N × slices` partials are stored.
//! - **Backward, chunked recompute:** tiles of `rows × columns` logits are recomputed into one
//!   reusable scratch buffer (at most [`LinearCrossEntropy::max_scratch_bytes`]), turned into the
//!   gradient in place, and fed to the same GEMMs as [`Linear::backward`](crate::Linear::backward):
//!   dX accumulates over column tiles, dW and db over row chunks, always in the same order, so
//!   the gradients are bitwise reproducible.
//! - **Forward and backward together** ([`LinearCrossEntropy::forward_backward`]): when whole
//!   rows of logits fit the scratch, each chunk's logits are computed once and give the loss,
//!   the log-sum-exp and the gradient in one pass over the vocabulary.
//! - W larger than a storage binding is bound in V-shards of whole 64-row blocks.
//!
//! `options.rs` holds the loss's options, `plan.rs` the validated call and its tiling,
//! `forward.rs` the split-V forward, `backward.rs` the gradient by tiles.

mod backward;
mod forward;
mod options;
mod output;
mod plan;
mod vocab_parallel;

pub use options::{CCE_FILTER_EPS, DEFAULT_MAX_SCRATCH_BYTES, LinearCrossEntropy};
pub use output::{
    LinearCrossEntropyOutput, SHARD_STATE_WORDS, ShardState, TokenGrads, TokenOutputs, VocabShard,
};
pub use vocab_parallel::Combined;

use options::OP;
use output::Source;
use plan::Operands;

use crate::error::{Error, Result};
use crate::kernels::linear_cross_entropy::STAT_PLANES;
use crate::ops::convert::f32_operand;
use crate::ops::linear::LinearGrads;
use crate::tensor::{Indices, Tensor, same_device};

impl LinearCrossEntropy {
    /// The loss and every row's log-sum-exp, from split-V partials (no logits stored); with
    /// [`token_outputs`](Self::token_outputs) also the per-token outputs, from the same pass.
    pub fn forward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
    ) -> Result<LinearCrossEntropyOutput> {
        x.device().op(OP, || {
            let ops = Operands::new(self, x, weight, bias)?;
            let job = ops.job(targets)?;
            let prep = job.prepare()?;
            let out = job.forward(&prep, self.token_outputs)?;
            Ok(LinearCrossEntropyOutput { source: Source::of(self, x, weight, bias), ..out })
        })
    }

    /// The gradients `dX`, `dW` and `db` for `grad_output` (one value, or the targets' shape for
    /// `Reduction::None`). `forward` is this call's forward output for the same inputs (its
    /// per-row statistics: the max logit and log Σ exp, kept apart); without it the forward's
    /// partials run again to find them.
    pub fn backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
        grad_output: &Tensor,
        forward: Option<&LinearCrossEntropyOutput>,
    ) -> Result<LinearGrads> {
        self.backward_with_tokens(x, weight, bias, targets, grad_output, TokenGrads::default(), forward)
    }

    /// [`backward`](Self::backward) with upstream gradients of the per-token outputs as well:
    /// the gradients of `loss·grad_output + Σ g_logprob·logprob + Σ g_entropy·entropy`, all in
    /// the one backward. An entropy gradient needs the forward's entropy: `forward` from a call
    /// with [`token_outputs`](Self::token_outputs), or none (the forward then runs again).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with_tokens(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
        grad_output: &Tensor,
        tokens: TokenGrads<'_>,
        forward: Option<&LinearCrossEntropyOutput>,
    ) -> Result<LinearGrads> {
        x.device().op(OP, || {
            let ops = Operands::new(self, x, weight, bias)?;
            let job = ops.job(targets)?;
            job.check_grad(grad_output)?;
            let (grad, bits) = job.upstream(grad_output, tokens)?;
            if let Some(out) = forward {
                same_device(OP, job.dev, &[out.stats.device()])?;
                if out.lse.shape != job.lead || out.stats.shape != [STAT_PLANES as usize, job.n] {
                    let got = &out.lse.shape;
                    return Err(Error::shape(
                        OP,
                        format!("the forward's rows must be {:?}, got {got:?}", job.lead),
                    ));
                }
                if !out.source.matches(&Source::of(self, x, weight, bias)) {
                    return Err(Error::invalid(
                        OP,
                        "the forward output given is another call's (other x, W, bias, softcap or temperature); give this call's, or None",
                    ));
                }
                if tokens.entropy.is_some() && out.tokens.is_none() {
                    return Err(Error::invalid(
                        OP,
                        "an entropy gradient needs a forward output made with token_outputs",
                    ));
                }
            }
            let prep = job.prepare()?;
            let plan = job.tile_plan(false)?;
            let stats = match forward {
                Some(out) => out.stats.clone(),
                None => job.forward(&prep, tokens.entropy.is_some())?.stats,
            };
            let grads = job.grads(&prep, &grad, Some(&stats), plan, bits)?.0;
            grads.typed(x.dtype, weight.dtype, self.outputs)
        })
    }

    /// The forward and the backward of one training step. When whole rows of logits fit the
    /// scratch (at least one GEMM block of rows) and no per-token outputs are asked for, each
    /// chunk's logits are computed once and give the loss, the log-sum-exp and the gradient;
    /// otherwise this is `forward` then `backward`.
    pub fn forward_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
        grad_output: &Tensor,
    ) -> Result<(LinearCrossEntropyOutput, LinearGrads)> {
        x.device().op(OP, || {
            let ops = Operands::new(self, x, weight, bias)?;
            let job = ops.job(targets)?;
            job.check_grad(grad_output)?;
            let grad_output = &f32_operand(grad_output)?;
            let prep = job.prepare()?;
            let plan = job.tile_plan(true)?;
            if plan.whole_rows && job.n > 0 && !self.token_outputs {
                let (grads, out) = job.grads(&prep, grad_output, None, plan, 0)?;
                let out = out.ok_or_else(|| Error::Wgpu("the one-pass plan returned no loss".into()))?;
                let out = LinearCrossEntropyOutput { source: Source::of(self, x, weight, bias), ..out };
                return Ok((out, grads.typed(x.dtype, weight.dtype, self.outputs)?));
            }
            let out = job.forward(&prep, self.token_outputs)?;
            let out = LinearCrossEntropyOutput { source: Source::of(self, x, weight, bias), ..out };
            let (grads, _) = job.grads(&prep, grad_output, Some(&out.stats), plan, 0)?;
            Ok((out, grads.typed(x.dtype, weight.dtype, self.outputs)?))
        })
    }
}

/// `LinearCrossEntropy::default().forward(x, weight, bias, targets)`'s mean loss: the fused
/// `F.cross_entropy(F.linear(x, weight, bias), targets)`.
pub fn linear_cross_entropy(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    targets: &Indices,
) -> Result<Tensor> {
    Ok(LinearCrossEntropy::default().forward(x, weight, bias, targets)?.loss)
}
