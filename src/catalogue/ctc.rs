//! The CTC loss: log-probabilities `(T, N, C)` (or `(T, C)`) against class-id targets, padded
//! `(N, S)` or concatenated, with one input and one target length per sequence.
//!
//! A test or bench shape is `[T, N, C, S]`: T steps, N sequences, C classes (blank 0, or C − 1
//! in a variant), targets of at most S labels.

use super::loss::{
    Args, Array, BenchShape, DEFAULTS, Extra, GradientOf, Ids, Inputs, Loss, LossReduction, Opt, Options,
    Target, TargetKind, Tolerance, Variant, WeightKind, Work, no_operand_grads, no_operand_references,
};
use crate::data::Rng;
use crate::error::{Error, Result};
use crate::ops::ctc::Ctc;
use crate::reference::ctc::{self as reference, Sequence};
use crate::tensor::Tensor;

const PLAIN: &[LossReduction] = &[LossReduction::None, LossReduction::Mean, LossReduction::Sum];
const OP: &str = "ctc";

/// Log-probabilities: log_softmax over C of logits in [−3, 3), in f64, as f32.
fn log_probs(rng: &mut Rng, rows: usize, classes: usize) -> Vec<f32> {
    let z = rng.uniform(rows * classes, -3.0, 3.0);
    z.chunks(classes)
        .flat_map(|row| {
            let m = row.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| (v as f64 - lse) as f32).collect::<Vec<_>>()
        })
        .collect()
}

/// Inputs for `[T, N, C, S]`: input lengths T − n % 3 (at least 1), target lengths S − n % 2
/// (sequence 1 of 3 or more gets none: an empty target), labels avoiding the blank; with the
/// variant's extras, targets concatenated, one unbatched sequence, or an impossible sequence
/// (three labels, two of them repeated, in three steps).
fn generate(rng: &mut Rng, dims: &[usize], o: &Options, v: &Variant) -> Args {
    let [t, n, c, s] = dims[..] else { panic!("a ctc shape is [T, N, C, S], got {dims:?}") };
    let n = if v.has(Extra::Unbatched) { 1 } else { n };
    let lp = log_probs(rng, t * n, c);
    let shape = if v.has(Extra::Unbatched) { vec![t, c] } else { vec![t, n, c] };
    let mut a = Args::new(Array::from_f32(&lp, &shape));
    let mut input_lengths: Vec<i64> = (0..n).map(|k| (t - k % 3).max(1) as i64).collect();
    let mut target_lengths: Vec<i64> =
        (0..n).map(|k| if k == 1 && n >= 3 { 0 } else { (s - k % 2) as i64 }).collect();
    // Labels in 0..C other than the blank.
    let label = |rng: &mut Rng| {
        let l = rng.below(c - 1);
        if l >= o.blank { l as i64 + 1 } else { l as i64 }
    };
    let mut rows: Vec<Vec<i64>> = (0..n).map(|_| (0..s).map(|_| label(rng)).collect()).collect();
    if v.has(Extra::Impossible) {
        let last = n - 1;
        let (a0, a1) = (rows[last][0], rows[last][1]);
        rows[last][..3].copy_from_slice(&[a0, a0, a1]);
        (input_lengths[last], target_lengths[last]) = (3, 3);
    }
    let (data, tshape) = if v.has(Extra::Concatenated) || v.has(Extra::Unbatched) {
        let flat: Vec<i64> =
            rows.iter().zip(&target_lengths).flat_map(|(r, &l)| r[..l as usize].to_vec()).collect();
        let len = flat.len();
        (flat, vec![len])
    } else {
        (rows.concat(), vec![n, s])
    };
    a.target = Some(Target::Ids { data, shape: tshape });
    a.input_lengths =
        Some(Ids { data: input_lengths, shape: if v.has(Extra::Unbatched) { vec![] } else { vec![n] } });
    a.target_lengths =
        Some(Ids { data: target_lengths, shape: if v.has(Extra::Unbatched) { vec![] } else { vec![n] } });
    a
}

fn lengths(a: &Args) -> Result<(&[i64], &[i64])> {
    match (&a.input_lengths, &a.target_lengths) {
        (Some(i), Some(t)) => Ok((&i.data, &t.data)),
        _ => Err(Error::invalid(OP, "input and target lengths are required")),
    }
}

fn device_lengths(i: &Inputs) -> Result<(&[i64], &[i64])> {
    match (&i.input_lengths, &i.target_lengths) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Error::invalid(OP, "input and target lengths are required")),
    }
}

fn ctc(i: &Inputs) -> Result<Ctc> {
    Ok(Ctc {
        blank: i.options.blank,
        zero_infinity: i.options.zero_infinity,
        reduction: i.options.reduction.without_batchmean(OP)?,
        outputs: i.options.outputs,
    })
}

