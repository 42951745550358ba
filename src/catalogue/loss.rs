//! The catalogue's vocabulary: a [`Loss`] and the host and device data it is called with.

use crate::data::Rng;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::ops::{Outputs, Reduction};
use crate::tensor::{Indices, Tensor};
use half::{bf16, f16};

/// A float array on the host: f64 values (f32 data widened exactly, so that the references and
/// finite differences share it) and a shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub data: Vec<f64>,
    pub shape: Vec<usize>,
    /// The element type the values are uploaded as (they are exact in it).
    pub dtype: DType,
}

impl Array {
    pub fn new(data: Vec<f64>, shape: Vec<usize>) -> Array {
        Array { data, shape, dtype: DType::F32 }
    }

    /// f32 values widened.
    pub fn from_f32(data: &[f32], shape: &[usize]) -> Array {
        Array::new(data.iter().map(|&v| v as f64).collect(), shape.to_vec())
    }

    /// Values of `dtype` widened (f16 and bf16 values are exact in f32).
    pub fn of_dtype(data: &[f32], shape: &[usize], dtype: DType) -> Array {
        Array { dtype, ..Array::from_f32(data, shape) }
    }

    /// The values as f32 (exact for data that came from f32 or a half type).
    pub fn f32s(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    /// The values rounded to `dtype` (nearest, ties to even): what a kernel reads from them
    /// uploaded as `dtype`, and what the reference then computes from.
    pub fn rounded(&self, dtype: DType) -> Array {
        let data = self.data.iter().map(|&v| dtype.round(v as f32) as f64).collect();
        Array { data, shape: self.shape.clone(), dtype }
    }

    fn upload(&self, dev: &Device) -> Result<Tensor> {
        let values = self.f32s();
        match self.dtype {
            DType::F32 => dev.tensor(&values, &self.shape),
            DType::F16 => {
                dev.tensor_of(&values.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), &self.shape)
            }
            DType::BF16 => {
                dev.tensor_of(&values.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>(), &self.shape)
            }
        }
    }
}

/// A target: float values (or probabilities, or ±1), or class ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Values(Array),
    Ids { data: Vec<i64>, shape: Vec<usize> },
}

/// A reduction as PyTorch spells them; `BatchMean` is kl_div's (the sum over the batch size)
/// and jsd's and tvd's (the sum over the counted rows, Liger Kernel's convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReduction {
    None,
    Mean,
    Sum,
    BatchMean,
}

impl LossReduction {
    /// The name PyTorch and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            LossReduction::None => "none",
            LossReduction::Mean => "mean",
            LossReduction::Sum => "sum",
            LossReduction::BatchMean => "batchmean",
        }
    }

    /// The plain reduction of a loss that has no `batchmean` (kl_div, jsd and tvd have one): an
    /// error naming `op` for `BatchMean`.
    pub fn without_batchmean(self, op: &'static str) -> Result<Reduction> {
        if self == LossReduction::BatchMean {
            return Err(Error::invalid(op, "batchmean is only for kl_div, jsd and tvd"));
        }
        Ok(self.plain())
    }

    /// The plain reduction (`BatchMean` is a mean with another divisor).
    pub fn plain(self) -> Reduction {
        match self {
            LossReduction::None => Reduction::None,
            LossReduction::Sum => Reduction::Sum,
            LossReduction::Mean | LossReduction::BatchMean => Reduction::Mean,
        }
    }
}

