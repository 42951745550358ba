//! The class losses: logits (or log-probabilities) `(N, C, d…)` or `(C)` against class ids of
//! the shape without the class dim, or against probabilities of the input's own shape.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Inputs, Loss, LossReduction, Opt, Options, Target,
    TargetKind, Targets, Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references,
    numel,
};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::ops::cross_entropy::CrossEntropy;
use crate::ops::nll::Nll;
use crate::reference::{self, class_dim};
use crate::tensor::Tensor;

const PLAIN: &[LossReduction] = &[LossReduction::None, LossReduction::Mean, LossReduction::Sum];
// [6, 8] has rows of quads (the kernels store half gradients themselves), the others do not.
const SHAPES: &[&[usize]] = &[&[6, 8], &[3, 4, 2], &[7]];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-5, 1e-4), backward: (1e-6, 1e-4) };

/// Logits `(N, C)` from vocabulary-sized rows to tabular ones.
const CLASS_SHAPES: &[BenchShape] = &[
    BenchShape { name: "vocab32k_4096x32000", dims: &[4096, 32000], quick: false, backward: true },
    BenchShape { name: "vocab32k_1024x32000", dims: &[1024, 32000], quick: false, backward: true },
    BenchShape { name: "imagenet_1024x1000", dims: &[1024, 1000], quick: false, backward: true },
    BenchShape { name: "tabular_65536x10", dims: &[65536, 10], quick: false, backward: true },
    BenchShape { name: "small_256x1000", dims: &[256, 1000], quick: true, backward: true },
    BenchShape { name: "tabular_4096x10", dims: &[4096, 10], quick: true, backward: true },
];

/// The class shapes with rows of at least 1000 classes: where a row-wise kernel other than the
/// fused cross-entropy is worth timing.
pub(super) const WIDE_SHAPES: &[BenchShape] =
    &[CLASS_SHAPES[0], CLASS_SHAPES[1], CLASS_SHAPES[2], CLASS_SHAPES[4]];

/// The shape of the class-id targets (and of the per-row losses) for an input of `shape`.
fn rows_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if !s.is_empty() {
        s.remove(class_dim(shape));
    }
    s
}

/// Inputs from `input` values, class ids (some ignored when the variant asks) or probabilities,
/// and class weights.
fn generate(rng: &mut Rng, shape: &[usize], o: &Options, v: &Variant, input: (f32, f32)) -> Args {
    let classes = shape[class_dim(shape)];
    let x = rng.uniform(numel(shape), input.0, input.1);
    let mut a = Args::new(Array::from_f32(&x, shape));
    a.target = Some(if v.has(Extra::Probabilities) {
        Target::Values(Array::from_f32(&rng.uniform(numel(shape), 0.0, 1.0), shape))
    } else {
        let rows = rows_shape(shape);
        let mut ids = rng.classes(numel(&rows), classes);
        if v.has(Extra::Ignored) {
            for t in ids.iter_mut().step_by(3) {
                *t = o.ignore_index;
            }
        }
        Target::Ids { data: ids, shape: rows }
    });
    if v.has(Extra::Weight) {
        a.weight = Some(Array::from_f32(&rng.uniform(classes, 0.5, 1.5), &[classes]));
    }
    a
}

fn weight(a: &Args) -> Option<&[f64]> {
    a.weight.as_ref().map(|w| &w.data[..])
}

fn cross_entropy(i: &Inputs) -> Result<CrossEntropy> {
    Ok(CrossEntropy {
        weight: i.weight.clone(),
        ignore_index: i.options.ignore_index,
        reduction: i.options.reduction.without_batchmean("cross_entropy")?,
        label_smoothing: i.options.label_smoothing,
        outputs: i.options.outputs,
        ..Default::default()
    })
}

fn cross_entropy_forward(i: &Inputs) -> Result<Tensor> {
    let loss = cross_entropy(i)?;
    match &i.target {
        Some(Targets::Ids(t)) => loss.forward(&i.input, t),
        Some(Targets::Values(y)) => loss.forward_probs(&i.input, y),
        None => Err(Error::invalid("cross_entropy", "a target is required")),
    }
}

fn cross_entropy_backward(i: &Inputs, _: &Tensor, g: &Tensor) -> Result<Tensor> {
    let loss = cross_entropy(i)?;
    match &i.target {
        Some(Targets::Ids(t)) => loss.backward(&i.input, t, g),
        Some(Targets::Values(y)) => Ok(loss.backward_probs(&i.input, y, g)?.0),
        None => Err(Error::invalid("cross_entropy", "a target is required")),
    }
}

fn cross_entropy_reference(a: &Args) -> Result<Vec<f64>> {
    let (o, x) = (&a.options, &a.input);
    let (r, eps) = (o.reduction.without_batchmean("cross_entropy")?, o.label_smoothing as f64);
    match &a.target {
        Some(Target::Ids { data, .. }) => reference::cross_entropy::cross_entropy_nd(
            &x.data,
            &x.shape,
            data,
            weight(a),
            o.ignore_index,
            eps,
            r,
        ),
        Some(Target::Values(y)) => {
            Ok(reference::cross_entropy::cross_entropy_probs(&x.data, &x.shape, &y.data, weight(a), eps, r))
        }
        None => Err(Error::invalid("cross_entropy", "a target is required")),
    }
}

