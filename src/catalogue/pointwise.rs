//! The elementwise losses: one input, one float target of the same shape, optional weights.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Inputs, Loss, LossReduction, Operand, Opt, Options,
    Target, TargetKind, Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references, numel,
};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::ops::pointwise::{
    Bce, BceWithLogits, GaussianNll, HingeEmbedding, Huber, KlDiv, KlReduction, L1, MarginRanking, Mse,
    PoissonNll, SigmoidFocal, SmoothL1, SoftMargin,
};
use crate::reference::pointwise::{self as reference, Pointwise, gaussian_var_shape};
use crate::reference::{broadcast_to, class_dim, sum_to};
use crate::tensor::Tensor;

const PLAIN: &[LossReduction] = &[LossReduction::None, LossReduction::Mean, LossReduction::Sum];
const SHAPES: &[&[usize]] = &[&[7, 13], &[2, 3, 5], &[9]];
const BENCH: &[BenchShape] = &[
    BenchShape { name: "pointwise_16M", dims: &[16 << 20], quick: false, backward: true },
    BenchShape { name: "pointwise_1M", dims: &[1 << 20], quick: true, backward: true },
];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-5, 1e-4), backward: (1e-6, 1e-4) };
/// At the benchmark shapes, where the mean's gradients are 1/n-small.
const BENCH_TOLERANCE: Tolerance = Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-4) };

/// An input and a target read once; the backward also writes the gradient.
fn bytes(dims: &[usize]) -> (Work, Work) {
    let nb = numel(dims) as u64 * 4;
    (Work::Bytes(2 * nb), Work::Bytes(3 * nb))
}

/// Three operands read once; the backward also writes two gradients.
fn bytes3(dims: &[usize]) -> (Work, Work) {
    let nb = numel(dims) as u64 * 4;
    (Work::Bytes(3 * nb), Work::Bytes(5 * nb))
}

/// The columns of a shape (its last dim), which per-column weights run along.
fn cols(shape: &[usize]) -> usize {
    *shape.last().unwrap_or(&1)
}

/// The formula of `op` with its options, as the reference knows it.
fn formula(op: &str, o: &Options) -> Pointwise {
    match op {
        "mse" => Pointwise::Mse,
        "l1" => Pointwise::L1,
        "smooth_l1" => Pointwise::SmoothL1(o.beta as f64),
        "huber" => Pointwise::Huber(o.delta as f64),
        "bce" => Pointwise::Bce,
        "bce_with_logits" => Pointwise::BceWithLogits,
        "kl_div" => Pointwise::KlDiv(o.log_target),
        "sigmoid_focal" => Pointwise::SigmoidFocal { alpha: o.alpha as f64, gamma: o.gamma as f64 },
        "poisson_nll" => Pointwise::PoissonNll {
            log_input: o.log_input,
            full: o.full,
            eps: o.eps.unwrap_or(POISSON_EPS) as f64,
        },
        "hinge_embedding" => Pointwise::HingeEmbedding(o.margin.unwrap_or(HINGE_MARGIN) as f64),
        "gaussian_nll" => Pointwise::GaussianNll { full: o.full, eps: o.eps.unwrap_or(GAUSSIAN_EPS) as f64 },
        "margin_ranking" => Pointwise::MarginRanking(o.margin.unwrap_or(0.0) as f64),
        _ => Pointwise::SoftMargin,
    }
}

/// PyTorch's defaults of poisson_nll's and gaussian_nll's eps and hinge_embedding's margin.
const POISSON_EPS: f32 = 1e-8;
const GAUSSIAN_EPS: f32 = 1e-6;
const HINGE_MARGIN: f32 = 1.0;

/// The mean's divisor: the element count, or the batch size for `batchmean`.
fn divisor(a: &Args) -> f64 {
    match a.options.reduction {
        LossReduction::BatchMean => a.input.shape.first().copied().unwrap_or(1) as f64,
        _ => a.input.data.len() as f64,
    }
}

/// A weight broadcast to the input's shape (numpy's rules), or the error the library gives.
fn expanded(
    op: &'static str,
    what: &str,
    weight: Option<&Array>,
    shape: &[usize],
) -> Result<Option<Vec<f64>>> {
    let Some(w) = weight else { return Ok(None) };
    broadcast_to(&w.data, &w.shape, shape).map(Some).ok_or_else(|| {
        Error::shape(op, format!("{what} {:?} does not broadcast to the input {shape:?}", w.shape))
    })
}

