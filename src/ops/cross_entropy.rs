//! `cross_entropy`: log-softmax and NLL fused into one pass over the logits
//! (`shaders/cross_entropy.wgsl`); the log-probabilities are never written. Also its gradient,
//! and top-k [`Accuracy`] over the same rows.
//!
//! Shapes follow PyTorch: logits `(N, C)`, `(N, C, d1, …, dk)` (the class dim is dim 1, read in
//! place with a stride) or unbatched `(C)`; class-id targets `(N, d1, …, dk)` (or `()`), or
//! probability targets of the logits' own shape. Nothing is broadcast.

use super::class_rows::{Job, Target, class_options};
use super::{Outputs, Reduction, RowStrategy};
use crate::error::{Error, Result};
use crate::kernels::KernelId;
use crate::tensor::{Indices, Tensor};

pub use super::class_rows::DEFAULT_IGNORE_INDEX;
/// `Nll` and `nll` live in [`super::nll`]; they are here too, where they were first.
pub use super::nll::{Nll, nll};

/// Cross-entropy, as PyTorch's `F.cross_entropy(logits, targets, weight, ignore_index,
/// reduction, label_smoothing)`.
///
/// With class ids, per row `l = w[t] · (logsumexp(x) − x[t])`; rows whose target is
/// `ignore_index` give 0 and are left out of the mean, whose denominator is `Σ w[t]` over the
/// counted rows (the row count without weights). With label smoothing ε the row loss is
/// `(1 − ε)·l + ε/C · Σ_c w[c]·(logsumexp(x) − x[c])`, ignored rows still 0, the same mean
/// denominator. A mean over no counted row is NaN, a sum 0. A target that is neither a class nor
/// `ignore_index` makes reading the result fail with [`Error::TargetOutOfRange`]; the kernel
/// never reads out of bounds.
///
/// With probability targets ([`CrossEntropy::forward_probs`]) the row loss is
/// `Σ_c w[c]·y'[c]·(logsumexp(x) − x[c])` with `y' = (1 − ε)·y + ε/C`, and the mean divides by
/// the number of rows `N·d1⋯dk` even with weights, as PyTorch does.
///
/// A row holding a NaN has a NaN loss (and a NaN gradient), which a mean or sum carries.
///
/// ```
/// use wgpu_loss::{CrossEntropy, Device};
/// let dev = Device::new()?;
/// let logits = dev.tensor(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3])?;
/// let targets = dev.indices(&[2i64, 0], &[2])?;
/// let loss = CrossEntropy::default().forward(&logits, &targets)?.item()?;
/// assert!((loss - 1.40760596).abs() < 1e-5);
/// // the gradient of the mean: (softmax − one-hot) / 2
/// let g = dev.tensor(&[1.0], &[])?;
/// let dx = CrossEntropy::default().backward(&logits, &targets, &g)?.to_vec()?;
/// assert!((dx[2] - (0.66524096 - 1.0) / 2.0).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CrossEntropy {
    /// Per-class weights, shape `(C)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
    /// Label smoothing ε in [0, 1] (default 0).
    pub label_smoothing: f32,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
    /// The element type of the gradients: the logits' (and the probability targets') own
    /// (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            strategy: RowStrategy::Auto,
            outputs: Outputs::AsInputs,
        }
    }
}

class_options!(CrossEntropy);

impl CrossEntropy {
    /// Sets label smoothing ε ∈ [0, 1].
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Sets the row strategy.
    pub fn strategy(mut self, strategy: RowStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the element type of the gradients.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }

