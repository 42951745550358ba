//! The embedding losses: rows of D values (the last dim) of two inputs and a ±1 target per row
//! (cosine_embedding), or of an anchor, a positive and a negative (triplet_margin).

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, GradientOf, Grads, Inputs, Loss, LossReduction, Operand, Opt, Options,
    Target, TargetKind, Tolerance, Variant, WeightKind, Work, numel,
};
use crate::data::Rng;
use crate::error::Result;
use crate::ops::embedding_rows::{CosineEmbedding, TripletMargin};
use crate::reference::embedding_rows::{self as reference, Triplet};
use crate::tensor::Tensor;

const PLAIN: &[LossReduction] = &[LossReduction::None, LossReduction::Mean, LossReduction::Sum];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-5, 1e-4), backward: (1e-6, 1e-4) };
const BENCH: &[BenchShape] = &[
    BenchShape { name: "embedding_65536x256", dims: &[65536, 256], quick: false, backward: true },
    BenchShape { name: "embedding_4096x128", dims: &[4096, 128], quick: true, backward: true },
    // A million values a row: each row spread over many threads (the loop budget's split).
    BenchShape { name: "embedding_16x1000000", dims: &[16, 1_000_000], quick: false, backward: true },
];
/// PyTorch's defaults of cosine_embedding's and triplet_margin's margins, triplet's p and eps.
const COSINE_MARGIN: f32 = 0.0;
const TRIPLET_MARGIN_DEFAULT: f32 = 1.0;
const TRIPLET_P: f32 = 2.0;
const TRIPLET_EPS: f32 = 1e-6;

/// The values of a row (the last dim).
fn cols(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// `count` inputs of `shape` with values in [−1, 1): the input and input2 (and input3).
fn cosine_args(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    let mut a = Args::new(Array::from_f32(&rng.uniform(numel(shape), -1.0, 1.0), shape));
    a.input2 = Some(Array::from_f32(&rng.uniform(numel(shape), -1.0, 1.0), shape));
    let rows = &shape[..shape.len() - 1];
    a.target = Some(Target::Values(Array::from_f32(&rng.signs(numel(rows)), rows)));
    a
}

/// Anchors in [−1, 1), positives nearer them than negatives, as in training: each difference's
/// spread shrinks with √D, so distances stay about 0.5 (positive) and 0.75 (negative) at any D.
/// Short rows get open and closed hinges alike; long ones (the benchmarks') hinges open by a
/// margin, never at its edge, where float32 and float64 may fall on either side of 0.
fn triplet_args(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    let n = numel(shape);
    let spread = 1.0 / (cols(shape).max(1) as f32).sqrt();
    let anchor = rng.uniform(n, -1.0, 1.0);
    let near = |rng: &mut Rng, scale: f32| -> Vec<f32> {
        let noise = rng.uniform(n, -1.0, 1.0);
        anchor.iter().zip(noise).map(|(a, e)| a + scale * spread * e).collect()
    };
    let (positive, negative) = (near(rng, 0.8), near(rng, 1.3));
    let mut a = Args::new(Array::from_f32(&anchor, shape));
    a.input2 = Some(Array::from_f32(&positive, shape));
    a.input3 = Some(Array::from_f32(&negative, shape));
    a
}

fn cosine(i: &Inputs) -> Result<CosineEmbedding> {
    Ok(CosineEmbedding {
        margin: i.options.margin.unwrap_or(COSINE_MARGIN),
        reduction: i.options.reduction.without_batchmean("cosine_embedding")?,
        outputs: i.options.outputs,
    })
}

fn cosine_grads(i: &Inputs, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let op = "cosine_embedding";
    cosine(i)?.backward(&i.input, i.required(op, Operand::Input2)?, i.values_target(op)?, g)
}

/// cosine_embedding's reference: its gradients in input and input2 (`None` gives the loss).
fn cosine_reference(a: &Args, g: Option<&[f64]>) -> Result<(Vec<f64>, Grads)> {
    let op = "cosine_embedding";
    let (x1, x2, y) = (&a.input, a.required(op, Operand::Input2)?, a.values_target(op)?);
    let r = a.options.reduction.without_batchmean(op)?;
    let m = a.options.margin.unwrap_or(COSINE_MARGIN) as f64;
    let c = cols(&x1.shape);
    Ok(match g {
        None => (reference::cosine_embedding(&x1.data, &x2.data, c, &y.data, m, r), vec![]),
        Some(g) => {
            let (d1, d2) = reference::cosine_embedding_backward(&x1.data, &x2.data, c, &y.data, m, g, r);
            (d1, vec![d2])
        }
    })
}

fn triplet(i: &Inputs) -> Result<TripletMargin> {
    let o = &i.options;
    Ok(TripletMargin {
        margin: o.margin.unwrap_or(TRIPLET_MARGIN_DEFAULT),
        p: o.p.unwrap_or(TRIPLET_P),
        eps: o.eps.unwrap_or(TRIPLET_EPS),
        swap: o.swap,
        reduction: o.reduction.without_batchmean("triplet_margin")?,
        outputs: o.outputs,
    })
}

fn triplet_grads(i: &Inputs, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "triplet_margin";
    triplet(i)?.backward(&i.input, i.required(op, Operand::Input2)?, i.required(op, Operand::Input3)?, g)
}

/// triplet_margin's reference: the loss, or its gradients in the anchor, the positive and the
/// negative.
fn triplet_reference(a: &Args, g: Option<&[f64]>) -> Result<(Vec<f64>, Grads)> {
    let op = "triplet_margin";
    let (x, p, n) = (&a.input, a.required(op, Operand::Input2)?, a.required(op, Operand::Input3)?);
    let o = &a.options;
    let r = o.reduction.without_batchmean(op)?;
    let t = Triplet {
        margin: o.margin.unwrap_or(TRIPLET_MARGIN_DEFAULT) as f64,
        p: o.p.unwrap_or(TRIPLET_P) as f64,
        eps: o.eps.unwrap_or(TRIPLET_EPS) as f64,
        swap: o.swap,
    };
    let c = cols(&x.shape);
    Ok(match g {
        None => (reference::triplet_margin(&x.data, &p.data, &n.data, c, t, r), vec![]),
        Some(g) => {
            let (da, dp, dn) = reference::triplet_margin_backward(&x.data, &p.data, &n.data, c, t, g, r);
            (da, vec![dp, dn])
        }
    })
}

/// `inputs` inputs read once; the backward also writes their gradients.
fn bytes(dims: &[usize], inputs: u64) -> (Work, Work) {
    let xb = numel(dims) as u64 * 4;
    (Work::Bytes(inputs * xb), Work::Bytes(2 * inputs * xb))
}

pub(super) static COSINE_EMBEDDING: Loss = Loss {
    name: "cosine_embedding",
    pytorch: "torch.nn.functional.cosine_embedding_loss",
    target: TargetKind::Values { what: "±1 targets, one per row" },
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::Margin],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[DEFAULTS, Variant { name: "margin=0.5", options: |o| o.margin = Some(0.5), extras: &[] }],
    test_shapes: &[&[7, 13], &[5]],
    generate: cosine_args,
    forward: |i| {
        let op = "cosine_embedding";
        cosine(i)?.forward(&i.input, i.required(op, Operand::Input2)?, i.values_target(op)?)
    },
    backward: |i, _, g| Ok(cosine_grads(i, g)?.0),
    reference: |a| Ok(cosine_reference(a, None)?.0),
    reference_backward: |a, g| Ok(cosine_reference(a, Some(g))?.0),
    operands: &[Operand::Input2],
    backward_operands: |i, g| Ok(vec![cosine_grads(i, g)?.1]),
    reference_backward_operands: |a, g| Ok(cosine_reference(a, Some(g))?.1),
    forward_backward: None,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-3) },
    bench: BENCH,
    bench_work: |d| bytes(d, 2),
};

