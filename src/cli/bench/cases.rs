//! The cases of a run: the adapter's yardsticks, and every catalogue loss at each of its
//! benchmark shapes, forward and backward.

use super::measure::{Pending, measure};
use super::report::Case;
use crate::catalogue::{self, Args, Array, BenchShape, Loss, LossReduction, Tolerance, Work};
use crate::data::values;
use crate::dtype::DType;
use crate::gpu::device::Device;
use crate::ops::bandwidth;
use crate::tensor::Tensor;

/// The yardstick shapes: a quick run reads 1 Mi floats, a full one 16 Mi.
pub(super) const YARDSTICKS: [(&str, usize, bool); 2] =
    [("yardstick_16M", 16 << 20, false), ("yardstick_1M", 1 << 20, true)];

/// The adapter's own rates in this run: a read-once sum, a vec4 copy kernel and the copy
/// engine's buffer copy, over `n` floats.
pub(super) fn yardsticks(
    dev: &Device,
    name: &'static str,
    n: usize,
    repeats: usize,
) -> crate::error::Result<Vec<Case>> {
    let yard = dev.tensor(&values(n, 1.0, 1), &[n])?;
    let yard_dst = dev.tensor(&vec![0.0; n], &[n])?;
    let case = |kernel, bytes, op| Pending {
        kernel,
        direction: "yardstick",
        shape: name,
        dtype: DType::F32,
        bytes: Some(bytes),
        flops: None,
        op,
        want: None,
        tol: (0.0, 0.0),
        mem: None,
    };
    let cases = [
        case("read_sum", n as u64 * 4, Box::new(|| bandwidth::read_sum(&yard))),
        case("copy_vec4", n as u64 * 8, Box::new(|| bandwidth::copy(&yard))),
        case(
            "copy_buffer_to_buffer",
            n as u64 * 8,
            Box::new(|| {
                let mut enc = dev.wgpu_device().create_command_encoder(&Default::default());
                enc.copy_buffer_to_buffer(yard.buffer(), 0, yard_dst.buffer(), 0, n as u64 * 4);
                dev.flush()?;
                dev.wgpu_queue().submit([enc.finish()]);
                Ok(yard_dst.clone())
            }),
        ),
    ];
    Ok(cases.iter().map(|p| measure(dev, p, repeats, None)).collect())
}

/// How many cases `loss` has at `shape`.
pub(super) fn count(loss: &Loss, shape: &BenchShape) -> usize {
    1 + shape.backward as usize * (1 + loss.forward_backward.is_some() as usize)
}

/// The bench tolerance of `loss` on `dtype` inputs: functions without a reduction
/// (log_softmax, softmax, linear) write the input's type, losses f32; gradients come in the
/// input's type.
fn tolerance(loss: &Loss, dtype: DType) -> Tolerance {
    let function = loss.reductions == [LossReduction::None];
    let forward = loss.bench_tolerance.for_dtype(if function { dtype } else { DType::F32 });
    Tolerance { forward: forward.forward, backward: loss.bench_tolerance.for_dtype(dtype).backward }
}

/// `loss` at `shape` with PyTorch's defaults and every float operand of `dtype`: its inputs
/// made from `seed` and uploaded, checked and timed forward, then backward for an upstream
/// gradient of ones (the forward's output is computed once, outside the timing). Inputs are
/// dropped when it returns. The bytes of a half-precision case are the f32 case's halved (its
/// inputs read and its gradient written at two bytes an element).
pub(super) fn loss_cases(
    dev: &Device,
    loss: &'static Loss,
    shape: &'static BenchShape,
    (seed, dtype): (u64, DType),
    repeats: usize,
    read_sum: Option<f64>,
) -> crate::error::Result<Vec<Case>> {
    let args = loss.bench_args(seed, shape).as_dtype(dtype);
    let inputs = args.upload(dev)?;
    let (forward_work, backward_work) = (loss.bench_work)(shape.dims);
    let split = |w: Work| match w {
        Work::Bytes(b) => (Some(b * dtype.size() as u64 / 4), None),
        Work::Flops(f) => (None, Some(f)),
    };
    let tol = tolerance(loss, dtype);
    let (bytes, flops) = split(forward_work);
    let mut cases = vec![measure(
        dev,
        &Pending {
            kernel: loss.name,
            direction: "forward",
            shape: shape.name,
            dtype,
            bytes,
            flops,
            op: Box::new(|| (loss.forward)(&inputs)),
            want: Some(Box::new(|| (loss.reference)(&args).unwrap_or_default())),
            tol: tol.forward,
            mem: None,
        },
        repeats,
        read_sum,
    )];
    if shape.backward {
        // The path a user's graph takes: the forward's output and an upstream gradient in the
        // output's element type (half for log_softmax, softmax and linear on half inputs).
        let out = (loss.forward)(&inputs)?;
        let ones: Tensor = catalogue::ones(dev, out.shape())?.to_dtype(out.dtype())?;
        let g = vec![1.0; out.numel()];
        let (bytes, flops) = split(backward_work);
        cases.push(measure(
            dev,
            &Pending {
                kernel: loss.name,
                direction: "backward",
                shape: shape.name,
                dtype,
                bytes,
                flops,
                op: Box::new(|| (loss.backward)(&inputs, &out, &ones)),
                want: Some(Box::new(|| {
                    // A half output's rounding reaches a function's gradient: the reference
                    // differentiates at the output the forward gave.
                    let given = (out.dtype() != DType::F32)
                        .then(|| out.to_vec().map(|y| Array::of_dtype(&y, out.shape(), out.dtype())).ok())
                        .flatten();
                    match given {
                        Some(y) => (loss.reference_backward)(&Args { output: Some(y), ..args.clone() }, &g),
                        None => (loss.reference_backward)(&args, &g),
                    }
                    .unwrap_or_default()
                })),
                tol: tol.backward,
                mem: None,
            },
            repeats,
            read_sum,
        ));
        // Where the op shares work between the two (CTC), the call a training step makes.
        if let Some(both) = loss.forward_backward {
            let (fb, bb) = (split(forward_work), split(backward_work));
            let sum = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a + b);
            cases.push(measure(
                dev,
                &Pending {
                    kernel: loss.name,
                    direction: "forward+backward",
                    shape: shape.name,
                    dtype,
                    bytes: sum(fb.0, bb.0),
                    flops: sum(fb.1, bb.1),
                    op: Box::new(|| Ok(both(&inputs, &ones)?.1)),
                    want: Some(Box::new(|| (loss.reference_backward)(&args, &g).unwrap_or_default())),
                    tol: tol.backward,
                    mem: None,
                },
                repeats,
                read_sum,
            ));
        }
    }
    Ok(cases)
}
