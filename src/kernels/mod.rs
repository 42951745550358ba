//! The kernel layer: the table of every WGSL kernel, with its bindings and loop bounds.
//!
//! Every kernel is a WGSL file in `shaders/` (or WGSL written by `gemm.rs`), embedded at compile
//! time behind a small prelude (WGSL has no `#include`, so shared pieces are concatenated).
//! Each has one [`KernelSpec`] in a module of the same name here, next to the `Params` struct
//! its host side packs into the uniform: its entry points, each entry's bindings by name, slot
//! and access (ops bind with these constants, never a bare slot), and the [`LoopBound`] that
//! the software adapters' loop budget is planned and checked with. Pipelines are built from the
//! spec with explicit bind group layouts, and a test compares every spec with naga's
//! reflection of the shader. Shapes and scalar options travel in the per-dispatch uniform, so
//! one pipeline serves every shape; `override` constants pick the workgroup size and code paths.

pub mod bandwidth;
pub mod class_margin;
pub mod class_rows;
pub mod convert;
pub mod cross_entropy;
pub mod ctc;
pub mod divergence;
pub mod embedding_rows;
pub(crate) mod gemm;
pub mod linear;
pub mod linear_cross_entropy;
pub mod linear_staged;
pub mod log_softmax;
pub mod multilabel_margin;
pub mod nll;
pub mod pointwise;
pub mod reduce;
pub mod rows;
pub(crate) mod source;
pub mod sum;
pub mod sum_dim;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::pipeline::Pipeline;
pub use crate::gpu::spec::{
    Binding, BindingKind, EntrySpec, InputPath, KernelSpec, LoopBound, Reads, log2_ceil,
};
use crate::gpu::staging::Staging;

/// A list per kernel, made on first use and kept for the process.
type Listed<T> = OnceLock<Mutex<HashMap<KernelId, &'static [T]>>>;

/// A kernel family: one WGSL module with one or more entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelId {
    /// `y = x·Wᵀ + b`, shared-memory tiles (GPUs).
    Linear,
    /// `y = x·Wᵀ + b`, large register blocks and no barriers (software adapters).
    LinearBlocked,
    /// `linear`'s input gradient `dX = dY·W`, large register blocks, no barriers.
    LinearGradInput,
    /// `linear` and both its gradients with the operands staged in textures (software
    /// adapters).
    LinearStaged,
    /// `linear`'s weight gradient `dW = dYᵀ·X` and bias gradient (column sums of dY).
    LinearGradWeight,
    /// `log_softmax` and `softmax` over any dim, and their gradients.
    LogSoftmax,
    /// Fused log-softmax + NLL (class ids or probabilities, label smoothing, K-dim), its
    /// gradient, and top-k accuracy.
    CrossEntropy,
    /// NLL gather from log-probabilities, and its gradient.
    Nll,
    /// The generalised Jensen–Shannon divergence of two logit rows and the total variation
    /// distance of two probability rows, and their gradients.
    Divergence,
    /// `linear` + `cross_entropy` fused without the N×V logits: split-V partials of the
    /// log-sum-exp, their fixed-order merge, and the gradient of a tile of recomputed logits.
    LinearCrossEntropy,
    /// Every elementwise loss (mse, l1, smooth_l1, huber, bce, bce_with_logits, kl_div,
    /// soft_margin, sigmoid_focal, poisson_nll, hinge_embedding, gaussian_nll, margin_ranking),
    /// its gradients, and binary accuracy.
    Pointwise,
    /// Two-stage fixed-order reductions to a scalar.
    Reduce,
    /// The read-once and copy yardsticks for benchmarks.
    Bandwidth,
    /// A tensor's element type: half types widened to f32, f32 rounded to a half type.
    Convert,
    /// The sum over one dim in fixed chunks (a broadcast operand's gradient).
    SumDim,
    /// multi_margin and multilabel_soft_margin, each row over threads, and their gradients.
    ClassMargin,
    /// cosine_embedding and triplet_margin, each row over threads, and their gradients.
    EmbeddingRows,
    /// The CTC loss: alpha and beta recursions in log space, and its gradient.
    Ctc,
    /// multilabel_margin: its targets' check and count, target mask, per-target partial sums
    /// (in pieces of the row), and gradient.
    MultilabelMargin,
}