/// The formula's second operand (the target, or margin_ranking's input2) and its aux operand
/// expanded to the input's shape (pos_weight, gaussian_nll's var, margin_ranking's target).
fn operands<'a>(op: &'static str, a: &'a Args) -> Result<(&'a Array, Option<Vec<f64>>)> {
    let shape = &a.input.shape;
    let same = |what: &str, b: &Array| {
        if &b.shape != shape {
            return Err(Error::shape(op, format!("input {shape:?} and {what} {:?} differ", b.shape)));
        }
        Ok(b.data.clone())
    };
    match op {
        "margin_ranking" => {
            let x2 = a.required(op, Operand::Input2)?;
            same("input2", x2)?;
            Ok((x2, Some(same("target", a.values_target(op)?)?)))
        }
        "gaussian_nll" => {
            let var = a.required(op, Operand::Var)?;
            let from = gaussian_var_shape(shape, &var.shape).ok_or_else(|| {
                Error::shape(op, format!("var {:?} is of incorrect size for the input {shape:?}", var.shape))
            })?;
            let var = Array { shape: from, ..var.clone() };
            Ok((a.values_target(op)?, expanded(op, "var", Some(&var), shape)?))
        }
        _ => Ok((a.values_target(op)?, expanded(op, "pos_weight", a.pos_weight.as_ref(), shape)?)),
    }
}

fn reference_forward(op: &'static str, a: &Args) -> Result<Vec<f64>> {
    let (y, aux) = operands(op, a)?;
    let shape = &a.input.shape;
    let w = expanded(op, "weight", a.weight.as_ref(), shape)?;
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let (w, aux) = (w.as_deref(), aux.as_deref());
    Ok(reference::forward(f, &a.input.data, &y.data, cols(shape), w, aux, r, divisor(a)))
}

fn reference_backward(op: &'static str, a: &Args, g: &[f64]) -> Result<Vec<f64>> {
    let (y, aux) = operands(op, a)?;
    let shape = &a.input.shape;
    let w = expanded(op, "weight", a.weight.as_ref(), shape)?;
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let (w, aux) = (w.as_deref(), aux.as_deref());
    Ok(reference::backward(f, &a.input.data, &y.data, cols(shape), w, aux, g, r, divisor(a)).0)
}

/// margin_ranking's gradient in input2.
fn margin_ranking_reference_operands(a: &Args, g: &[f64]) -> Result<Vec<Vec<f64>>> {
    let op = "margin_ranking";
    let (x2, t) = operands(op, a)?;
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let shape = &a.input.shape;
    let d2 =
        reference::backward(f, &a.input.data, &x2.data, cols(shape), None, t.as_deref(), g, r, divisor(a)).1;
    Ok(vec![d2])
}

/// gaussian_nll's gradient in var, summed over the dim it is broadcast along.
fn gaussian_nll_reference_operands(a: &Args, g: &[f64]) -> Result<Vec<Vec<f64>>> {
    let op = "gaussian_nll";
    let (y, var) = operands(op, a)?;
    let var = var.expect("gaussian_nll has a var");
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let shape = &a.input.shape;
    let per_element =
        reference::aux_backward(f, &a.input.data, &y.data, cols(shape), None, &var, g, r, divisor(a));
    let given = a.required(op, Operand::Var)?;
    let from = gaussian_var_shape(shape, &given.shape).expect("checked by operands");
    Ok(vec![sum_to(&per_element, shape, &from).expect("checked by operands")])
}

/// Inputs with values in [−scale, scale) and targets drawn by `target`.
fn pair(
    rng: &mut Rng,
    shape: &[usize],
    input: (f32, f32),
    target: impl Fn(&mut Rng, usize) -> Vec<f32>,
) -> Args {
    let n = numel(shape);
    let x = rng.uniform(n, input.0, input.1);
    let y = target(rng, n);
    let mut a = Args::new(Array::from_f32(&x, shape));
    a.target = Some(Target::Values(Array::from_f32(&y, shape)));
    a
}

fn regression(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    pair(rng, shape, (-2.0, 2.0), |r, n| r.values(n, 2.0))
}

