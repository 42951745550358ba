//! [`LinearCrossEntropy`]'s options and their defaults.

use crate::ops::class_rows::DEFAULT_IGNORE_INDEX;
use crate::ops::linear::LinearKernel;
use crate::ops::{Outputs, Reduction};
use crate::tensor::Tensor;

/// The operation's name in errors.
pub(super) const OP: &str = "linear_cross_entropy";

/// The default cap on the scratch buffer of logits (and on the forward's partials, unless a
/// software adapter's loop budget needs more slices): 4 MiB.
pub const DEFAULT_MAX_SCRATCH_BYTES: u64 = 4 << 20;

/// The fused LM-head loss: `cross_entropy(cap(x·Wᵀ + b), targets) + z_loss·logsumexp²`, as
/// PyTorch's `F.cross_entropy(F.linear(x, W, b), targets, ...)` with Liger Kernel's `softcap`
/// and `z_loss`, computed without materialising the `N × V` logits.
///
/// x is `(.., H)` (leading dims flattened to N rows), W `(V, H)`, b `(V)`, targets the leading
/// shape (class ids or `ignore_index`). With `z = cap(x·Wᵀ + b)`, where
/// `cap(z) = s·tanh(z / s)` when [`softcap`](Self::softcap) is `Some(s)`, and
/// `lse = logsumexp(z)`, each counted row's loss is
///
/// `(1 − ε)·w[t]·(lse − z[t]) + ε/V·Σ_c w[c]·(lse − z[c]) + λ·lse²`
///
/// (with a [`temperature`](Self::temperature) T, z is `cap(x·Wᵀ + b) / T`)
///
/// (ε the label smoothing, w the class weights, λ the z-loss); ignored rows give 0. `Mean`
/// divides the cross-entropy part by `Σ w[t]` over counted rows (as PyTorch) and the z-loss part by
/// the number of counted rows (as Liger Kernel; the same thing without class weights); a mean
/// over no counted row is NaN. A row whose logits hold a NaN or an infinity has a NaN loss and
/// gradient. A target outside `0..V` that is not `ignore_index` makes reading any result fail
/// with [`Error::TargetOutOfRange`](crate::Error::TargetOutOfRange).
///
/// Extra GPU memory is the scratch (at most [`max_scratch_bytes`](Self::max_scratch_bytes),
/// 4 MiB by default) and a few values per row; results do not depend on the scratch size
/// beyond f32 rounding, and are bitwise reproducible for a given size on one adapter.
///
/// ```
/// use wgpu_loss::{Device, LinearCrossEntropy, cross_entropy, linear};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0, 0.5, -1.0], &[2, 2])?;
/// let w = dev.tensor(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
/// let t = dev.indices(&[2i64, 0], &[2])?;
/// let fused = LinearCrossEntropy::default().forward(&x, &w, None, &t)?;
/// let unfused = cross_entropy(&linear(&x, &w, None)?, &t)?;
/// assert!((fused.loss.item()? - unfused.item()?).abs() < 1e-6);
///
/// // a training step: the loss and dX, dW, db for an upstream gradient of 1
/// let one = dev.tensor(&[1.0], &[])?;
/// let (out, grads) = LinearCrossEntropy::default().forward_backward(&x, &w, None, &t, &one)?;
/// assert_eq!(grads.weight.shape(), &[3, 2]);
/// assert!((out.loss.item()? - unfused.item()?).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinearCrossEntropy {
    /// Per-class weights `(V)`.
    pub weight: Option<Tensor>,
    /// Per-token weights, the targets' shape (default none): each row's loss (cross-entropy and
    /// z-loss) and gradient are scaled by its weight s, and `Mean` divides by Σ s·w\[t\] (and the
    /// z-loss by Σ s) over the counted rows — PyTorch's weighted mean generalised. Rows of
    /// weight 0 skip their gradient's computation.
    pub token_weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
    /// Label smoothing ε in [0, 1] (default 0).
    pub label_smoothing: f32,
    /// `s` of the logit softcap `s·tanh(z / s)` (default none).
    pub softcap: Option<f32>,
    /// The temperature T > 0 the (capped) logits are divided by before the softmax (default 1):
    /// every output and gradient is that of `cap(z) / T`, as Liger Kernel's scaled
    /// cross-entropy.
    pub temperature: f32,
    /// λ of the z-loss `λ·logsumexp²` (default 0).
    pub z_loss: f32,
    /// The most bytes of scratch for recomputed logits and partials (default
    /// [`DEFAULT_MAX_SCRATCH_BYTES`]); the tiles shrink to fit, never below 64 columns of one
    /// aligned block of rows.
    pub max_scratch_bytes: u64,
    /// The GEMM that recomputes logit tiles.
    pub kernel: LinearKernel,
    /// Cut Cross-Entropy's gradient filter (default off): a block of 64 vocabulary columns of a
    /// backward tile whose every gradient is below `eps` times the upstream scale is skipped by
    /// the dX, dW and db GEMMs (as if those gradients were 0). CCE uses 2⁻²⁸ for f32
    /// ([`CCE_FILTER_EPS`]). It trades exactness for time when probabilities concentrate on few
    /// classes; the loss is unchanged.
    pub filter_eps: Option<f32>,
    /// Whether the forward also returns the per-token outputs (logprob, entropy, argmax,
    /// correct, token accuracy; [`TokenOutputs`](super::TokenOutputs)) from its pass over the
    /// vocabulary (default false). `forward_backward` then runs the split-V forward and the
    /// tiled backward rather than one pass of whole rows.
    pub token_outputs: bool,
    /// The element type of the gradients: dX in x's, dW and db in W's, each rounded once from
    /// its f32 accumulation (default), or all f32 unrounded (Liger Kernel's `accum_dtype`,
    /// Cut Cross-Entropy's `accum_c_fp32`). Half-precision x, W and b are widened exactly and
    /// every sum runs in f32 either way.
    pub outputs: Outputs,
}

