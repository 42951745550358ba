//! The loss catalogue: every function the `wgpu-loss` command evaluates, the benchmarks time
//! and the generic test checks, declared once as a [`Loss`].
//!
//! A [`Loss`] names the function (its CLI op is the name with dashes), says which PyTorch
//! function it follows, what it takes (target kind, weights, scalar options, reductions), how to
//! generate valid inputs for it, how to run it on a device forward and backward, its f64
//! reference forward and backward, and its benchmark shapes. Every field is required, so a loss
//! that lacks a piece does not compile; the generic test (`tests/catalogue.rs`) runs each loss
//! × reduction × variant on every adapter against its reference, and checks the reference's
//! gradient with finite differences.
//!
//! ```
//! use wgpu_loss::catalogue::{self, Args, Array, Target};
//!
//! let dev = wgpu_loss::Device::new()?;
//! let loss = catalogue::find("soft-margin").expect("in the catalogue");
//! let mut args = Args::new(Array::new(vec![0.0, 3.0], vec![2]));
//! args.target = Some(Target::Values(Array::new(vec![1.0, -1.0], vec![2])));
//! let got = (loss.forward)(&args.upload(&dev)?)?.item()?;
//! let want = (loss.reference)(&args)?[0];
//! assert!((got as f64 - want).abs() < 1e-6);
//! # Ok::<(), wgpu_loss::Error>(())
//! ```

mod class;
mod class_margin;
mod ctc;
mod divergence;
mod embedding_rows;
mod functions;
mod loss;
mod pointwise;

pub use loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Grads, Ids, Inputs, Loss, LossReduction, Operand,
    Opt, Options, Target, TargetKind, Targets, Tolerance, Variant, WeightKind, Work, no_operand_grads,
    no_operand_references, ones,
};

/// Every loss and function of the catalogue, in the order the CLI lists them.
pub static LOSSES: &[&Loss] = &[
    &pointwise::MSE,
    &pointwise::L1,
    &pointwise::SMOOTH_L1,
    &pointwise::HUBER,
    &pointwise::BCE,
    &pointwise::BCE_WITH_LOGITS,
    &class::CROSS_ENTROPY,
    &class::NLL,
    &pointwise::KL_DIV,
    &divergence::JSD,
    &divergence::TVD,
    &pointwise::SOFT_MARGIN,
    &pointwise::SIGMOID_FOCAL,
    &pointwise::POISSON_NLL,
    &pointwise::HINGE_EMBEDDING,
    &pointwise::GAUSSIAN_NLL,
    &pointwise::MARGIN_RANKING,
    &class_margin::MULTI_MARGIN,
    &class_margin::MULTILABEL_SOFT_MARGIN,
    &class_margin::MULTILABEL_MARGIN,
    &embedding_rows::COSINE_EMBEDDING,
    &embedding_rows::TRIPLET_MARGIN,
    &ctc::CTC,
    &functions::LOG_SOFTMAX,
    &functions::SOFTMAX,
    &functions::LINEAR,
];

/// The loss called `name`, with underscores or dashes.
pub fn find(name: &str) -> Option<&'static Loss> {
    let name = name.replace('-', "_");
    LOSSES.iter().copied().find(|l| l.name == name)
}
