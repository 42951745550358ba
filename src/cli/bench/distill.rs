//! The distillation cases: the fused `linear_jsd` of a student and a teacher LM head against
//! two `linear` then `jsd`, forward and forward+backward, with their peak extra memory.

use super::measure::Pending;
use super::report::{Case, skipped_case};
use crate::catalogue::BenchShape;
use crate::cli::common::CliError;
use crate::data::values;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::ops::Outputs;
use crate::ops::divergence::Jsd;
use crate::ops::linear::Linear;
use crate::ops::linear_jsd::{LinearHead, LinearJsd};
use crate::reference::divergence::Rows;
use crate::reference::linear_jsd::{Head, linear_jsd, linear_jsd_backward};
use crate::tensor::{Indices, Tensor};

/// Two heads `N × H → V` (student and teacher of the same H). Software adapters run the
/// full-size one only when `--shapes` names it.
pub(super) const DISTILL_SHAPES: &[BenchShape] = &[
    BenchShape { name: "distill_1024x1024x32000", dims: &[1024, 1024, 32000], quick: false, backward: true },
    BenchShape { name: "distill_128x128x2000", dims: &[128, 128, 2000], quick: true, backward: true },
];

const DISTILL_CASES: [(&str, &str); 4] = [
    ("linear_jsd", "forward"),
    ("linear_jsd", "forward+backward"),
    ("linear+jsd", "forward"),
    ("linear+jsd", "forward+backward"),
];

/// The distillation heads of the run, as [`super::lmhead::lm_heads`] chooses LM heads.
pub(super) fn distill_heads(
    dev: &Device,
    dtypes: &[DType],
    wanted: impl Fn(&BenchShape) -> bool,
    named: impl Fn(&BenchShape) -> bool,
    skipped: &mut Vec<Case>,
) -> Result<Vec<Distill>> {
    let software = dev.info().device_type == wgpu::DeviceType::Cpu;
    let mut heads = Vec::new();
    for s in DISTILL_SHAPES.iter().filter(|s| wanted(s)) {
        for &dtype in dtypes {
            if software && !s.quick && !named(s) {
                for (kernel, direction) in DISTILL_CASES {
                    let why = "skipped: minutes on a software adapter; name it in --shapes to run";
                    skipped.push(skipped_case(kernel, direction, s.name, dtype, why));
                }
                continue;
            }
            heads.push(Distill::new(dev, s, dtype)?);
        }
    }
    Ok(heads)
}

/// A step's loss and dW, widened.
type LossAndDw = (Vec<f64>, Vec<f64>);

/// Host copies of both heads and the labels (small shapes: for the f64 reference).
type Host = [Vec<f32>; 6];

/// A student and a teacher head, labels (every 17th row ignored) and the upstream gradient 1.
pub(super) struct Distill {
    shape: &'static BenchShape,
    dtype: DType,
    host: Option<(Host, Vec<i64>)>,
    xs: Tensor,
    ws: Tensor,
    bs: Tensor,
    xt: Tensor,
    wt: Tensor,
    bt: Tensor,
    labels: Indices,
    one: Tensor,
}

