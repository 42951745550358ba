//! Functions without a target or a reduction: `log_softmax` and `softmax` over a dim, and the
//! `linear` layer.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Inputs, Loss, LossReduction, Opt, TargetKind,
    Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references, numel,
};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::ops::linear::Linear;
use crate::ops::log_softmax::{LogSoftmax, Softmax};
use crate::ops::{Outputs, resolve_dim};
use crate::reference;
use crate::tensor::Tensor;

const NO_REDUCTION: &[LossReduction] = &[LossReduction::None];

fn input(rng: &mut Rng, shape: &[usize], scale: f32) -> Args {
    Args::new(Array::from_f32(&rng.values(numel(shape), scale), shape))
}

/// The rows read and written once; the backward reads the output and the upstream gradient.
fn row_bytes(dims: &[usize]) -> (Work, Work) {
    let xb = numel(dims) as u64 * 4;
    (Work::Bytes(2 * xb), Work::Bytes(3 * xb))
}

const DIMS: &[Variant] = &[DEFAULTS, Variant { name: "dim=0", options: |o| o.dim = 0, extras: &[] }];
const SHAPES: &[&[usize]] = &[&[5, 7], &[2, 3, 4], &[9]];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-6, 1e-5), backward: (1e-6, 1e-4) };

fn log_softmax_reference(a: &Args) -> Result<Vec<f64>> {
    let dim = resolve_dim("log_softmax", a.options.dim, a.input.shape.len())?;
    Ok(reference::log_softmax::log_softmax_dim(&a.input.data, &a.input.shape, dim))
}

fn softmax_reference(a: &Args) -> Result<Vec<f64>> {
    let dim = resolve_dim("softmax", a.options.dim, a.input.shape.len())?;
    Ok(reference::log_softmax::softmax_dim(&a.input.data, &a.input.shape, dim))
}

/// The output a reference backward differentiates at: the one given in `a.output` (a device's,
/// perhaps rounded to half), else the exact forward.
fn at_given_output(a: &Args, forward: fn(&Args) -> Result<Vec<f64>>) -> Result<Vec<f64>> {
    match &a.output {
        Some(y) if y.shape == a.input.shape => Ok(y.data.clone()),
        Some(y) => Err(Error::shape(
            "reference",
            format!("the given output has shape {:?}, the input {:?}", y.shape, a.input.shape),
        )),
        None => forward(a),
    }
}

/// The gradient of log_softmax or softmax (`backward`, the op's) at the output `y` it is given,
/// in the input's element type (or f32 with `Outputs::F32`). As PyTorch's autograd, which saves
/// the output: a half `y` and upstream gradient take one pass that writes the half gradient, and
/// the rounding of `y` reaches the gradient through the row sum (g − e^y·Σg); an f32 `y` (the
/// forward with f32 outputs) gives the gradient of the unrounded forward, rounded once.
fn at_output(i: &Inputs, backward: impl FnOnce(Outputs) -> Result<Tensor>) -> Result<Tensor> {
    i.options.outputs.apply(backward(i.options.outputs)?, i.input.dtype())
}

pub(super) static LOG_SOFTMAX: Loss = Loss {
    name: "log_softmax",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "torch.nn.functional.log_softmax",
    target: TargetKind::None,
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::Dim],
    reductions: NO_REDUCTION,
    default_reduction: LossReduction::None,
    variants: DIMS,
    test_shapes: SHAPES,
    generate: |rng, shape, _, _| input(rng, shape, 4.0),
    forward: |i| LogSoftmax::default().dim(i.options.dim).outputs(i.options.outputs).forward(&i.input),
    backward: |i, y, g| at_output(i, |o| LogSoftmax::default().dim(i.options.dim).outputs(o).backward(y, g)),
    reference: log_softmax_reference,
    reference_backward: |a, g| {
        let dim = resolve_dim("log_softmax", a.options.dim, a.input.shape.len())?;
        let y = at_given_output(a, log_softmax_reference)?;
        Ok(reference::log_softmax::log_softmax_backward(&y, g, &a.input.shape, dim))
    },
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-5, 1e-5), backward: (1e-4, 1e-3) },
    bench: super::class::WIDE_SHAPES,
    bench_work: row_bytes,
};