/// The scalar options, with PyTorch's defaults; each loss reads those it lists in
/// [`Loss::options`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub reduction: LossReduction,
    pub ignore_index: i64,
    pub label_smoothing: f32,
    /// smooth_l1's β.
    pub beta: f32,
    /// huber's δ.
    pub delta: f32,
    /// kl_div: the target holds log-probabilities.
    pub log_target: bool,
    /// log_softmax and softmax: the dimension (negative counts from the end).
    pub dim: isize,
    /// jsd's β in [0, 1] (0: forward KL, 1: reverse KL).
    pub jsd_beta: f32,
    /// jsd: the temperature both logits are divided by.
    pub temperature: f32,
    /// sigmoid_focal's α (negative: no class weighting).
    pub alpha: f32,
    /// sigmoid_focal's γ.
    pub gamma: f32,
    /// A margin loss's margin; `None`: the loss's own default (PyTorch's).
    pub margin: Option<f32>,
    /// poisson_nll's and gaussian_nll's eps; `None`: the loss's default (PyTorch's 1e-8 and
    /// 1e-6).
    pub eps: Option<f32>,
    /// poisson_nll: the input holds log-rates.
    pub log_input: bool,
    /// multi_margin's p (1 or 2) and triplet_margin's norm degree; `None`: the loss's default
    /// (PyTorch's 1 and 2).
    pub p: Option<f32>,
    /// triplet_margin: the distance to the negative is the smaller of the anchor's and the
    /// positive's.
    pub swap: bool,
    /// ctc's blank class.
    pub blank: usize,
    /// ctc: an impossible sequence's +inf loss counts 0.
    pub zero_infinity: bool,
    /// poisson_nll: add the Stirling term; gaussian_nll: add ½·log(2π).
    pub full: bool,
    /// The element type of gradients and of log_softmax's, softmax's and linear's outputs.
    pub outputs: Outputs,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reduction: LossReduction::Mean,
            ignore_index: crate::ops::cross_entropy::DEFAULT_IGNORE_INDEX,
            label_smoothing: 0.0,
            beta: 1.0,
            delta: 1.0,
            log_target: false,
            dim: -1,
            jsd_beta: 0.5,
            temperature: 1.0,
            alpha: 0.25,
            gamma: 2.0,
            margin: None,
            eps: None,
            log_input: true,
            p: None,
            swap: false,
            blank: 0,
            zero_infinity: false,
            full: false,
            outputs: Outputs::AsInputs,
        }
    }
}

/// A scalar option a loss reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    IgnoreIndex,
    LabelSmoothing,
    Beta,
    Delta,
    LogTarget,
    Dim,
    JsdBeta,
    Temperature,
    Alpha,
    Gamma,
    Margin,
    Eps,
    LogInput,
    Full,
    P,
    Swap,
    Blank,
    ZeroInfinity,
}

/// One call's host data.
#[derive(Clone, Debug)]
pub struct Args {
    pub input: Array,
    pub target: Option<Target>,
    /// Element weights broadcast to the input (bce), class weights `(C)` (cross_entropy, nll), or
    /// the linear layer's W `(out, in)`.
    pub weight: Option<Array>,
    /// The linear layer's bias `(out)`.
    pub bias: Option<Array>,
    /// bce_with_logits' weight of positive examples, one per column `(C)`.
    pub pos_weight: Option<Array>,
    /// jsd's and tvd's labels, one per row: rows labelled `ignore_index` do not count.
    pub labels: Option<Ids>,
    /// The second input of margin_ranking, cosine_embedding and triplet_margin (its positive).
    pub input2: Option<Array>,
    /// The third input of triplet_margin (its negative).
    pub input3: Option<Array>,
    /// gaussian_nll's variance.
    pub var: Option<Array>,
    /// ctc's input and target lengths, one per sequence.
    pub input_lengths: Option<Ids>,
    pub target_lengths: Option<Ids>,
    /// The forward's output that a function's backward is taken at (log_softmax and softmax
    /// differentiate through it), as a device gave it: its references then differentiate at
    /// these values. `None`: at the exact forward. Losses ignore it.
    pub output: Option<Array>,
    pub options: Options,
}

/// A float operand besides the input that a loss takes and differentiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Input2,
    Input3,
    Var,
}

impl Operand {
    /// Its name in messages and in the CLI's flag (`--input2`).
    pub fn name(self) -> &'static str {
        match self {
            Operand::Input2 => "input2",
            Operand::Input3 => "input3",
            Operand::Var => "var",
        }
    }
}