/// The sequences of `a` for the reference: each one's input length and targets.
fn sequences(a: &Args) -> Result<(Vec<Sequence<'_>>, usize, usize)> {
    let (il, tl) = lengths(a)?;
    let ids = a.ids_target(OP)?;
    let shape = &a.input.shape;
    let (batch, classes) = match shape[..] {
        [_, n, c] => (n, c),
        [_, c] => (1, c),
        _ => return Err(Error::shape(OP, format!("log_probs must be (T, N, C) or (T, C), got {shape:?}"))),
    };
    let padded = match &a.target {
        Some(Target::Ids { shape, .. }) if shape.len() == 2 => Some(shape[1]),
        _ => None,
    };
    let mut offset = 0;
    let mut seqs = Vec::with_capacity(batch);
    for (k, (&i, &t)) in il.iter().zip(tl).enumerate() {
        let first = padded.map_or(offset, |s| k * s);
        offset += t as usize;
        let targets =
            ids.get(first..first + t as usize).ok_or_else(|| Error::shape(OP, "targets too short"))?;
        seqs.push(Sequence { input_length: i as usize, targets });
    }
    Ok((seqs, batch, classes))
}

fn reference_forward(a: &Args) -> Result<Vec<f64>> {
    let (seqs, n, c) = sequences(a)?;
    let o = &a.options;
    Ok(reference::ctc(
        &a.input.data,
        (n, c),
        &seqs,
        o.blank,
        o.zero_infinity,
        o.reduction.without_batchmean(OP)?,
    ))
}

fn reference_backward(a: &Args, g: &[f64]) -> Result<Vec<f64>> {
    let (seqs, n, c) = sequences(a)?;
    let o = &a.options;
    let r = o.reduction.without_batchmean(OP)?;
    Ok(reference::ctc_backward(&a.input.data, (n, c), &seqs, o.blank, o.zero_infinity, g, r))
}

pub(super) static CTC: Loss = Loss {
    name: "ctc",
    pytorch: "torch.nn.functional.ctc_loss",
    target: TargetKind::Ids,
    weight: WeightKind::None,
    pos_weight: false,
    bias: false,
    labels: false,
    lengths: true,
    gradient: GradientOf::LogSoftmaxLogits,
    options: &[Opt::Blank, Opt::ZeroInfinity],
    reductions: PLAIN,
    default_reduction: LossReduction::Mean,
    variants: &[
        DEFAULTS,
        Variant { name: "concatenated", options: |_| {}, extras: &[Extra::Concatenated] },
        Variant { name: "unbatched", options: |_| {}, extras: &[Extra::Unbatched] },
        Variant { name: "blank=C-1", options: |o| o.blank = 4, extras: &[] },
        Variant {
            name: "zero_infinity,impossible",
            options: |o| o.zero_infinity = true,
            extras: &[Extra::Impossible],
        },
    ],
    // C = 5 in every test shape, so "blank=C-1" is class 4.
    test_shapes: &[&[12, 4, 5, 4], &[6, 3, 5, 6]],
    generate,
    forward: |i| {
        let (il, tl) = device_lengths(i)?;
        ctc(i)?.forward(&i.input, i.ids_target(OP)?, il, tl)
    },
    backward: |i, _, g: &Tensor| {
        let (il, tl) = device_lengths(i)?;
        ctc(i)?.backward(&i.input, i.ids_target(OP)?, il, tl, g)
    },
    reference: reference_forward,
    reference_backward,
    operands: &[],
    backward_operands: no_operand_grads,
    reference_backward_operands: no_operand_references,
    forward_backward: Some(|i, g| {
        let (il, tl) = device_lengths(i)?;
        ctc(i)?.forward_backward(&i.input, i.ids_target(OP)?, il, tl, g)
    }),
    tolerance: Tolerance { forward: (1e-5, 1e-4), backward: (1e-5, 1e-4) },
    bench_tolerance: Tolerance { forward: (1e-3, 1e-3), backward: (1e-4, 1e-2) },
    bench: &[
        BenchShape {
            name: "ctc_T1000_N32_C64_S200",
            dims: &[1000, 32, 64, 200],
            quick: false,
            backward: true,
        },
        BenchShape {
            name: "ctc_T500_N16_C5000_S100",
            dims: &[500, 16, 5000, 100],
            quick: false,
            backward: true,
        },
        BenchShape { name: "ctc_T100_N4_C20_S20", dims: &[100, 4, 20, 20], quick: true, backward: true },
    ],
    // The forward reads each step's log-probabilities at the labels (bounded by the whole
    // input); the backward writes the whole gradient.
    bench_work: |d| {
        let bytes = (d[0] * d[1] * d[2] * 4) as u64;
        (Work::Bytes(bytes), Work::Bytes(2 * bytes))
    },
};