pub(super) static TRIPLET_MARGIN: Loss = Loss {
    name: "triplet_margin",
    pytorch: "torch.nn.functional.triplet_margin_loss",
    target: TargetKind::None,
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::Margin, Opt::P, Opt::Eps, Opt::Swap],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[
        DEFAULTS,
        Variant { name: "p=1", options: |o| o.p = Some(1.0), extras: &[] },
        Variant {
            name: "p=3,swap",
            options: |o| {
                o.p = Some(3.0);
                o.swap = true;
            },
            extras: &[],
        },
        Variant { name: "p=inf", options: |o| o.p = Some(f32::INFINITY), extras: &[] },
        Variant {
            name: "p=0,swap",
            options: |o| {
                o.p = Some(0.0);
                o.swap = true;
            },
            extras: &[],
        },
        Variant {
            name: "margin=0.5,eps=0,swap",
            options: |o| {
                o.margin = Some(0.5);
                o.eps = Some(0.0);
                o.swap = true;
            },
            extras: &[],
        },
    ],
    test_shapes: &[&[7, 13], &[2, 3, 5], &[9]],
    generate: triplet_args,
    forward: |i| {
        let op = "triplet_margin";
        triplet(i)?.forward(&i.input, i.required(op, Operand::Input2)?, i.required(op, Operand::Input3)?)
    },
    backward: |i, _, g| Ok(triplet_grads(i, g)?.0),
    reference: |a| Ok(triplet_reference(a, None)?.0),
    reference_backward: |a, g| Ok(triplet_reference(a, Some(g))?.0),
    operands: &[Operand::Input2, Operand::Input3],
    backward_operands: |i, g| {
        let (_, dp, dn) = triplet_grads(i, g)?;
        Ok(vec![dp, dn])
    },
    reference_backward_operands: |a, g| Ok(triplet_reference(a, Some(g))?.1),
    forward_backward: None,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-3) },
    bench: BENCH,
    bench_work: |d| bytes(d, 3),
};