/// Class ids or labels on the host (int64 values, checked to fit i32 on upload).
#[derive(Clone, Debug, PartialEq)]
pub struct Ids {
    pub data: Vec<i64>,
    pub shape: Vec<usize>,
}

impl Args {
    /// `input` alone, default options.
    pub fn new(input: Array) -> Args {
        Args {
            input,
            target: None,
            weight: None,
            bias: None,
            pos_weight: None,
            labels: None,
            input2: None,
            input3: None,
            var: None,
            input_lengths: None,
            target_lengths: None,
            output: None,
            options: Options::default(),
        }
    }

    /// The operand `which`, if given.
    pub fn operand(&self, which: Operand) -> Option<&Array> {
        match which {
            Operand::Input2 => self.input2.as_ref(),
            Operand::Input3 => self.input3.as_ref(),
            Operand::Var => self.var.as_ref(),
        }
    }

    /// The operand `which`, to set.
    pub fn operand_mut(&mut self, which: Operand) -> &mut Option<Array> {
        match which {
            Operand::Input2 => &mut self.input2,
            Operand::Input3 => &mut self.input3,
            Operand::Var => &mut self.var,
        }
    }

    /// The operand `which`, or an error naming `op`.
    pub fn required(&self, op: &'static str, which: Operand) -> Result<&Array> {
        self.operand(which).ok_or_else(|| Error::invalid(op, format!("{} is required", which.name())))
    }

    /// The same call with every float operand (input, float target, weights, bias) rounded to
    /// `dtype` and uploaded as `dtype`.
    pub fn as_dtype(&self, dtype: DType) -> Args {
        let round = |a: &Option<Array>| a.as_ref().map(|a| a.rounded(dtype));
        Args {
            input: self.input.rounded(dtype),
            target: match &self.target {
                Some(Target::Values(a)) => Some(Target::Values(a.rounded(dtype))),
                other => other.clone(),
            },
            weight: round(&self.weight),
            bias: round(&self.bias),
            pos_weight: round(&self.pos_weight),
            input2: round(&self.input2),
            input3: round(&self.input3),
            var: round(&self.var),
            ..self.clone()
        }
    }

    /// The data on `dev`, each array in its own element type.
    pub fn upload(&self, dev: &Device) -> Result<Inputs> {
        let opt = |a: &Option<Array>| a.as_ref().map(|a| a.upload(dev)).transpose();
        Ok(Inputs {
            input: self.input.upload(dev)?,
            target: match &self.target {
                Some(Target::Values(a)) => Some(Targets::Values(a.upload(dev)?)),
                Some(Target::Ids { data, shape }) => Some(Targets::Ids(dev.indices(data, shape)?)),
                None => None,
            },
            weight: opt(&self.weight)?,
            bias: opt(&self.bias)?,
            pos_weight: opt(&self.pos_weight)?,
            labels: self.labels.as_ref().map(|l| dev.indices(&l.data, &l.shape)).transpose()?,
            input2: opt(&self.input2)?,
            input3: opt(&self.input3)?,
            var: opt(&self.var)?,
            input_lengths: self.input_lengths.as_ref().map(|l| l.data.clone()),
            target_lengths: self.target_lengths.as_ref().map(|l| l.data.clone()),
            options: self.options,
        })
    }

    /// The class-id target, or an error naming `op`.
    pub fn ids_target(&self, op: &'static str) -> Result<&[i64]> {
        match &self.target {
            Some(Target::Ids { data, .. }) => Ok(data),
            _ => Err(Error::invalid(op, "class-id targets are required")),
        }
    }

    /// The float target, or an error naming `op`.
    pub fn values_target(&self, op: &'static str) -> Result<&Array> {
        match &self.target {
            Some(Target::Values(a)) => Ok(a),
            _ => Err(Error::invalid(op, "a float target is required")),
        }
    }
}