/// Element weights (the input's shape) and `pos_weight` along the class dim (dim 1 of a batch,
/// `[C, 1, …]`, broadcast over the batch and the other dims), when the variant asks.
fn weights(rng: &mut Rng, a: &mut Args, v: &Variant) {
    let shape = a.input.shape.clone();
    if v.has(Extra::Weight) {
        a.weight = Some(Array::from_f32(&rng.uniform(numel(&shape), 0.5, 1.5), &shape));
    }
    if v.has(Extra::PosWeight) {
        let mut classes = shape[class_dim(&shape)..].to_vec();
        classes[1..].fill(1);
        a.pos_weight = Some(Array::from_f32(&rng.uniform(numel(&classes), 0.5, 2.0), &classes));
    }
}

fn probabilities(rng: &mut Rng, shape: &[usize], _: &Options, v: &Variant) -> Args {
    let mut a = pair(rng, shape, (0.02, 0.98), |r, n| r.uniform(n, 0.0, 1.0));
    weights(rng, &mut a, v);
    a
}

fn logits(rng: &mut Rng, shape: &[usize], _: &Options, v: &Variant) -> Args {
    let (low, high) = if v.has(Extra::WideTargets) { (-1.0, 2.0) } else { (0.0, 1.0) };
    let mut a = pair(rng, shape, (-3.0, 3.0), |r, n| r.uniform(n, low, high));
    weights(rng, &mut a, v);
    a
}

fn distribution(rng: &mut Rng, shape: &[usize], o: &Options, _: &Variant) -> Args {
    if o.log_target {
        pair(rng, shape, (-3.0, 0.0), |r, n| r.uniform(n, -3.0, 0.0))
    } else {
        pair(rng, shape, (-3.0, 0.0), |r, n| r.uniform(n, 0.0, 1.0))
    }
}

fn margins(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    pair(rng, shape, (-3.0, 3.0), |r, n| r.signs(n))
}

/// Inputs and targets in [−2, 2) and variances in [0.05, 2): of the input's shape, or of the
/// shape the variant asks for (one per row; or size 1 along dim 0).
fn gaussian(rng: &mut Rng, shape: &[usize], _: &Options, v: &Variant) -> Args {
    let mut a = pair(rng, shape, (-2.0, 2.0), |r, n| r.values(n, 2.0));
    let mut var_shape = shape.to_vec();
    if v.has(Extra::VarPerRow) {
        var_shape.pop();
    } else if v.has(Extra::VarBroadcast) {
        var_shape[0] = 1;
    }
    a.var = Some(Array::from_f32(&rng.uniform(numel(&var_shape), 0.05, 2.0), &var_shape));
    a
}

/// Two inputs in [−3, 3) and ±1 targets.
fn ranking(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    let mut a = pair(rng, shape, (-3.0, 3.0), |r, n| r.signs(n));
    a.input2 = Some(Array::from_f32(&rng.uniform(numel(shape), -3.0, 3.0), shape));
    a
}

/// Rates (log-rates, or positive rates without `log_input`) and counts in [0, 5).
fn counts(rng: &mut Rng, shape: &[usize], o: &Options, _: &Variant) -> Args {
    let input = if o.log_input { (-2.0, 2.0) } else { (0.1, 3.0) };
    pair(rng, shape, input, |r, n| r.uniform(n, 0.0, 5.0))
}

/// Forward and backward of a library loss built from the inputs' options.
macro_rules! gpu {
    ($forward:ident, $backward:ident, $op:literal, |$i:ident| $make:expr) => {
        fn $forward($i: &Inputs) -> Result<Tensor> {
            let loss = $make;
            loss.forward(&$i.input, $i.values_target($op)?)
        }

        fn $backward($i: &Inputs, _: &Tensor, g: &Tensor) -> Result<Tensor> {
            let loss = $make;
            loss.backward(&$i.input, $i.values_target($op)?, g)
        }
    };
}

