//! The LM-head cases: the fused `linear_cross_entropy` against `linear` then `cross_entropy`,
//! forward and forward+backward, with their peak extra memory.

use super::measure::Pending;
use super::report::{Case, skipped_case};
use crate::catalogue::BenchShape;
use crate::cli::common::CliError;
use crate::data::values;
use crate::dtype::DType;
use crate::gpu::device::Device;
use crate::ops::cross_entropy::{CrossEntropy, cross_entropy};
use crate::ops::linear::{Linear, linear};
use crate::ops::linear_cross_entropy::LinearCrossEntropy;
use crate::reference;
use crate::tensor::{Indices, Tensor};

/// LM heads `N × H → V`: x `(N, H)`, W `(V, H)`. Software adapters run the full-size ones only
/// when `--shapes` names them (one forward takes ~25 s on lavapipe at 2048×1024×32000).
pub(super) const LMHEAD_SHAPES: &[BenchShape] = &[
    BenchShape { name: "lmhead_2048x1024x32000", dims: &[2048, 1024, 32000], quick: false, backward: true },
    BenchShape { name: "lmhead_1024x2048x128256", dims: &[1024, 2048, 128256], quick: false, backward: true },
    BenchShape { name: "lmhead_128x1024x32000", dims: &[128, 1024, 32000], quick: false, backward: true },
    BenchShape { name: "lmhead_128x128x2000", dims: &[128, 128, 2000], quick: true, backward: true },
];

/// The (kernel, direction) pairs of every LM-head shape.
const LMHEAD_CASES: [(&str, &str); 5] = [
    ("linear_cross_entropy", "forward"),
    ("linear_cross_entropy+tokens", "forward"),
    ("linear_cross_entropy", "forward+backward"),
    ("linear+cross_entropy", "forward"),
    ("linear+cross_entropy", "forward+backward"),
];

/// The LM heads of the run: `wanted` says which shapes; the full-size ones are skipped on a
/// software adapter unless `named` (in `--shapes`), each skipped case reported as such.
pub(super) fn lm_heads(
    dev: &Device,
    dtypes: &[DType],
    wanted: impl Fn(&BenchShape) -> bool,
    named: impl Fn(&BenchShape) -> bool,
    skipped: &mut Vec<Case>,
) -> crate::error::Result<Vec<LmHead>> {
    let software = dev.info().device_type == wgpu::DeviceType::Cpu;
    let mut heads = Vec::new();
    for s in LMHEAD_SHAPES.iter().filter(|s| wanted(s)) {
        for &dtype in dtypes {
            if software && !s.quick && !named(s) {
                for (kernel, direction) in LMHEAD_CASES {
                    skipped.push(skipped_case(
                        kernel,
                        direction,
                        s.name,
                        dtype,
                        "skipped: minutes on a software adapter; name it in --shapes to run",
                    ));
                }
                continue;
            }
            heads.push(LmHead::new(dev, s, dtype)?);
        }
    }
    Ok(heads)
}

/// An LM head's host x, W, b and targets.
type LmHost = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<i64>);

/// An LM head's inputs: x `(N, H)`, W `(V, H)` scaled so logits have a spread of a few units,
/// b (all three of one element type), targets, the upstream gradient 1, and the host copies
/// (for the f64 reference on small shapes; rounded to the element type, as uploaded).
pub(super) struct LmHead {
    shape: &'static BenchShape,
    dtype: DType,
    host: Option<LmHost>,
    x: Tensor,
    w: Tensor,
    b: Tensor,
    t: Indices,
    one: Tensor,
}

impl LmHead {
    fn new(dev: &Device, shape: &'static BenchShape, dtype: DType) -> crate::error::Result<LmHead> {
        let (n, h, v) = (shape.dims[0], shape.dims[1], shape.dims[2]);
        let rounded = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| dtype.round(x)).collect() };
        let x = rounded(values(n * h, 1.0, 8));
        let w = rounded(values(v * h, 3.0 / (h as f32).sqrt(), 9));
        let b = rounded(values(v, 0.5, 10));
        let t: Vec<i64> = (0..n).map(|i| if i % 17 == 3 { -100 } else { ((i * 7919) % v) as i64 }).collect();
        let lm = LmHead {
            shape,
            dtype,
            x: dev.tensor_as(&x, &[n, h], dtype)?,
            w: dev.tensor_as(&w, &[v, h], dtype)?,
            b: dev.tensor_as(&b, &[v], dtype)?,
            t: dev.indices(&t, &[n])?,
            one: dev.tensor(&[1.0], &[])?,
            host: None,
        };
        // The f64 reference costs N·H·V multiply-adds on the CPU: only for small shapes.
        let small = n * h * v <= 64 << 20;
        Ok(LmHead { host: small.then_some((x, w, b, t)), ..lm })
    }

    fn fused_forward(&self) -> crate::error::Result<Vec<Tensor>> {
        let o = LinearCrossEntropy::default().forward(&self.x, &self.w, Some(&self.b), &self.t)?;
        Ok(vec![o.loss, o.lse])
    }

    /// The forward with every per-token output (logprob, entropy, argmax, correct, accuracy).
    fn fused_forward_tokens(&self) -> crate::error::Result<Vec<Tensor>> {
        let l = LinearCrossEntropy::default().token_outputs(true);
        let o = l.forward(&self.x, &self.w, Some(&self.b), &self.t)?;
        let t = o.tokens.ok_or_else(|| crate::error::Error::Wgpu("no token outputs".into()))?;
        let argmax = Tensor::new(t.argmax.storage.clone(), t.argmax.shape.clone());
        Ok(vec![o.loss, o.lse, t.logprob, t.entropy, argmax, t.correct, t.accuracy])
    }

    fn fused_step(&self) -> crate::error::Result<Vec<Tensor>> {
        let (o, g) = LinearCrossEntropy::default().forward_backward(
            &self.x,
            &self.w,
            Some(&self.b),
            &self.t,
            &self.one,
        )?;
        Ok(vec![g.weight, g.input, g.bias, o.loss, o.lse])
    }

    fn unfused_forward(&self) -> crate::error::Result<Vec<Tensor>> {
        let logits = linear(&self.x, &self.w, Some(&self.b))?;
        Ok(vec![cross_entropy(&logits, &self.t)?])
    }

    fn unfused_step(&self) -> crate::error::Result<Vec<Tensor>> {
        let logits = linear(&self.x, &self.w, Some(&self.b))?;
        let ce = CrossEntropy::default();
        let loss = ce.forward(&logits, &self.t)?;
        let dlogits = ce.backward(&logits, &self.t, &self.one)?;
        drop(logits);
        let g = Linear::default().backward(&self.x, &self.w, &dlogits)?;
        Ok(vec![g.weight, g.input, g.bias, loss])
    }
}