/// A call's data on a device.
#[derive(Clone)]
pub struct Inputs {
    pub input: Tensor,
    pub target: Option<Targets>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub pos_weight: Option<Tensor>,
    pub labels: Option<Indices>,
    pub input2: Option<Tensor>,
    pub input3: Option<Tensor>,
    pub var: Option<Tensor>,
    /// ctc's lengths, on the host as its API takes them.
    pub input_lengths: Option<Vec<i64>>,
    pub target_lengths: Option<Vec<i64>>,
    pub options: Options,
}

/// A target on a device.
#[derive(Clone)]
pub enum Targets {
    Values(Tensor),
    Ids(Indices),
}

impl Inputs {
    /// The same call with every output f32 (`Outputs::F32`): a function's forward output to
    /// give its backward unrounded.
    pub fn with_f32_outputs(&self) -> Inputs {
        Inputs { options: Options { outputs: Outputs::F32, ..self.options }, ..self.clone() }
    }

    /// The operand `which`, or an error naming `op`.
    pub fn required(&self, op: &'static str, which: Operand) -> Result<&Tensor> {
        let t = match which {
            Operand::Input2 => self.input2.as_ref(),
            Operand::Input3 => self.input3.as_ref(),
            Operand::Var => self.var.as_ref(),
        };
        t.ok_or_else(|| Error::invalid(op, format!("{} is required", which.name())))
    }

    /// The class-id target, or an error naming `op`.
    pub fn ids_target(&self, op: &'static str) -> Result<&Indices> {
        match &self.target {
            Some(Targets::Ids(t)) => Ok(t),
            _ => Err(Error::invalid(op, "class-id targets are required")),
        }
    }

    /// The float target, or an error naming `op`.
    pub fn values_target(&self, op: &'static str) -> Result<&Tensor> {
        match &self.target {
            Some(Targets::Values(t)) => Ok(t),
            _ => Err(Error::invalid(op, "a float target is required")),
        }
    }
}

/// What a loss takes as its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// None (a function of the input alone).
    None,
    /// Float values of the input's shape; `what` names them in messages ("targets").
    Values { what: &'static str },
    /// Float probabilities, or log-probabilities with `log_target` (kl_div).
    Distribution,
    /// Class ids (int64 or int32) with the input's shape less its class dim.
    Ids,
    /// Class ids, or probabilities of the input's shape.
    IdsOrProbabilities,
}

/// What a loss's `weight` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    None,
    /// Element weights, broadcast to the input's shape (numpy's rules).
    Elements,
    /// One weight per class `(C)`.
    Classes,
    /// The linear layer's weight `(out, in)`, required.
    Matrix,
}

/// An extra input or target form a variant adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    Weight,
    PosWeight,
    Bias,
    /// Some class-id targets equal to `ignore_index`.
    Ignored,
    /// Probability targets in place of class ids.
    Probabilities,
    /// ctc: targets concatenated in one dim, not padded rows.
    Concatenated,
    /// ctc: one unbatched sequence, `(T, C)`.
    Unbatched,
    /// ctc: a sequence whose input is too short for its target.
    Impossible,
    /// Labels (jsd, tvd), some of them `ignore_index`.
    Labels,
    /// gaussian_nll's var with one value per row: the input's shape less its last dim.
    VarPerRow,
    /// gaussian_nll's var of size 1 along dim 0, broadcast along it.
    VarBroadcast,
    /// sigmoid_focal: targets in [−1, 2), outside the usual [0, 1], where `1 − p_t` goes
    /// negative and PyTorch's `pow` rules decide its power.
    WideTargets,
}

/// A named set of options and extras the generic test runs (besides the reductions).
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub name: &'static str,
    pub options: fn(&mut Options),
    pub extras: &'static [Extra],
}

impl Variant {
    pub fn has(&self, extra: Extra) -> bool {
        self.extras.contains(&extra)
    }
}

/// The variant with PyTorch's defaults and no extra.
pub const DEFAULTS: Variant = Variant { name: "defaults", options: |_| {}, extras: &[] };

