//! The distillation losses: a student's distribution over the classes of each row against a
//! teacher's of the same shape (the target), rows optionally left out by labels.

use super::class::WIDE_SHAPES;
use super::loss::{
    Args, Array, DEFAULTS, Extra, GradientOf, Ids, Inputs, Loss, LossReduction, Opt, Options, Target,
    TargetKind, Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references, numel,
};
use crate::data::Rng;
use crate::ops::divergence::{Jsd, Tvd};
use crate::reference::{self, class_dim};

const REDUCTIONS: &[LossReduction] =
    &[LossReduction::None, LossReduction::Mean, LossReduction::Sum, LossReduction::BatchMean];
// [6, 8]: rows of quads; [3, 4, 2]: the class dim strided; [7]: one unbatched row.
const SHAPES: &[&[usize]] = &[&[6, 8], &[3, 4, 2], &[7]];
const TOLERANCE: Tolerance = Tolerance { forward: (1e-6, 1e-4), backward: (1e-7, 1e-4) };
const LABELS: &[Extra] = &[Extra::Labels];

/// Student values, a teacher's of the same shape (from `teacher`), and labels with every third
/// row ignored when the variant asks.
fn generate(
    rng: &mut Rng,
    shape: &[usize],
    o: &Options,
    v: &Variant,
    teacher: fn(&mut Rng, &[usize]) -> Vec<f32>,
) -> Args {
    let x = teacher(rng, shape);
    let y = teacher(rng, shape);
    let mut a = Args::new(Array::from_f32(&x, shape));
    a.target = Some(Target::Values(Array::from_f32(&y, shape)));
    if v.has(Extra::Labels) {
        let mut rows = shape.to_vec();
        rows.remove(class_dim(shape));
        let classes = shape[class_dim(shape)];
        let mut data = rng.classes(numel(&rows), classes);
        for l in data.iter_mut().step_by(3) {
            *l = o.ignore_index;
        }
        a.labels = Some(Ids { data, shape: rows });
    }
    a
}

fn logits(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    rng.uniform(numel(shape), -4.0, 4.0)
}

/// Rows of probabilities: the softmax of random logits along the class dim.
fn probabilities(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let x: Vec<f64> = rng.uniform(numel(shape), -3.0, 3.0).iter().map(|&v| v as f64).collect();
    let mut p = vec![0.0f32; x.len()];
    for row in reference::rows_along_dim(shape, class_dim(shape)) {
        let total: f64 = row.iter().map(|&i| x[i].exp()).sum();
        for &i in &row {
            p[i] = (x[i].exp() / total) as f32;
        }
    }
    p
}

fn rows(a: &Args) -> reference::divergence::Rows<'_> {
    reference::divergence::Rows {
        labels: a.labels.as_ref().map(|l| &l.data[..]),
        ignore_index: a.options.ignore_index,
        reduction: a.options.reduction.plain(),
    }
}

fn jsd(i: &Inputs) -> Jsd {
    let o = &i.options;
    Jsd {
        beta: o.jsd_beta,
        temperature: o.temperature,
        ignore_index: o.ignore_index,
        reduction: o.reduction.plain(),
        outputs: o.outputs,
        ..Jsd::default()
    }
}

fn tvd(i: &Inputs) -> Tvd {
    let o = &i.options;
    Tvd { ignore_index: o.ignore_index, reduction: o.reduction.plain(), outputs: o.outputs, ..Tvd::default() }
}

/// Both inputs read once (the forward), and the gradient written (the backward).
fn bench_work(d: &[usize]) -> (Work, Work) {
    let xb = numel(d) as u64 * 4;
    (Work::Bytes(2 * xb), Work::Bytes(3 * xb))
}

pub(super) static JSD: Loss = Loss {
    name: "jsd",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "liger_kernel.transformers.LigerJSD",
    target: TargetKind::Values { what: "teacher logits" },
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: true,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::IgnoreIndex, Opt::JsdBeta, Opt::Temperature],
    reductions: REDUCTIONS,
    default_reduction: LossReduction::BatchMean,
    variants: &[
        DEFAULTS,
        Variant { name: "beta=0", options: |o| o.jsd_beta = 0.0, extras: &[] },
        Variant { name: "beta=1", options: |o| o.jsd_beta = 1.0, extras: &[] },
        Variant { name: "labels", options: |_| {}, extras: LABELS },
        Variant { name: "temperature=2", options: |o| o.temperature = 2.0, extras: &[] },
        Variant {
            name: "beta=0.3+temperature=0.7+labels",
            options: |o| {
                o.jsd_beta = 0.3;
                o.temperature = 0.7;
            },
            extras: LABELS,
        },
        Variant {
            name: "beta=1+temperature=3+labels",
            options: |o| {
                o.jsd_beta = 1.0;
                o.temperature = 3.0;
            },
            extras: LABELS,
        },
        Variant {
            name: "beta=0+ignore_index=1",
            options: |o| {
                o.jsd_beta = 0.0;
                o.ignore_index = 1;
            },
            extras: LABELS,
        },
    ],
    test_shapes: SHAPES,
    generate: |rng, shape, o, v| generate(rng, shape, o, v, logits),
    forward: |i| jsd(i).forward(&i.input, i.values_target("jsd")?, i.labels.as_ref()),
    backward: |i, _, g| jsd(i).backward(&i.input, i.values_target("jsd")?, i.labels.as_ref(), g),
    reference: |a| {
        let (o, y) = (&a.options, a.values_target("jsd")?);
        let (beta, t) = (o.jsd_beta as f64, o.temperature as f64);
        Ok(reference::divergence::jsd(&a.input.data, &y.data, &a.input.shape, beta, t, rows(a)))
    },
    reference_backward: |a, g| {
        let (o, y) = (&a.options, a.values_target("jsd")?);
        let (beta, t) = (o.jsd_beta as f64, o.temperature as f64);
        Ok(reference::divergence::jsd_backward(&a.input.data, &y.data, &a.input.shape, beta, t, rows(a), g))
    },
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-3) },
    bench: WIDE_SHAPES,
    bench_work,
};

pub(super) static TVD: Loss = Loss {
    name: "tvd",
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: None,
    pytorch: "liger_kernel.transformers.LigerTVDLoss",
    target: TargetKind::Values { what: "probabilities" },
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: true,
    lengths: false,
    gradient: GradientOf::Input,
    options: &[Opt::IgnoreIndex],
    reductions: REDUCTIONS,
    default_reduction: LossReduction::BatchMean,
    variants: &[DEFAULTS, Variant { name: "labels", options: |_| {}, extras: LABELS }],
    test_shapes: SHAPES,
    generate: |rng, shape, o, v| generate(rng, shape, o, v, probabilities),
    forward: |i| tvd(i).forward(&i.input, i.values_target("tvd")?, i.labels.as_ref()),
    backward: |i, _, g| tvd(i).backward(&i.input, i.values_target("tvd")?, i.labels.as_ref(), g),
    reference: |a| {
        let y = a.values_target("tvd")?;
        Ok(reference::divergence::tvd(&a.input.data, &y.data, &a.input.shape, rows(a)))
    },
    reference_backward: |a, g| {
        let y = a.values_target("tvd")?;
        Ok(reference::divergence::tvd_backward(&a.input.data, &y.data, &a.input.shape, rows(a), g))
    },
    tolerance: TOLERANCE,
    bench_tolerance: Tolerance { forward: (1e-6, 1e-4), backward: (1e-9, 1e-5) },
    bench: WIDE_SHAPES,
    bench_work,
};