impl KernelId {
    /// Every kernel, for validation and warm-up.
    pub const ALL: [KernelId; 19] = [
        KernelId::Linear,
        KernelId::LinearBlocked,
        KernelId::LinearGradInput,
        KernelId::LinearStaged,
        KernelId::LinearGradWeight,
        KernelId::LogSoftmax,
        KernelId::CrossEntropy,
        KernelId::Nll,
        KernelId::Divergence,
        KernelId::LinearCrossEntropy,
        KernelId::Pointwise,
        KernelId::Reduce,
        KernelId::Bandwidth,
        KernelId::Convert,
        KernelId::SumDim,
        KernelId::ClassMargin,
        KernelId::EmbeddingRows,
        KernelId::Ctc,
        KernelId::MultilabelMargin,
    ];

    /// The kernel's spec: entry points, bindings, loop bounds, uniform size.
    pub fn spec(self) -> &'static KernelSpec {
        match self {
            KernelId::Linear => &linear::TILED,
            KernelId::LinearBlocked => &linear::BLOCKED,
            KernelId::LinearGradInput => &linear::GRAD_INPUT,
            KernelId::LinearStaged => &linear_staged::KERNEL,
            KernelId::LinearGradWeight => &linear::GRAD_WEIGHT,
            KernelId::LogSoftmax => &log_softmax::KERNEL,
            KernelId::CrossEntropy => &cross_entropy::KERNEL,
            KernelId::Nll => &nll::KERNEL,
            KernelId::Divergence => &divergence::KERNEL,
            KernelId::LinearCrossEntropy => &linear_cross_entropy::KERNEL,
            KernelId::Pointwise => &pointwise::KERNEL,
            KernelId::Reduce => &reduce::KERNEL,
            KernelId::Bandwidth => &bandwidth::KERNEL,
            KernelId::Convert => &convert::KERNEL,
            KernelId::SumDim => &sum_dim::KERNEL,
            KernelId::ClassMargin => &class_margin::KERNEL,
            KernelId::EmbeddingRows => &embedding_rows::KERNEL,
            KernelId::Ctc => &ctc::KERNEL,
            KernelId::MultilabelMargin => &multilabel_margin::KERNEL,
        }
    }

    /// The kernel's name: its shader file and its kernel module.
    pub fn label(self) -> &'static str {
        self.spec().name
    }

    /// The complete WGSL source (prelude and shared pieces included), reading its staged
    /// inputs from storage buffers.
    pub fn source(self) -> &'static str {
        self.source_for(InputPath::Storage)
    }

    /// The complete WGSL source with the staged inputs read as `reads` says (an
    /// [`InputPath`] alone: every staged input f32).
    pub fn source_for(self, reads: impl Into<Reads>) -> &'static str {
        (self.spec().source)(reads.into())
    }

    /// The inputs this kernel reads through `ld_<name>(i)` (one element) and `ld4_<name>(q)`
    /// (elements 4q .. 4q + 3) accessors, by name and binding slot: the large operands that
    /// software adapters stage in textures.
    pub fn staged_inputs(self) -> &'static [(&'static str, u32)] {
        static STAGED: Listed<(&'static str, u32)> = OnceLock::new();
        let mut map = STAGED.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
        map.entry(self).or_insert_with(|| {
            let staged: Vec<(&'static str, u32)> =
                self.spec().staged().iter().map(|b| (b.name, b.slot)).collect();
            // One small list per kernel, made once and kept for the process.
            Box::leak(staged.into_boxed_slice())
        })
    }

    /// The entry points of the module.
    pub fn entry_points(self) -> &'static [&'static str] {
        static ENTRIES: Listed<&'static str> = OnceLock::new();
        let mut map = ENTRIES.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
        map.entry(self).or_insert_with(|| {
            let names: Vec<&'static str> = self.spec().entries.iter().map(|e| e.name).collect();
            Box::leak(names.into_boxed_slice())
        })
    }

    /// The cached pipeline of `entry` reading its staged inputs (f32) from storage buffers.
    pub(crate) fn pipeline(
        self,
        dev: &Device,
        entry: &str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        dev.pipeline(self.spec(), Reads::new(InputPath::Storage), entry, constants)
    }

    /// The cached pipeline of `entry` reading its staged inputs as `reads` says.
    pub(crate) fn pipeline_for(
        self,
        dev: &Device,
        reads: Reads,
        entry: &str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        dev.pipeline(self.spec(), reads, entry, constants)
    }

    /// How this kernel reads the inputs it would stage: each `(binding, buffer, elements,
    /// element type)`.
    pub(crate) fn reads(self, dev: &Device, staged: &[Staging<'_>]) -> Result<Reads> {
        dev.reads(self.spec(), staged)
    }
}

/// The size in bytes of the uniform each kernel's host side packs (its spec's `uniform_size`),
/// for the layout test that compares it with the WGSL `Params` struct.
#[doc(hidden)]
pub fn uniform_size(kernel: KernelId) -> usize {
    kernel.spec().uniform_size
}