/// Cut Cross-Entropy's default filter threshold for f32 gradients: `f32::EPSILON / 32` = 2⁻²⁸.
pub const CCE_FILTER_EPS: f32 = f32::EPSILON / 32.0;

impl Default for LinearCrossEntropy {
    fn default() -> Self {
        LinearCrossEntropy {
            weight: None,
            token_weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            softcap: None,
            temperature: 1.0,
            z_loss: 0.0,
            max_scratch_bytes: DEFAULT_MAX_SCRATCH_BYTES,
            kernel: LinearKernel::Auto,
            filter_eps: None,
            token_outputs: false,
            outputs: Outputs::AsInputs,
        }
    }
}

impl LinearCrossEntropy {
    /// Sets per-class weights `(V)`, as [`CrossEntropy::weight`](crate::CrossEntropy::weight).
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Asks the forward for the per-token outputs; see [`token_outputs`](Self::token_outputs).
    pub fn token_outputs(mut self, on: bool) -> Self {
        self.token_outputs = on;
        self
    }

    /// Sets per-token weights (the targets' shape); see [`token_weight`](Self::token_weight).
    pub fn token_weight(mut self, weights: Tensor) -> Self {
        self.token_weight = Some(weights);
        self
    }

    /// Sets per-class weights `(V)`: the old name of [`LinearCrossEntropy::weight`].
    #[deprecated(since = "0.1.0", note = "renamed `weight`, as in `CrossEntropy` and `Nll`")]
    pub fn class_weight(self, weight: Tensor) -> Self {
        self.weight(weight)
    }

    /// Sets the element type of the gradients.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
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

    /// Sets label smoothing ε in [0, 1].
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Caps the logits with `s·tanh(z / s)`, `s > 0`.
    pub fn softcap(mut self, s: f32) -> Self {
        self.softcap = Some(s);
        self
    }

    /// Divides the (capped) logits by the temperature `t > 0`.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Adds the z-loss `λ·logsumexp²`, `λ ≥ 0`.
    pub fn z_loss(mut self, lambda: f32) -> Self {
        self.z_loss = lambda;
        self
    }

    /// Caps the scratch memory.
    pub fn max_scratch_bytes(mut self, bytes: u64) -> Self {
        self.max_scratch_bytes = bytes;
        self
    }

    /// Chooses the GEMM that recomputes logit tiles.
    pub fn kernel(mut self, kernel: LinearKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Turns on the gradient filter with threshold `eps ≥ 0` (see
    /// [`filter_eps`](Self::filter_eps)).
    pub fn filter(mut self, eps: f32) -> Self {
        self.filter_eps = Some(eps);
        self
    }
}