pub(super) static SOFTMAX: Loss = Loss {
    name: "softmax",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "torch.nn.functional.softmax",
    target: TargetKind::None,
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::Dim],
    reductions: NO_REDUCTION,
    default_reduction: LossReduction::None,
    variants: DIMS,
    test_shapes: SHAPES,
    generate: |rng, shape, _, _| input(rng, shape, 4.0),
    forward: |i| Softmax::default().dim(i.options.dim).outputs(i.options.outputs).forward(&i.input),
    backward: |i, y, g| at_output(i, |o| Softmax::default().dim(i.options.dim).outputs(o).backward(y, g)),
    reference: softmax_reference,
    reference_backward: |a, g| {
        let dim = resolve_dim("softmax", a.options.dim, a.input.shape.len())?;
        let y = at_given_output(a, softmax_reference)?;
        Ok(reference::log_softmax::softmax_backward(&y, g, &a.input.shape, dim))
    },
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-5, 1e-3) },
    bench: super::class::WIDE_SHAPES,
    bench_work: row_bytes,
};

/// The weight `(out, in)` of a linear call, and `in`.
fn weight<'a>(op: &'static str, a: &'a Args) -> Result<(&'a Array, usize)> {
    let w = a.weight.as_ref().ok_or_else(|| Error::invalid(op, "the weight is required"))?;
    Ok((w, w.shape.get(1).copied().unwrap_or(0)))
}

fn weight_tensor(i: &Inputs) -> Result<&Tensor> {
    i.weight.as_ref().ok_or_else(|| Error::invalid("linear", "the weight is required"))
}

/// For `linear`, a shape is (rows, out features, in features): x `(rows, in)`, W `(out, in)`.
fn linear_inputs(rng: &mut Rng, shape: &[usize], v: &Variant) -> Args {
    let (m, n, k) = (shape[0], shape[1], shape[2]);
    let mut a = input(rng, &[m, k], 1.0);
    a.weight = Some(Array::from_f32(&rng.values(n * k, 1.0), &[n, k]));
    if v.has(Extra::Bias) {
        a.bias = Some(Array::from_f32(&rng.values(n, 1.0), &[n]));
    }
    a
}

pub(super) static LINEAR: Loss = Loss {
    name: "linear",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "torch.nn.functional.linear",
    target: TargetKind::None,
    weight: WeightKind::Matrix,
    pos_weight: false,
    bias: true,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[],
    reductions: NO_REDUCTION,
    default_reduction: LossReduction::None,
    variants: &[DEFAULTS, Variant { name: "bias", options: |_| {}, extras: &[Extra::Bias] }],
    test_shapes: &[&[3, 4, 5], &[1, 7, 2], &[70, 9, 33]],
    generate: |rng, shape, _, v| linear_inputs(rng, shape, v),
    forward: |i| {
        Linear::default().outputs(i.options.outputs).forward(&i.input, weight_tensor(i)?, i.bias.as_ref())
    },
    backward: |i, _, g| {
        Ok(Linear::default().outputs(i.options.outputs).backward(&i.input, weight_tensor(i)?, g)?.input)
    },
    reference: |a| {
        let (w, k) = weight("linear", a)?;
        let bias = a.bias.as_ref().map(|b| &b.data[..]);
        Ok(reference::linear::linear(&a.input.data, &w.data, bias, k))
    },
    reference_backward: |a, g| {
        let (w, k) = weight("linear", a)?;
        Ok(reference::linear::linear_backward(&a.input.data, &w.data, g, k).0)
    },
    tolerance: Tolerance { forward: (1e-5, 1e-4), backward: (1e-5, 1e-4) },
    bench_tolerance: Tolerance { forward: (1e-3, 1e-4), backward: (1e-3, 1e-4) },
    bench: &[
        BenchShape { name: "linear_2048", dims: &[2048, 2048, 2048], quick: false, backward: false },
        BenchShape { name: "linear_1024", dims: &[1024, 1024, 1024], quick: false, backward: true },
        BenchShape { name: "linear_256", dims: &[256, 256, 256], quick: true, backward: true },
    ],
    bench_work: |d| {
        let mnk = (d[0] * d[1] * d[2]) as u64;
        (Work::Flops(2 * mnk), Work::Flops(4 * mnk))
    },
};