impl Distill {
    fn new(dev: &Device, shape: &'static BenchShape, dtype: DType) -> Result<Distill> {
        let (n, h, v) = (shape.dims[0], shape.dims[1], shape.dims[2]);
        let rounded = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| dtype.round(x)).collect() };
        let scale = 3.0 / (h as f32).sqrt();
        let host: Host = [
            rounded(values(n * h, 1.0, 8)),
            rounded(values(v * h, scale, 9)),
            rounded(values(v, 0.5, 10)),
            rounded(values(n * h, 1.0, 11)),
            rounded(values(v * h, scale, 12)),
            rounded(values(v, 0.5, 13)),
        ];
        let labels: Vec<i64> = (0..n).map(|i| if i % 17 == 3 { -100 } else { (i % v) as i64 }).collect();
        let up = |i: usize, s: &[usize]| dev.tensor_as(&host[i], s, dtype);
        let d = Distill {
            shape,
            dtype,
            xs: up(0, &[n, h])?,
            ws: up(1, &[v, h])?,
            bs: up(2, &[v])?,
            xt: up(3, &[n, h])?,
            wt: up(4, &[v, h])?,
            bt: up(5, &[v])?,
            labels: dev.indices(&labels, &[n])?,
            one: dev.tensor(&[1.0], &[])?,
            host: None,
        };
        // The f64 reference costs 2·N·H·V multiply-adds on the CPU: only for small shapes.
        let small = n * h * v <= 64 << 20;
        Ok(Distill { host: small.then_some((host, labels)), ..d })
    }

    fn heads(&self) -> (LinearHead<'_>, LinearHead<'_>) {
        (
            LinearHead { x: &self.xs, weight: &self.ws, bias: Some(&self.bs) },
            LinearHead { x: &self.xt, weight: &self.wt, bias: Some(&self.bt) },
        )
    }

    fn fused_forward(&self) -> Result<Vec<Tensor>> {
        let (s, t) = self.heads();
        Ok(vec![LinearJsd::default().forward(s, t, Some(&self.labels))?])
    }

    fn fused_step(&self) -> Result<Vec<Tensor>> {
        let (s, t) = self.heads();
        let (loss, g) = LinearJsd::default().forward_backward(s, t, Some(&self.labels), &self.one)?;
        Ok(vec![g.weight, g.input, g.bias, loss])
    }

    /// Both heads' logits, f32 whatever the inputs' type (as autocast keeps a loss's logits; a
    /// half-precision copy would round them before the softmax).
    fn logits(&self) -> Result<(Tensor, Tensor)> {
        let lin = Linear { outputs: Outputs::F32, ..Linear::default() };
        Ok((
            lin.forward(&self.xs, &self.ws, Some(&self.bs))?,
            lin.forward(&self.xt, &self.wt, Some(&self.bt))?,
        ))
    }

    fn unfused_forward(&self) -> Result<Vec<Tensor>> {
        let (zs, zt) = self.logits()?;
        Ok(vec![Jsd::default().forward(&zs, &zt, Some(&self.labels))?])
    }

    fn unfused_step(&self) -> Result<Vec<Tensor>> {
        let (zs, zt) = self.logits()?;
        let jsd = Jsd::default();
        let loss = jsd.forward(&zs, &zt, Some(&self.labels))?;
        let dz = jsd.backward(&zs, &zt, Some(&self.labels), &self.one)?;
        drop((zs, zt));
        let g = Linear::default().backward(&self.xs, &self.ws, &dz)?;
        Ok(vec![g.weight, g.input, g.bias, loss])
    }

    /// (loss, dW) of the fused and of the unfused step: the f64 reference's for both on small
    /// shapes, else each computed here.
    fn wants(&self) -> Result<(LossAndDw, LossAndDw)> {
        let f64s = |t: Tensor| -> Result<Vec<f64>> { Ok(t.to_vec()?.iter().map(|&v| v as f64).collect()) };
        let h = self.shape.dims[1];
        if let Some((host, labels)) = &self.host {
            let s = Head { x: &host[0][..], w: &host[1][..], bias: Some(&host[2][..]), h };
            let t = Head { x: &host[3][..], w: &host[4][..], bias: Some(&host[5][..]), h };
            let rows =
                Rows { labels: Some(labels), ignore_index: -100, reduction: crate::ops::Reduction::Mean };
            let loss = linear_jsd(s, t, 0.5, 1.0, rows);
            let dw = linear_jsd_backward(s, t, 0.5, 1.0, rows, &[1.0]).1;
            return Ok(((loss.clone(), dw.clone()), (loss, dw)));
        }
        let loss_dw = |step: Vec<Tensor>| -> Result<LossAndDw> {
            let mut it = step.into_iter();
            let dw = it.next().ok_or_else(|| Error::Wgpu("no dW".into()))?;
            let loss = it.nth(2).ok_or_else(|| Error::Wgpu("no loss".into()))?;
            Ok((f64s(loss)?, f64s(dw)?))
        };
        let unfused = loss_dw(self.unfused_step()?)?;
        let fused = loss_dw(self.fused_step()?)?;
        // Each is checked against the other (both against the reference in the tests).
        Ok((unfused, fused))
    }
}

fn first(outputs: Result<Vec<Tensor>>) -> Result<Tensor> {
    outputs?.into_iter().next().ok_or_else(|| Error::Wgpu("no output".into()))
}

/// The four cases of a distillation head, each checked before timing as the LM-head cases are.
pub(super) fn distill_cases<'a>(d: &'a Distill, cases: &mut Vec<Pending<'a>>) -> Result<(), CliError> {
    let (n, h, v) = (d.shape.dims[0], d.shape.dims[1], d.shape.dims[2]);
    let ((lf, wf), (lu, wu)) = d.wants()?;
    let dw_rel = if d.dtype == DType::F32 { 1e-3 } else { 2f64.powi(-8) };
    let dw_tol = dw_rel * wf.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // Two logit GEMMs forward; the step adds dX and dW of the student.
    let fwd_flops = Some(4 * (n * h * v) as u64);
    let step_flops = Some(8 * (n * h * v) as u64);
    let case =
        |kernel, direction, flops, op: Box<dyn Fn() -> Result<Tensor> + 'a>, want: Vec<f64>, tol, mem| {
            Pending {
                kernel,
                direction,
                shape: d.shape.name,
                dtype: d.dtype,
                bytes: None,
                flops,
                op,
                want: Some(Box::new(move || want.clone())),
                tol,
                mem: Some(mem),
            }
        };
    cases.push(case(
        "linear_jsd",
        "forward",
        fwd_flops,
        Box::new(move || first(d.fused_forward())),
        lf,
        (1e-5, 1e-4),
        Box::new(move || d.fused_forward()),
    ));
    cases.push(case(
        "linear_jsd",
        "forward+backward",
        step_flops,
        Box::new(move || first(d.fused_step())),
        wf,
        (dw_tol, dw_rel),
        Box::new(move || d.fused_step()),
    ));
    cases.push(case(
        "linear+jsd",
        "forward",
        fwd_flops,
        Box::new(move || first(d.unfused_forward())),
        lu,
        (1e-5, 1e-4),
        Box::new(move || d.unfused_forward()),
    ));
    cases.push(case(
        "linear+jsd",
        "forward+backward",
        step_flops,
        Box::new(move || first(d.unfused_step())),
        wu,
        (dw_tol, dw_rel),
        Box::new(move || d.unfused_step()),
    ));
    Ok(())
}