gpu!(mse_forward, mse_backward, "mse", |i| Mse {
    reduction: i.options.reduction.without_batchmean("mse")?,
    outputs: i.options.outputs
});
gpu!(l1_forward, l1_backward, "l1", |i| L1 {
    reduction: i.options.reduction.without_batchmean("l1")?,
    outputs: i.options.outputs
});
gpu!(smooth_l1_forward, smooth_l1_backward, "smooth_l1", |i| SmoothL1 {
    beta: i.options.beta,
    reduction: i.options.reduction.without_batchmean("smooth_l1")?,
    outputs: i.options.outputs
});
gpu!(huber_forward, huber_backward, "huber", |i| Huber {
    delta: i.options.delta,
    reduction: i.options.reduction.without_batchmean("huber")?,
    outputs: i.options.outputs
});
gpu!(bce_forward, bce_backward, "bce", |i| Bce {
    weight: i.weight.clone(),
    reduction: i.options.reduction.without_batchmean("bce")?,
    outputs: i.options.outputs
});
gpu!(bce_with_logits_forward, bce_with_logits_backward, "bce_with_logits", |i| BceWithLogits {
    weight: i.weight.clone(),
    pos_weight: i.pos_weight.clone(),
    reduction: i.options.reduction.without_batchmean("bce_with_logits")?,
    outputs: i.options.outputs
});
gpu!(kl_div_forward, kl_div_backward, "kl_div", |i| KlDiv {
    log_target: i.options.log_target,
    reduction: match i.options.reduction {
        LossReduction::None => KlReduction::None,
        LossReduction::Mean => KlReduction::Mean,
        LossReduction::Sum => KlReduction::Sum,
        LossReduction::BatchMean => KlReduction::BatchMean,
    },
    outputs: i.options.outputs
});
gpu!(soft_margin_forward, soft_margin_backward, "soft_margin", |i| SoftMargin {
    reduction: i.options.reduction.without_batchmean("soft_margin")?,
    outputs: i.options.outputs
});
gpu!(sigmoid_focal_forward, sigmoid_focal_backward, "sigmoid_focal", |i| SigmoidFocal {
    alpha: i.options.alpha,
    gamma: i.options.gamma,
    reduction: i.options.reduction.without_batchmean("sigmoid_focal")?,
    outputs: i.options.outputs
});
gpu!(poisson_nll_forward, poisson_nll_backward, "poisson_nll", |i| PoissonNll {
    log_input: i.options.log_input,
    full: i.options.full,
    eps: i.options.eps.unwrap_or(POISSON_EPS),
    reduction: i.options.reduction.without_batchmean("poisson_nll")?,
    outputs: i.options.outputs
});
gpu!(hinge_embedding_forward, hinge_embedding_backward, "hinge_embedding", |i| HingeEmbedding {
    margin: i.options.margin.unwrap_or(HINGE_MARGIN),
    reduction: i.options.reduction.without_batchmean("hinge_embedding")?,
    outputs: i.options.outputs
});

fn gaussian_nll(i: &Inputs) -> Result<GaussianNll> {
    Ok(GaussianNll {
        full: i.options.full,
        eps: i.options.eps.unwrap_or(GAUSSIAN_EPS),
        reduction: i.options.reduction.without_batchmean("gaussian_nll")?,
        outputs: i.options.outputs,
    })
}

fn gaussian_nll_grads(i: &Inputs, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let (target, var) = (i.values_target("gaussian_nll")?, i.required("gaussian_nll", Operand::Var)?);
    gaussian_nll(i)?.backward(&i.input, target, var, g)
}

fn margin_ranking(i: &Inputs) -> Result<MarginRanking> {
    Ok(MarginRanking {
        margin: i.options.margin.unwrap_or(0.0),
        reduction: i.options.reduction.without_batchmean("margin_ranking")?,
        outputs: i.options.outputs,
    })
}

fn margin_ranking_grads(i: &Inputs, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let (x2, target) = (i.required("margin_ranking", Operand::Input2)?, i.values_target("margin_ranking")?);
    margin_ranking(i)?.backward(&i.input, x2, target, g)
}

/// A pointwise catalogue entry; `$name` is a literal, the rest differ per loss.
macro_rules! entry {
    ($name:literal, $forward:expr, $backward:expr, {$($field:ident: $value:expr),* $(,)?}) => {
        entry!($name, $forward, $backward, {
            operands: &[],
            backward_operands: no_operand_grads,
            reference_backward_operands: no_operand_references,
            forward_backward: None,
            bench_work: bytes,
            $($field: $value),*
        } with operands)
    };
    ($name:literal, $forward:expr, $backward:expr, {$($field:ident: $value:expr),* $(,)?} with operands) => {
        Loss {
            name: $name,
            forward: $forward,
            backward: $backward,
            reference: |a| reference_forward($name, a),
            reference_backward: |a, g| reference_backward($name, a, g),
            test_shapes: SHAPES,
            tolerance: TOLERANCE,
            bench: BENCH,
            bias: false,
            labels: false,
            lengths: false,
            gradient: GradientOf::Input,
            $($field: $value),*
        }
    };
}