/// A named benchmark shape; `quick` ones make up `wgpu-loss bench --quick`. `backward: false`
/// times only the forward (where a backward would take minutes on a software adapter).
#[derive(Clone, Copy, Debug)]
pub struct BenchShape {
    pub name: &'static str,
    pub dims: &'static [usize],
    pub quick: bool,
    pub backward: bool,
}

/// What a benchmark case must do at least, to turn its time into a rate: bytes moved (each
/// input read once, each output written once) or floating-point operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Bytes(u64),
    Flops(u64),
}

/// Allowed `|got − want| ≤ abs + rel·|want|`, forward and backward.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub forward: (f64, f64),
    pub backward: (f64, f64),
}

impl Tolerance {
    /// The tolerance of an output of element type `out`, the reference taking the same rounded
    /// inputs (widened exactly), so only what happens after the inputs counts. The math is f32
    /// whatever the inputs, so an f32 output keeps the f32 tolerance. An output rounded to a
    /// half type adds its rounding, half an ulp: 2⁻⁹ (bf16) or 2⁻¹² (f16) relative, compared at
    /// twice that, u = 2⁻⁸ or 2⁻¹¹; an absolute u·2⁻¹⁴ covers f16's subnormal gradients.
    /// (log_softmax's and softmax's gradients in the catalogue come from their f32 forward, not
    /// from its rounded output, whose rounding the row sum would carry: see `functions.rs`.)
    pub fn for_dtype(self, out: DType) -> Tolerance {
        let u = match out {
            DType::F32 => 0.0,
            DType::F16 => 2f64.powi(-11),
            DType::BF16 => 2f64.powi(-8),
        };
        let widen = |(abs, rel): (f64, f64)| (abs + u * 2f64.powi(-14), rel + u);
        Tolerance { forward: widen(self.forward), backward: widen(self.backward) }
    }
}

/// What a loss's `backward` differentiates with respect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientOf {
    /// The input itself.
    Input,
    /// The logits `z` whose `log_softmax` over the last dim is the input: PyTorch's CTC
    /// convention (`exp(log_probs) − γ`). Finite differences check it through that composition.
    LogSoftmaxLogits,
}

/// Reference gradients in a loss's operands, one per operand, in order.
pub type Grads = Vec<Vec<f64>>;

/// An op's loss and its gradient in one call, for an upstream gradient: (loss, gradient).
pub type TrainingStep = fn(&Inputs, &Tensor) -> Result<(Tensor, Tensor)>;