fn first(outputs: crate::error::Result<Vec<Tensor>>) -> crate::error::Result<Tensor> {
    outputs?.into_iter().next().ok_or_else(|| crate::error::Error::Wgpu("no output".into()))
}

/// The four cases of an LM head. Each is checked before timing: against the f64 reference
/// where the shape is small, else fused against unfused (both are tested against the
/// reference in tests/linear_cross_entropy.rs). dW is checked relative to its largest value.
pub(super) fn lmhead_cases<'a>(lm: &'a LmHead, cases: &mut Vec<Pending<'a>>) -> Result<(), CliError> {
    let (n, h, v) = (lm.shape.dims[0], lm.shape.dims[1], lm.shape.dims[2]);
    let f64s =
        |t: Tensor| -> crate::error::Result<Vec<f64>> { Ok(t.to_vec()?.iter().map(|&v| v as f64).collect()) };
    let ((loss_fused, dw_fused), (loss_unfused, dw_unfused)) = match &lm.host {
        Some((x, w, b, t)) => {
            use reference::linear_cross_entropy as r;
            let o = r::Options::default();
            let loss = r::linear_cross_entropy(x, w, Some(b), t, h, &o)?.0;
            let dw = r::linear_cross_entropy_backward(x, w, Some(b), t, h, &o, &[1.0f32])?.1;
            ((loss.clone(), dw.clone()), (loss, dw))
        }
        None => {
            let u = lm.unfused_step()?;
            let f = lm.fused_step()?;
            let mut u = u.into_iter();
            let mut f = f.into_iter();
            let (uw, fw) = (u.next(), f.next());
            let (ul, fl) = (u.nth(2), f.nth(2));
            let pick =
                |t: Option<Tensor>| f64s(t.ok_or_else(|| crate::error::Error::Wgpu("no output".into()))?);
            ((pick(ul)?, pick(uw)?), (pick(fl)?, pick(fw)?))
        }
    };
    // dW comes back in W's element type: a half one is rounded (2^-9 relative at most).
    let dw_rel = if lm.dtype == DType::F32 { 1e-3 } else { 2f64.powi(-8) };
    let dw_tol = dw_rel * dw_fused.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let fwd_flops = Some(2 * (n * h * v) as u64);
    let step_flops = Some(6 * (n * h * v) as u64);
    let (lf, wf, lu, wu) = (loss_fused, dw_fused, loss_unfused, dw_unfused);
    let lt = lf.clone();
    cases.push(Pending {
        kernel: "linear_cross_entropy",
        direction: "forward",
        shape: lm.shape.name,
        dtype: lm.dtype,
        bytes: None,
        flops: fwd_flops,
        op: Box::new(move || first(lm.fused_forward())),
        want: Some(Box::new(move || lf.clone())),
        tol: (1e-5, 1e-4),
        mem: Some(Box::new(move || lm.fused_forward())),
    });
    cases.push(Pending {
        kernel: "linear_cross_entropy+tokens",
        direction: "forward",
        shape: lm.shape.name,
        dtype: lm.dtype,
        bytes: None,
        flops: fwd_flops,
        op: Box::new(move || first(lm.fused_forward_tokens())),
        want: Some(Box::new(move || lt.clone())),
        tol: (1e-5, 1e-4),
        mem: Some(Box::new(move || lm.fused_forward_tokens())),
    });
    cases.push(Pending {
        kernel: "linear_cross_entropy",
        direction: "forward+backward",
        shape: lm.shape.name,
        dtype: lm.dtype,
        bytes: None,
        flops: step_flops,
        op: Box::new(move || first(lm.fused_step())),
        want: Some(Box::new(move || wf.clone())),
        tol: (dw_tol, dw_rel),
        mem: Some(Box::new(move || lm.fused_step())),
    });
    cases.push(Pending {
        kernel: "linear+cross_entropy",
        direction: "forward",
        shape: lm.shape.name,
        dtype: lm.dtype,
        bytes: None,
        flops: fwd_flops,
        op: Box::new(move || first(lm.unfused_forward())),
        want: Some(Box::new(move || lu.clone())),
        tol: (1e-5, 1e-4),
        mem: Some(Box::new(move || lm.unfused_forward())),
    });
    cases.push(Pending {
        kernel: "linear+cross_entropy",
        direction: "forward+backward",
        shape: lm.shape.name,
        dtype: lm.dtype,
        bytes: None,
        flops: step_flops,
        op: Box::new(move || first(lm.unfused_step())),
        want: Some(Box::new(move || wu.clone())),
        tol: (dw_tol, dw_rel),
        mem: Some(Box::new(move || lm.unfused_step())),
    });
    Ok(())
}
