//! The class-margin losses: rows of C classes (the last dim) against a class id per row
//! (multi_margin) or a float target per class (multilabel_soft_margin), with class weights.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Inputs, Loss, LossReduction, Opt, Options, Target,
    TargetKind, Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references, numel,
};
use crate::data::Rng;
use crate::error::{Error, NO_IGNORE_INDEX, Result};
use crate::ops::class_margin::{MultiMargin, MultilabelSoftMargin};
use crate::ops::multilabel_margin::MultilabelMargin;
use crate::reference::class_margin as reference;

const PLAIN: &[LossReduction] = &[LossReduction::None, LossReduction::Mean, LossReduction::Sum];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-5, 1e-4), backward: (1e-6, 1e-4) };
const BENCH: &[BenchShape] = &[
    BenchShape { name: "margin_65536x100", dims: &[65536, 100], quick: false, backward: true },
    BenchShape { name: "margin_4096x1000", dims: &[4096, 1000], quick: false, backward: true },
    BenchShape { name: "margin_1024x100", dims: &[1024, 100], quick: true, backward: true },
    // A million classes a row: each row spread over many threads (the loop budget's split).
    BenchShape { name: "margin_16x1000000", dims: &[16, 1_000_000], quick: false, backward: true },
];
/// multilabel_margin's partial sums cost C² a row: tabular widths.
const LISTED_BENCH: &[BenchShape] = &[
    BenchShape { name: "multilabel_65536x20", dims: &[65536, 20], quick: false, backward: true },
    BenchShape { name: "multilabel_1024x100", dims: &[1024, 100], quick: true, backward: true },
];
const WEIGHTED: Variant = Variant { name: "weight", options: |_| {}, extras: &[Extra::Weight] };
/// PyTorch's default margin of multi_margin.
const MARGIN: f32 = 1.0;

/// The classes of a row, and the rows, of an input of `shape`.
fn classes_and_rows(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(1);
    (cols, numel(shape).checked_div(cols).unwrap_or(0))
}

/// Class weights `(C)` when the variant asks.
fn class_weights(rng: &mut Rng, a: &mut Args, v: &Variant) {
    if v.has(Extra::Weight) {
        let (cols, _) = classes_and_rows(&a.input.shape);
        a.weight = Some(Array::from_f32(&rng.uniform(cols, 0.5, 1.5), &[cols]));
    }
}

fn weights(a: &Args) -> Option<&[f64]> {
    a.weight.as_ref().map(|w| &w.data[..])
}

/// Scores in [−2, 2) (so that some hinges are open at margin 1 and some closed) and a class id
/// per row: `(N)` for `(N, C)`, `()` for an unbatched `(C)`.
fn scores(rng: &mut Rng, shape: &[usize], _: &Options, v: &Variant) -> Args {
    let (cols, rows) = classes_and_rows(shape);
    let mut a = Args::new(Array::from_f32(&rng.uniform(numel(shape), -2.0, 2.0), shape));
    let ids = rng.classes(rows, cols);
    a.target = Some(Target::Ids { data: ids, shape: shape[..shape.len() - 1].to_vec() });
    class_weights(rng, &mut a, v);
    a
}

/// Scores in [−2, 2) and, per row, 0 to 3 listed targets (the second repeating the first in
/// every third row), a −1, then class ids that do not count.
fn listed_targets(rng: &mut Rng, shape: &[usize], _: &Options, _: &Variant) -> Args {
    let (cols, rows) = classes_and_rows(shape);
    let mut a = Args::new(Array::from_f32(&rng.uniform(numel(shape), -2.0, 2.0), shape));
    let mut ids = Vec::with_capacity(numel(shape));
    for r in 0..rows {
        let count = rng.below(4).min(cols);
        let mut row: Vec<i64> = (0..count).map(|_| rng.below(cols) as i64).collect();
        if r % 3 == 0 && count >= 2 {
            row[1] = row[0];
        }
        while row.len() < cols {
            row.push(if row.len() == count { -1 } else { rng.below(cols) as i64 });
        }
        ids.extend(row);
    }
    a.target = Some(Target::Ids { data: ids, shape: shape.to_vec() });
    a
}

