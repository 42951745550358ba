//! The elementwise losses: one input, one float target of the same shape, optional weights.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, Inputs, Loss, LossReduction, Opt, Options, Target, TargetKind,
    Tolerance, Variant, WeightKind, Work, numel,
};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::ops::pointwise::{
    Bce, BceWithLogits, HingeEmbedding, Huber, KlDiv, KlReduction, L1, Mse, PoissonNll, SigmoidFocal,
    SmoothL1, SoftMargin,
};
use crate::reference::pointwise::{self as reference, Pointwise};
use crate::reference::{broadcast_to, class_dim};
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
        _ => Pointwise::SoftMargin,
    }
}

/// PyTorch's defaults of poisson_nll's eps and hinge_embedding's margin.
const POISSON_EPS: f32 = 1e-8;
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

fn reference_forward(op: &'static str, a: &Args) -> Result<Vec<f64>> {
    let y = a.values_target(op)?;
    let shape = &a.input.shape;
    let w = expanded(op, "weight", a.weight.as_ref(), shape)?;
    let pw = expanded(op, "pos_weight", a.pos_weight.as_ref(), shape)?;
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let (w, pw) = (w.as_deref(), pw.as_deref());
    Ok(reference::forward(f, &a.input.data, &y.data, cols(shape), w, pw, r, divisor(a)))
}

fn reference_backward(op: &'static str, a: &Args, g: &[f64]) -> Result<Vec<f64>> {
    let y = a.values_target(op)?;
    let shape = &a.input.shape;
    let w = expanded(op, "weight", a.weight.as_ref(), shape)?;
    let pw = expanded(op, "pos_weight", a.pos_weight.as_ref(), shape)?;
    let (f, r) = (formula(op, &a.options), a.options.reduction.plain());
    let (w, pw) = (w.as_deref(), pw.as_deref());
    Ok(reference::backward(f, &a.input.data, &y.data, cols(shape), w, pw, g, r, divisor(a)).0)
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
    let mut a = pair(rng, shape, (-3.0, 3.0), |r, n| r.uniform(n, 0.0, 1.0));
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

/// A pointwise catalogue entry; `$name` is a literal, the rest differ per loss.
macro_rules! entry {
    ($name:literal, $forward:ident, $backward:ident, {$($field:ident: $value:expr),* $(,)?}) => {
        Loss {
            name: $name,
            forward: $forward,
            backward: $backward,
            reference: |a| reference_forward($name, a),
            reference_backward: |a, g| reference_backward($name, a, g),
            test_shapes: SHAPES,
            tolerance: TOLERANCE,
            bench: BENCH,
            bench_work: bytes,
            bias: false,
            labels: false,
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