pub(super) static MSE: Loss = entry!("mse", mse_forward, mse_backward, {
    pytorch: "torch.nn.functional.mse_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS],
    generate: regression,
});

pub(super) static L1: Loss = entry!("l1", l1_forward, l1_backward, {
    pytorch: "torch.nn.functional.l1_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS],
    generate: regression,
});

pub(super) static SMOOTH_L1: Loss = entry!("smooth_l1", smooth_l1_forward, smooth_l1_backward, {
    pytorch: "torch.nn.functional.smooth_l1_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::Beta],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[
        DEFAULTS,
        Variant { name: "beta=0.5", options: |o| o.beta = 0.5, extras: &[] },
        Variant { name: "beta=0", options: |o| o.beta = 0.0, extras: &[] },
    ],
    generate: regression,
});

pub(super) static HUBER: Loss = entry!("huber", huber_forward, huber_backward, {
    pytorch: "torch.nn.functional.huber_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::Delta],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS, Variant { name: "delta=0.5", options: |o| o.delta = 0.5, extras: &[] }],
    generate: regression,
});

pub(super) static BCE: Loss = entry!("bce", bce_forward, bce_backward, {
    pytorch: "torch.nn.functional.binary_cross_entropy",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::Elements,
    pos_weight: false,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS, Variant { name: "weight", options: |_| {}, extras: &[Extra::Weight] }],
    generate: probabilities,
});

pub(super) static BCE_WITH_LOGITS: Loss = entry!("bce_with_logits", bce_with_logits_forward, bce_with_logits_backward, {
    pytorch: "torch.nn.functional.binary_cross_entropy_with_logits",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::Elements,
    pos_weight: true,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[
        DEFAULTS,
        Variant { name: "weight", options: |_| {}, extras: &[Extra::Weight] },
        Variant { name: "pos_weight", options: |_| {}, extras: &[Extra::PosWeight] },
        Variant { name: "weight+pos_weight", options: |_| {}, extras: &[Extra::Weight, Extra::PosWeight] },
    ],
    generate: logits,
});

pub(super) static KL_DIV: Loss = entry!("kl_div", kl_div_forward, kl_div_backward, {
    pytorch: "torch.nn.functional.kl_div",
    target: TargetKind::Distribution,
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::LogTarget],
    reductions: &[LossReduction::None, LossReduction::Mean, LossReduction::Sum, LossReduction::BatchMean],
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS, Variant { name: "log_target", options: |o| o.log_target = true, extras: &[] }],
    generate: distribution,
});

pub(super) static SOFT_MARGIN: Loss = entry!("soft_margin", soft_margin_forward, soft_margin_backward, {
    pytorch: "torch.nn.functional.soft_margin_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS],
    generate: margins,
});

pub(super) static SIGMOID_FOCAL: Loss = entry!("sigmoid_focal", sigmoid_focal_forward, sigmoid_focal_backward, {
    pytorch: "torchvision.ops.sigmoid_focal_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::Alpha, Opt::Gamma],
    reductions: PLAIN,
    default_reduction: LossReduction::None,
    bench_tolerance: TOLERANCE, // its benches keep torchvision's none: gradients of order 1
    variants: &[
        DEFAULTS,
        Variant { name: "alpha=-1", options: |o| o.alpha = -1.0, extras: &[] },
        Variant { name: "gamma=0", options: |o| o.gamma = 0.0, extras: &[] },
        Variant {
            name: "alpha=0.6,gamma=1.5",
            options: |o| {
                o.alpha = 0.6;
                o.gamma = 1.5;
            },
            extras: &[],
        },
        // 1 − p_t < 0: an even power keeps it positive, an odd one negative, a fractional one
        // is NaN, as PyTorch's pow.
        Variant { name: "targets in [-1, 2)", options: |_| {}, extras: &[Extra::WideTargets] },
        Variant { name: "targets in [-1, 2),gamma=3", options: |o| o.gamma = 3.0, extras: &[Extra::WideTargets] },
        Variant {
            name: "targets in [-1, 2),alpha=1,gamma=1.5",
            options: |o| {
                o.alpha = 1.0;
                o.gamma = 1.5;
            },
            extras: &[Extra::WideTargets],
        },
    ],
    generate: logits,
});