/// The reference's bad target (a flat position) as the library's error.
fn listed_out_of_range(a: &Args, position: usize) -> Error {
    let ids = a.ids_target("multilabel_margin").unwrap_or_default();
    Error::TargetOutOfRange {
        op: "multilabel_margin",
        position,
        value: ids.get(position).copied().unwrap_or_default(),
        classes: classes_and_rows(&a.input.shape).0,
        ignore_index: NO_IGNORE_INDEX,
    }
}

/// Logits in [−3, 3) and soft labels in [0, 1) of the same shape.
fn labels(rng: &mut Rng, shape: &[usize], _: &Options, v: &Variant) -> Args {
    let mut a = Args::new(Array::from_f32(&rng.uniform(numel(shape), -3.0, 3.0), shape));
    a.target = Some(Target::Values(Array::from_f32(&rng.uniform(numel(shape), 0.0, 1.0), shape)));
    class_weights(rng, &mut a, v);
    a
}

/// multi_margin's p from the options: PyTorch's int 1 or 2 (default 1).
fn hinge_power(o: &Options) -> Result<u32> {
    match o.p {
        None => Ok(1),
        Some(p) if p == 1.0 || p == 2.0 => Ok(p as u32),
        Some(p) => {
            Err(Error::invalid("multi_margin", format!("only p == 1 and p == 2 are supported, got {p}")))
        }
    }
}

fn multi_margin(i: &Inputs) -> Result<MultiMargin> {
    Ok(MultiMargin {
        p: hinge_power(&i.options)?,
        margin: i.options.margin.unwrap_or(MARGIN),
        weight: i.weight.clone(),
        reduction: i.options.reduction.without_batchmean("multi_margin")?,
        outputs: i.options.outputs,
    })
}

fn multilabel_soft_margin(i: &Inputs) -> Result<MultilabelSoftMargin> {
    Ok(MultilabelSoftMargin {
        weight: i.weight.clone(),
        reduction: i.options.reduction.without_batchmean("multilabel_soft_margin")?,
        outputs: i.options.outputs,
    })
}

/// The reference's bad row as the library's error.
fn out_of_range(a: &Args, row: usize) -> Error {
    let ids = a.ids_target("multi_margin").unwrap_or_default();
    let (cols, _) = classes_and_rows(&a.input.shape);
    Error::TargetOutOfRange {
        op: "multi_margin",
        position: row,
        value: ids.get(row).copied().unwrap_or_default(),
        classes: cols,
        ignore_index: NO_IGNORE_INDEX,
    }
}

/// The input and its target read once; the backward also writes the gradient.
fn bytes(dims: &[usize], target_bytes: u64) -> (Work, Work) {
    let xb = numel(dims) as u64 * 4;
    (Work::Bytes(xb + target_bytes), Work::Bytes(2 * xb + target_bytes))
}

pub(super) static MULTI_MARGIN: Loss = Loss {
    name: "multi_margin",
    pytorch: "torch.nn.functional.multi_margin_loss",
    target: TargetKind::Ids,
    weight: WeightKind::Classes,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::P, Opt::Margin],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[
        DEFAULTS,
        Variant { name: "p=2", options: |o| o.p = Some(2.0), extras: &[] },
        Variant { name: "margin=0.5", options: |o| o.margin = Some(0.5), extras: &[] },
        WEIGHTED,
    ],
    test_shapes: &[&[7, 13], &[5], &[1, 3]],
    generate: scores,
    forward: |i| multi_margin(i)?.forward(&i.input, i.ids_target("multi_margin")?),
    backward: |i, _, g| multi_margin(i)?.backward(&i.input, i.ids_target("multi_margin")?, g),
    reference: |a| {
        let (o, (cols, _)) = (&a.options, classes_and_rows(&a.input.shape));
        let r = o.reduction.without_batchmean("multi_margin")?;
        let m = o.margin.unwrap_or(MARGIN) as f64;
        reference::multi_margin(
            &a.input.data,
            cols,
            a.ids_target("multi_margin")?,
            hinge_power(o)?,
            m,
            weights(a),
            r,
        )
        .map_err(|row| out_of_range(a, row))
    },
    reference_backward: |a, g| {
        let (o, (cols, _)) = (&a.options, classes_and_rows(&a.input.shape));
        let r = o.reduction.without_batchmean("multi_margin")?;
        let (m, t) = (o.margin.unwrap_or(MARGIN) as f64, a.ids_target("multi_margin")?);
        reference::multi_margin_backward(&a.input.data, cols, t, hinge_power(o)?, m, weights(a), g, r)
            .map_err(|row| out_of_range(a, row))
    },
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-4) },
    bench: BENCH,
    bench_work: |d| bytes(d, d[0] as u64 * 8),
};