/// One loss (or function) of the catalogue.
pub struct Loss {
    /// The name of its kernel's op, bench cases and tests (`soft_margin`); the CLI op is this
    /// with dashes.
    pub name: &'static str,
    /// The PyTorch function it follows (`torch.nn.functional.…`), or for a loss PyTorch does
    /// not have, the torchvision function (`torchvision.ops.…`) or Liger Kernel module
    /// (`liger_kernel.…`) whose definition it follows.
    pub pytorch: &'static str,
    pub target: TargetKind,
    pub weight: WeightKind,
    /// Whether it takes bce_with_logits' `pos_weight`.
    pub pos_weight: bool,
    /// Whether it takes a bias.
    pub bias: bool,
    /// Whether it takes labels that leave rows out (jsd, tvd).
    pub labels: bool,
    /// Whether it takes input and target lengths, one per sequence (ctc).
    pub lengths: bool,
    /// What `backward` gives the gradient with respect to.
    pub gradient: GradientOf,
    /// The scalar options it reads.
    pub options: &'static [Opt],
    /// The reductions it accepts (`[None]` for functions without one).
    pub reductions: &'static [LossReduction],
    /// The reduction it takes when none is given (PyTorch's default; torchvision's `none` for
    /// sigmoid_focal).
    pub default_reduction: LossReduction,
    /// The option sets the generic test runs, each with every reduction.
    pub variants: &'static [Variant],
    /// Shapes of the generic test's inputs.
    pub test_shapes: &'static [&'static [usize]],
    /// Valid inputs for `shape` with `options` and the variant's extras.
    pub generate: fn(&mut Rng, &[usize], &Options, &Variant) -> Args,
    /// The output on a device.
    pub forward: fn(&Inputs) -> Result<Tensor>,
    /// The gradient in the input, given the forward's output (which functions such as softmax
    /// differentiate through, at the output as given: a half one gives PyTorch's half gradient,
    /// an f32 one from [`Inputs::with_f32_outputs`] the gradient of the unrounded forward;
    /// losses ignore it) and an upstream gradient of its shape.
    pub backward: fn(&Inputs, &Tensor, &Tensor) -> Result<Tensor>,
    /// The f64 reference of `forward`.
    pub reference: fn(&Args) -> Result<Vec<f64>>,
    /// The f64 reference of `backward` for an upstream gradient.
    pub reference_backward: fn(&Args, &[f64]) -> Result<Vec<f64>>,
    /// The float operands besides the input it takes and differentiates (margin_ranking's
    /// input2, gaussian_nll's var), in the order of their gradients below.
    pub operands: &'static [Operand],
    /// The gradients in `operands`, each of its operand's shape, for an upstream gradient of the
    /// output's shape.
    pub backward_operands: fn(&Inputs, &Tensor) -> Result<Vec<Tensor>>,
    /// The f64 reference of `backward_operands`.
    pub reference_backward_operands: fn(&Args, &[f64]) -> Result<Grads>,
    /// The loss and its gradient in one call for an upstream gradient, where the op shares
    /// work between them (CTC's alpha recursion): benched as `forward+backward`, and tested to
    /// give `forward`'s and `backward`'s bits.
    pub forward_backward: Option<TrainingStep>,
    pub tolerance: Tolerance,
    /// The same at its benchmark shapes, where reductions run over millions of terms.
    pub bench_tolerance: Tolerance,
    /// Its benchmark shapes (the `shape` given to `generate`), and the work of a forward and a
    /// backward at a shape.
    pub bench: &'static [BenchShape],
    pub bench_work: fn(&[usize]) -> (Work, Work),
}

impl Loss {
    /// The CLI op: the name with dashes (`soft-margin`).
    pub fn cli_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// Whether it reads `opt`.
    pub fn reads(&self, opt: Opt) -> bool {
        self.options.contains(&opt)
    }

    /// Valid inputs for `shape` with the variant applied, from `seed`.
    pub fn sample(&self, seed: u64, shape: &[usize], variant: &Variant, reduction: LossReduction) -> Args {
        let mut options = Options { reduction, ..Options::default() };
        (variant.options)(&mut options);
        let mut args = (self.generate)(&mut Rng::new(seed), shape, &options, variant);
        args.options = options;
        args
    }
}

impl Loss {
    /// Its inputs at a benchmark shape: its defaults, the default reduction included.
    pub fn bench_args(&self, seed: u64, shape: &BenchShape) -> Args {
        self.sample(seed, shape.dims, &DEFAULTS, self.default_reduction)
    }
}

impl std::fmt::Debug for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loss({})", self.name)
    }
}

/// The upstream gradient of ones for an output of `shape`.
pub fn ones(dev: &Device, shape: &[usize]) -> Result<Tensor> {
    dev.tensor(&vec![1.0; crate::ops::saturating_product(shape)], shape)
}

/// The element count of `shape`.
pub(crate) fn numel(shape: &[usize]) -> usize {
    crate::ops::saturating_product(shape)
}

/// `backward_operands` of a loss without operands: no gradients.
pub fn no_operand_grads(_: &Inputs, _: &Tensor) -> Result<Vec<Tensor>> {
    Ok(Vec::new())
}

/// `reference_backward_operands` of a loss without operands.
pub fn no_operand_references(_: &Args, _: &[f64]) -> Result<Grads> {
    Ok(Vec::new())
}
