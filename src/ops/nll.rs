//! `nll`: the negative log-likelihood of log-probabilities (`shaders/nll.wgsl`), and its
//! gradient.

use super::class_rows::{DEFAULT_IGNORE_INDEX, Job, Target, class_options};
use super::{Outputs, Reduction, RowStrategy};
use crate::error::Result;
use crate::kernels::KernelId;
use crate::tensor::{Indices, Tensor};

/// Negative log-likelihood, as PyTorch's `F.nll_loss(logp, targets, weight, ignore_index,
/// reduction)`: per row `l = −w[t] · logp[t]`, with the same shapes, ignore, weighting and
/// reduction rules as [`CrossEntropy`](crate::CrossEntropy) with class ids. `log_softmax` over dim 1 followed by
/// `nll` equals `cross_entropy`.
#[derive(Clone, Debug)]
pub struct Nll {
    /// Per-class weights, shape `(C)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradient: the log-probabilities' own (default), or f32.
    pub outputs: Outputs,
}

impl Default for Nll {
    fn default() -> Self {
        Nll {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            outputs: Outputs::AsInputs,
        }
    }
}

class_options!(Nll);

impl Nll {
    fn job<'a>(&'a self, logp: &'a Tensor, targets: &'a Indices) -> Result<Job<'a>> {
        let mut job = Job::new(
            "nll",
            KernelId::Nll,
            logp,
            Target::Ids(targets),
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            0.0,
            RowStrategy::ThreadPerRow,
        )?;
        job.outputs = self.outputs;
        Ok(job)
    }

    /// Sets the element type of the gradient.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }

    /// The loss: a 0-d tensor for mean and sum, the targets' shape for [`Reduction::None`].
    pub fn forward(&self, logp: &Tensor, targets: &Indices) -> Result<Tensor> {
        self.job(logp, targets)?.forward()
    }

    /// The gradient with respect to the log-probabilities: `−w[t]·s` at each counted row's
    /// target, 0 elsewhere.
    pub fn backward(&self, logp: &Tensor, targets: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        Ok(self.job(logp, targets)?.backward(grad_output, false)?.0)
    }
}

/// `F.nll_loss(logp, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn nll(logp: &Tensor, targets: &Indices) -> Result<Tensor> {
    Nll::default().forward(logp, targets)
}