pub(super) static MULTILABEL_SOFT_MARGIN: Loss = Loss {
    name: "multilabel_soft_margin",
    pytorch: "torch.nn.functional.multilabel_soft_margin_loss",
    target: TargetKind::Values { what: "labels" },
    weight: WeightKind::Classes,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[DEFAULTS, WEIGHTED],
    test_shapes: &[&[7, 13], &[2, 3, 5], &[9]],
    generate: labels,
    forward: |i| multilabel_soft_margin(i)?.forward(&i.input, i.values_target("multilabel_soft_margin")?),
    backward: |i, _, g| {
        multilabel_soft_margin(i)?.backward(&i.input, i.values_target("multilabel_soft_margin")?, g)
    },
    reference: |a| {
        let (cols, _) = classes_and_rows(&a.input.shape);
        let r = a.options.reduction.without_batchmean("multilabel_soft_margin")?;
        let y = a.values_target("multilabel_soft_margin")?;
        Ok(reference::multilabel_soft_margin(&a.input.data, &y.data, cols, weights(a), r))
    },
    reference_backward: |a, g| {
        let (cols, _) = classes_and_rows(&a.input.shape);
        let r = a.options.reduction.without_batchmean("multilabel_soft_margin")?;
        let y = a.values_target("multilabel_soft_margin")?;
        Ok(reference::multilabel_soft_margin_backward(&a.input.data, &y.data, cols, weights(a), g, r))
    },
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-4) },
    bench: BENCH,
    bench_work: |d| bytes(d, numel(d) as u64 * 4),
};

pub(super) static MULTILABEL_MARGIN: Loss = Loss {
    name: "multilabel_margin",
    pytorch: "torch.nn.functional.multilabel_margin_loss",
    target: TargetKind::Ids,
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[DEFAULTS],
    test_shapes: &[&[7, 13], &[5], &[1, 3], &[6, 2]],
    generate: listed_targets,
    forward: |i| {
        let r = i.options.reduction.without_batchmean("multilabel_margin")?;
        MultilabelMargin { reduction: r, outputs: i.options.outputs }
            .forward(&i.input, i.ids_target("multilabel_margin")?)
    },
    backward: |i, _, g| {
        let r = i.options.reduction.without_batchmean("multilabel_margin")?;
        let loss = MultilabelMargin { reduction: r, outputs: i.options.outputs };
        loss.backward(&i.input, i.ids_target("multilabel_margin")?, g)
    },
    reference: |a| {
        let (cols, _) = classes_and_rows(&a.input.shape);
        let r = a.options.reduction.without_batchmean("multilabel_margin")?;
        reference::multilabel_margin(&a.input.data, a.ids_target("multilabel_margin")?, cols, r)
            .map_err(|p| listed_out_of_range(a, p))
    },
    reference_backward: |a, g| {
        let (cols, _) = classes_and_rows(&a.input.shape);
        let r = a.options.reduction.without_batchmean("multilabel_margin")?;
        reference::multilabel_margin_backward(&a.input.data, a.ids_target("multilabel_margin")?, cols, g, r)
            .map_err(|p| listed_out_of_range(a, p))
    },
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-4) },
    bench: LISTED_BENCH,
    bench_work: |d| bytes(d, numel(d) as u64 * 8),
};
