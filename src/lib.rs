//! # wgpu-loss
//!
//! Machine-learning losses evaluated on any GPU through [wgpu] and WGSL compute shaders —
//! Vulkan, Metal, DX12, GL, and the Mesa software adapters (lavapipe, llvmpipe) where there is
//! no GPU — with PyTorch's semantics, deterministic reductions, and a CPU f64 reference for
//! every kernel ([`reference`](mod@reference)).
//!
//! ```
//! use wgpu_loss::{CrossEntropy, Device};
//!
//! let dev = Device::new()?; // best adapter; honours WGPU_BACKEND / WGPU_ADAPTER_NAME
//! let logits = dev.tensor(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3])?;
//! let targets = dev.indices(&[2i64, 0], &[2])?;
//! let loss: f32 = CrossEntropy::default().forward(&logits, &targets)?.item()?;
//! assert!((loss - 1.40760596).abs() < 1e-5);
//! # Ok::<(), wgpu_loss::Error>(())
//! ```
//!
//! Each operation records into an encoder of its own and queues it once it has succeeded;
//! reading a result (or [`Device::flush`]) submits everything queued, so a chain of operations
//! is one submission and reading a scalar loss maps 4 bytes. A failed operation reports its own
//! error and queues nothing; a lost device is [`Error::DeviceLost`] everywhere.
//!
//! ## The loop budget
//!
//! Mesa's software adapters end a shader invocation after 65 535 loop iterations without an
//! error. Every kernel plans within [`Device::loop_budget`] (splitting rows, k, reductions) or
//! returns [`Error::Limit`] naming the shape; no dispatch ever runs past it.
//!
//! ## Numerics
//!
//! WGSL lets implementations assume no inf or NaN ever occurs, so kernels use finite sentinels
//! and explicit masks, find NaN inputs with integer bit tests and write NaN results as bit
//! patterns: a NaN in the input gives NaN where PyTorch gives it (the element, the row of a
//! softmax-based loss, any mean or sum over it). Stable formulas are used throughout
//! (max-shifted log-sum-exp, softplus with a series `log1p`). Reductions to a scalar are
//! staged and fixed-order: bitwise reproducible from run to run on one adapter.
//!
//! Every loss has a `backward` giving the gradient in its input for an upstream gradient,
//! computed by WGSL kernels, with f64 twins in [`reference`](mod@reference).

pub mod catalogue;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod data;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod ops;
pub mod reference;
pub mod tensor;

pub use gpu::device;

pub use device::{Device, DeviceOptions, INSTALL_HELP, MIN_LOOP_BUDGET, SOFTWARE_LOOP_BUDGET};
pub use dtype::{DType, Element};
pub use error::{Error, NO_IGNORE_INDEX, Result};
pub use half::{bf16, f16};
pub use kernels::KernelId;
pub use ops::class_margin::{MultiMargin, MultilabelSoftMargin};
pub use ops::cross_entropy::{Accuracy, CrossEntropy, DEFAULT_IGNORE_INDEX, cross_entropy};
pub use ops::ctc::Ctc;
pub use ops::divergence::{Jsd, Tvd};
pub use ops::embedding_rows::{CosineEmbedding, TripletMargin};
pub use ops::linear::{Linear, LinearGrads, LinearKernel, linear};
pub use ops::linear_cross_entropy::{
    CCE_FILTER_EPS, Combined, DEFAULT_MAX_SCRATCH_BYTES, LinearCrossEntropy, LinearCrossEntropyOutput,
    SHARD_STATE_WORDS, ShardState, TokenGrads, TokenOutputs, VocabShard, linear_cross_entropy,
};
pub use ops::linear_jsd::{DEFAULT_JSD_SCRATCH_BYTES, LinearHead, LinearJsd};
pub use ops::log_softmax::{LogSoftmax, Softmax, log_softmax, softmax};
pub use ops::multilabel_margin::MultilabelMargin;
pub use ops::nll::{Nll, nll};
pub use ops::pointwise::{
    Bce, BceWithLogits, GaussianNll, HingeEmbedding, Huber, KlDiv, KlReduction, L1, MarginRanking, Mse,
    PoissonNll, SigmoidFocal, SmoothL1, SoftMargin, bce, bce_with_logits, binary_accuracy, l1, mse,
};
pub use ops::reduce::{mean, sum};
pub use ops::{Outputs, Reduction, RowStrategy};
pub use tensor::{ClassId, INPUT_USAGES, Indices, Tensor};