    fn job<'a>(&'a self, logits: &'a Tensor, targets: Target<'a>) -> Result<Job<'a>> {
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label_smoothing must be in [0, 1], got {eps}"),
            ));
        }
        if matches!(targets, Target::Probs(_)) && self.ignore_index >= 0 {
            return Err(Error::invalid(
                "cross_entropy",
                "ignore_index must be negative with probability targets (PyTorch does not support it)",
            ));
        }
        let mut job = Job::new(
            "cross_entropy",
            KernelId::CrossEntropy,
            logits,
            targets,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            eps,
            self.strategy,
        )?;
        job.outputs = self.outputs;
        Ok(job)
    }

    /// The loss over class-id targets: a 0-d tensor for mean and sum, the targets' shape for
    /// [`Reduction::None`].
    pub fn forward(&self, logits: &Tensor, targets: &Indices) -> Result<Tensor> {
        self.job(logits, Target::Ids(targets))?.forward()
    }

    /// The loss over probability targets of the logits' shape.
    pub fn forward_probs(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.job(logits, Target::Probs(targets))?.forward()
    }

    /// The gradient with respect to the logits, given the upstream gradient (one value for mean
    /// and sum, the targets' shape for `None`): softmax minus the smoothed, weighted one-hot,
    /// scaled; ignored rows 0.
    pub fn backward(&self, logits: &Tensor, targets: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        Ok(self.job(logits, Target::Ids(targets))?.backward(grad_output, false)?.0)
    }

    /// The gradients with respect to the logits and to the probability targets.
    pub fn backward_probs(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (dx, dy) = self.job(logits, Target::Probs(targets))?.backward(grad_output, true)?;
        Ok((dx, dy.expect("backward returns the target gradient when asked")))
    }
}

/// `F.cross_entropy(logits, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn cross_entropy(logits: &Tensor, targets: &Indices) -> Result<Tensor> {
    CrossEntropy::default().forward(logits, targets)
}

/// Top-k accuracy over class-id targets, with the shapes of [`CrossEntropy`]: a row is right
/// when fewer than `top_k` classes have a strictly larger logit than its target's (ties count
/// for the target). Rows whose target is `ignore_index` are left out; the result is the
/// fraction of counted rows that are right, NaN when none is counted.
///
/// ```
/// use wgpu_loss::{Accuracy, Device};
/// let dev = Device::new()?;
/// let logits = dev.tensor(&[0.1, 0.7, 0.2, 0.5, 0.3, 0.2], &[2, 3])?;
/// let targets = dev.indices(&[1i64, 1], &[2])?;
/// assert_eq!(Accuracy::default().forward(&logits, &targets)?.item()?, 0.5);
/// assert_eq!(Accuracy::default().top_k(2).forward(&logits, &targets)?.item()?, 1.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Accuracy {
    /// How many of the largest logits may hold the target (default 1).
    pub top_k: usize,
    /// Targets equal to this are left out (default −100).
    pub ignore_index: i64,
}

impl Default for Accuracy {
    fn default() -> Self {
        Accuracy { top_k: 1, ignore_index: DEFAULT_IGNORE_INDEX }
    }
}

impl Accuracy {
    /// Sets k.
    pub fn top_k(mut self, top_k: usize) -> Self {
        self.top_k = top_k;
        self
    }

    /// Sets the ignored target value.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// The fraction of counted rows whose target is among the `top_k` largest logits (0-d).
    /// `top_k` must be in `1..=C`.
    pub fn forward(&self, logits: &Tensor, targets: &Indices) -> Result<Tensor> {
        if self.top_k == 0 {
            return Err(Error::invalid("accuracy", "top_k must be at least 1"));
        }
        let job = Job::new(
            "accuracy",
            KernelId::CrossEntropy,
            logits,
            Target::Ids(targets),
            None,
            self.ignore_index,
            Reduction::Mean,
            0.0,
            RowStrategy::Auto,
        )?;
        let classes = job.rows.cols;
        if self.top_k > classes {
            // As PyTorch's topk: k may not exceed the size of the class dim.
            return Err(Error::invalid(
                "accuracy",
                format!("top_k {} exceeds the number of classes {classes}", self.top_k),
            ));
        }
        job.run_rows("accuracy", self.top_k as u32)
    }
}