fn cross_entropy_reference_backward(a: &Args, g: &[f64]) -> Result<Vec<f64>> {
    let (o, x) = (&a.options, &a.input);
    let (r, eps) = (o.reduction.without_batchmean("cross_entropy")?, o.label_smoothing as f64);
    match &a.target {
        Some(Target::Ids { data, .. }) => reference::cross_entropy::cross_entropy_backward(
            &x.data,
            &x.shape,
            data,
            weight(a),
            o.ignore_index,
            eps,
            r,
            g,
        ),
        Some(Target::Values(y)) => Ok(reference::cross_entropy::cross_entropy_probs_backward(
            &x.data,
            &x.shape,
            &y.data,
            weight(a),
            eps,
            r,
            g,
        )
        .0),
        None => Err(Error::invalid("cross_entropy", "a target is required")),
    }
}

fn ids(i: &Inputs) -> Result<&crate::tensor::Indices> {
    i.ids_target("nll")
}

fn host_ids(a: &Args) -> Result<&[i64]> {
    a.ids_target("nll")
}

fn nll(i: &Inputs) -> Result<Nll> {
    Ok(Nll {
        weight: i.weight.clone(),
        ignore_index: i.options.ignore_index,
        reduction: i.options.reduction.without_batchmean("nll")?,
        outputs: i.options.outputs,
    })
}

pub(super) static CROSS_ENTROPY: Loss = Loss {
    name: "cross_entropy",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "torch.nn.functional.cross_entropy",
    target: TargetKind::IdsOrProbabilities,
    weight: WeightKind::Classes,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::IgnoreIndex, Opt::LabelSmoothing],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[
        DEFAULTS,
        Variant { name: "weight", options: |_| {}, extras: &[Extra::Weight] },
        Variant { name: "ignored", options: |_| {}, extras: &[Extra::Ignored] },
        Variant { name: "ignore_index=2", options: |o| o.ignore_index = 2, extras: &[Extra::Ignored] },
        Variant { name: "label_smoothing=0.1", options: |o| o.label_smoothing = 0.1, extras: &[] },
        Variant {
            name: "weight+ignored+label_smoothing",
            options: |o| o.label_smoothing = 0.2,
            extras: &[Extra::Weight, Extra::Ignored],
        },
        Variant { name: "probabilities", options: |_| {}, extras: &[Extra::Probabilities] },
        Variant {
            name: "probabilities+weight+label_smoothing",
            options: |o| o.label_smoothing = 0.1,
            extras: &[Extra::Probabilities, Extra::Weight],
        },
    ],
    test_shapes: SHAPES,
    generate: |rng, shape, o, v| generate(rng, shape, o, v, (-4.0, 4.0)),
    forward: cross_entropy_forward,
    backward: cross_entropy_backward,
    reference: cross_entropy_reference,
    reference_backward: cross_entropy_reference_backward,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-5, 1e-4), backward: (1e-7, 1e-3) },
    bench: CLASS_SHAPES,
    // Logits and targets read once; the backward writes the gradient too.
    bench_work: |d| {
        let (xb, tb) = (numel(d) as u64 * 4, d[0] as u64 * 4);
        (Work::Bytes(xb + tb), Work::Bytes(2 * xb + tb))
    },
};

pub(super) static NLL: Loss = Loss {
    name: "nll",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "torch.nn.functional.nll_loss",
    target: TargetKind::Ids,
    weight: WeightKind::Classes,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::IgnoreIndex],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[
        DEFAULTS,
        Variant { name: "weight", options: |_| {}, extras: &[Extra::Weight] },
        Variant { name: "weight+ignored", options: |_| {}, extras: &[Extra::Weight, Extra::Ignored] },
    ],
    test_shapes: SHAPES,
    generate: |rng, shape, o, v| generate(rng, shape, o, v, (-6.0, 0.0)),
    forward: |i| nll(i)?.forward(&i.input, ids(i)?),
    backward: |i, _, g| nll(i)?.backward(&i.input, ids(i)?, g),
    reference: |a| {
        let (o, x) = (&a.options, &a.input);
        let r = o.reduction.without_batchmean("nll")?;
        reference::nll::nll_nd(&x.data, &x.shape, host_ids(a)?, weight(a), o.ignore_index, r)
    },
    reference_backward: |a, g| {
        let (o, x) = (&a.options, &a.input);
        let r = o.reduction.without_batchmean("nll")?;
        reference::nll::nll_backward(&x.data, &x.shape, host_ids(a)?, weight(a), o.ignore_index, r, g)
    },
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-5, 1e-4), backward: (1e-7, 1e-5) },
    bench: WIDE_SHAPES,
    // The forward reads one log-probability and one target per row; the backward writes the
    // whole gradient.
    bench_work: |d| {
        let (xb, n) = (numel(d) as u64 * 4, d[0] as u64);
        (Work::Bytes(8 * n), Work::Bytes(xb + 4 * n))
    },
};