pub(super) static POISSON_NLL: Loss = entry!("poisson_nll", poisson_nll_forward, poisson_nll_backward, {
    pytorch: "torch.nn.functional.poisson_nll_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::LogInput, Opt::Full, Opt::Eps],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[
        DEFAULTS,
        Variant { name: "full", options: |o| o.full = true, extras: &[] },
        Variant { name: "no_log_input", options: |o| o.log_input = false, extras: &[] },
        Variant {
            name: "no_log_input,full,eps=0.5",
            options: |o| {
                o.log_input = false;
                o.full = true;
                o.eps = Some(0.5);
            },
            extras: &[],
        },
    ],
    generate: counts,
});

pub(super) static HINGE_EMBEDDING: Loss = entry!("hinge_embedding", hinge_embedding_forward, hinge_embedding_backward, {
    pytorch: "torch.nn.functional.hinge_embedding_loss",
    target: TargetKind::Values { what: "targets" },
    weight: WeightKind::None,
    pos_weight: false,
    options: &[Opt::Margin],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    bench_tolerance: BENCH_TOLERANCE,
    variants: &[DEFAULTS, Variant { name: "margin=0.5", options: |o| o.margin = Some(0.5), extras: &[] }],
    generate: margins,
});

pub(super) static GAUSSIAN_NLL: Loss = entry!(
    "gaussian_nll",
    |i| gaussian_nll(i)?.forward(
        &i.input,
        i.values_target("gaussian_nll")?,
        i.required("gaussian_nll", Operand::Var)?
    ),
    |i, _, g| Ok(gaussian_nll_grads(i, g)?.0),
    {
        pytorch: "torch.nn.functional.gaussian_nll_loss",
        target: TargetKind::Values { what: "targets" },
        weight: WeightKind::None,
        pos_weight: false,
        options: &[Opt::Full, Opt::Eps],
        reductions: PLAIN,
        default_reduction: LossReduction::Mean,
        bench_tolerance: BENCH_TOLERANCE,
        variants: &[
            DEFAULTS,
            Variant { name: "full", options: |o| o.full = true, extras: &[] },
            Variant { name: "eps=0.5", options: |o| o.eps = Some(0.5), extras: &[] },
            Variant { name: "var_per_row", options: |_| {}, extras: &[Extra::VarPerRow] },
            Variant { name: "var_broadcast", options: |_| {}, extras: &[Extra::VarBroadcast] },
        ],
        generate: gaussian,
        operands: &[Operand::Var],
        backward_operands: |i, g| Ok(vec![gaussian_nll_grads(i, g)?.1]),
        reference_backward_operands: gaussian_nll_reference_operands,
        forward_backward: None,
        bench_work: bytes3,
    } with operands
);

pub(super) static MARGIN_RANKING: Loss = entry!(
    "margin_ranking",
    |i| margin_ranking(i)?.forward(
        &i.input,
        i.required("margin_ranking", Operand::Input2)?,
        i.values_target("margin_ranking")?
    ),
    |i, _, g| Ok(margin_ranking_grads(i, g)?.0),
    {
        pytorch: "torch.nn.functional.margin_ranking_loss",
        target: TargetKind::Values { what: "targets" },
        weight: WeightKind::None,
        pos_weight: false,
        options: &[Opt::Margin],
        reductions: PLAIN,
        default_reduction: LossReduction::Mean,
        bench_tolerance: BENCH_TOLERANCE,
        variants: &[DEFAULTS, Variant { name: "margin=0.5", options: |o| o.margin = Some(0.5), extras: &[] }],
        generate: ranking,
        operands: &[Operand::Input2],
        backward_operands: |i, g| Ok(vec![margin_ranking_grads(i, g)?.1]),
        reference_backward_operands: margin_ranking_reference_operands,
        forward_backward: None,
        bench_work: bytes3,
    } with operands
);
