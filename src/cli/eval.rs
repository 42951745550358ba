//! `wgpu-loss eval <OP>` and `wgpu-loss grad <OP>`: a `torch.nn.functional` function on saved
//! arrays, or its gradient for an upstream gradient of ones.

use std::path::{Path, PathBuf};

use crate::{
    Bce, BceWithLogits, CrossEntropy, Device, Huber, KlDiv, KlReduction, L1, LogSoftmax, Mse, Nll, Reduction,
    SmoothL1, Softmax, Tensor,
};
use clap::{Args, ValueEnum};

use super::common::{AdapterArgs, CliError};
use super::npy::{self, Array};

/// The functions `eval` and `grad` know, named as in PyTorch with dashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    Mse,
    L1,
    SmoothL1,
    Huber,
    Bce,
    BceWithLogits,
    CrossEntropy,
    Nll,
    KlDiv,
    LogSoftmax,
    Softmax,
    Linear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    None,
    Mean,
    Sum,
    Batchmean,
}

#[derive(Args, Debug)]
pub struct OpArgs {
    /// The function.
    #[arg(value_enum)]
    pub op: Op,
    /// The input (float32 .npy).
    #[arg(long)]
    pub input: PathBuf,
    /// The target: float32 values or probabilities, or int64/int32 class ids.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Class weights (cross-entropy, nll), element weights (bce, bce-with-logits) or the linear
    /// layer's W [out, in].
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// The linear layer's bias `[out]`.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// bce-with-logits' weight of positive examples.
    #[arg(long)]
    pub pos_weight: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "mean")]
    pub reduction: ReductionArg,
    #[arg(long, default_value_t = -100, allow_hyphen_values = true)]
    pub ignore_index: i64,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub label_smoothing: f32,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub beta: f32,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub delta: f32,
    /// kl-div: the target holds log-probabilities.
    #[arg(long)]
    pub log_target: bool,
    /// log-softmax and softmax: the dimension (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub dim: isize,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Where to write the float32 result (written only on success).
    #[arg(long)]
    pub output: PathBuf,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Mse => "mse",
            Op::L1 => "l1",
            Op::SmoothL1 => "smooth-l1",
            Op::Huber => "huber",
            Op::Bce => "bce",
            Op::BceWithLogits => "bce-with-logits",
            Op::CrossEntropy => "cross-entropy",
            Op::Nll => "nll",
            Op::KlDiv => "kl-div",
            Op::LogSoftmax => "log-softmax",
            Op::Softmax => "softmax",
            Op::Linear => "linear",
        }
    }
}

/// Runs `eval` (`grad = false`) or `grad` and writes the output.
pub fn run(args: &OpArgs, grad: bool) -> Result<(), CliError> {
    let op = args.op.name();
    let job = Job::load(args).map_err(|e| e.context(op))?;
    let dev = args.adapter.device()?;
    let (values, shape) = job.run(&dev, grad).map_err(|e| e.context(op))?;
    npy::write_f32(&args.output, &values, &shape)
}

fn required<'a>(option: &str, path: &'a Option<PathBuf>, op: Op) -> Result<&'a Path, CliError> {
    path.as_deref().ok_or_else(|| CliError(format!("{}: {option} FILE is required", op.name())))
}

fn plain_reduction(args: &OpArgs) -> Result<Reduction, CliError> {
    match args.reduction {
        ReductionArg::None => Ok(Reduction::None),
        ReductionArg::Mean => Ok(Reduction::Mean),
        ReductionArg::Sum => Ok(Reduction::Sum),
        ReductionArg::Batchmean => {
            Err(CliError(format!("--reduction batchmean is only for kl-div, not {}", args.op.name())))
        }
    }
}

/// `data` of `from` broadcast to `to` (numpy's rules), or an error naming `option`.
fn broadcast(option: &str, data: &[f32], from: &[usize], to: &[usize]) -> Result<Vec<f32>, CliError> {
    let bad = || CliError(format!("{option}: shape {from:?} does not broadcast to the input's shape {to:?}"));
    if from.len() > to.len() {
        return Err(bad());
    }
    let pad = to.len() - from.len();
    let mut strides = vec![0usize; to.len()];
    let mut stride = 1usize;
    for i in (0..from.len()).rev() {
        let d = from[i];
        if d != 1 && d != to[pad + i] {
            return Err(bad());
        }
        strides[pad + i] = if d == 1 { 0 } else { stride };
        stride = stride.saturating_mul(d);
    }
    // Both shapes come from files whose data filled them: their element counts fit.
    let n = crate::ops::saturating_product(to);
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut rem, mut src) = (flat, 0);
        for i in (0..to.len()).rev() {
            src += (rem % to[i]) * strides[i];
            rem /= to[i];
        }
        out.push(data[src]);
    }
    Ok(out)
}

/// The upstream gradient of ones: one value for a reduced output, else `shape`.
fn ones(dev: &Device, reduced: bool, shape: &[usize]) -> crate::Result<Tensor> {
    if reduced {
        dev.tensor(&[1.0], &[])
    } else {
        dev.tensor(&vec![1.0; crate::ops::saturating_product(shape)], shape)
    }
}

/// A float32 array and its shape.
type Values = (Vec<f32>, Vec<usize>);

/// What the target file holds: values (or probabilities), or class ids read from `path`.
enum Target {
    Values(Values),
    Ids(Vec<i64>, Vec<usize>, PathBuf),
}

/// One `eval` or `grad`, loaded from its files and checked, before any device is involved.
pub struct Job {
    op: Op,
    reduction: ReductionArg,
    ignore_index: i64,
    label_smoothing: f32,
    beta: f32,
    delta: f32,
    log_target: bool,
    dim: isize,
    input: Values,
    target: Option<Target>,
    /// Class weights (cross-entropy, nll), element weights broadcast to the input (bce, bce with
    /// logits), or the linear layer's W.
    weight: Option<Values>,
    bias: Option<Values>,
    /// bce-with-logits' pos_weight, one value per column.
    pos_weight: Option<Vec<f32>>,
}

impl Job {
    /// Reads the files `args` names and checks them and the options against the operation.
    pub fn load(a: &OpArgs) -> Result<Job, CliError> {
        let input = npy::read_f32("--input", &a.input)?;
        let xs = input.1.clone();
        let mut job = Job {
            op: a.op,
            reduction: a.reduction,
            ignore_index: a.ignore_index,
            label_smoothing: a.label_smoothing,
            beta: a.beta,
            delta: a.delta,
            log_target: a.log_target,
            dim: a.dim,
            input,
            target: None,
            weight: None,
            bias: None,
            pos_weight: None,
        };
        let float_target = |what: &str| -> Result<Target, CliError> {
            let path = required("--target", &a.target, a.op)?;
            match npy::read("--target", path)? {
                Array::F32(v, s) => Ok(Target::Values((v, s))),
                Array::Ids(..) => Err(CliError(format!(
                    "--target {}: {} needs float32 {what}, got integer class ids",
                    path.display(),
                    a.op.name()
                ))),
            }
        };
        match a.op {
            Op::Mse | Op::L1 | Op::SmoothL1 | Op::Huber => {
                plain_reduction(a)?;
                job.target = Some(float_target("targets")?);
            }
            Op::Bce | Op::BceWithLogits => {
                plain_reduction(a)?;
                job.target = Some(float_target("targets")?);
                if let Some(p) = &a.weight {
                    let (w, ws) = npy::read_f32("--weight", p)?;
                    job.weight = Some((broadcast("--weight", &w, &ws, &xs)?, xs.clone()));
                }
                match (&a.pos_weight, a.op) {
                    (Some(_), Op::Bce) => {
                        return Err(CliError("--pos-weight is only for bce-with-logits".into()));
                    }
                    (Some(p), _) => job.pos_weight = Some(pos_weight_per_column(p, &xs)?),
                    (None, _) => {}
                }
            }
            Op::CrossEntropy | Op::Nll => {
                plain_reduction(a)?;
                let path = required("--target", &a.target, a.op)?;
                if let Some(p) = &a.weight {
                    job.weight = Some(npy::read_f32("--weight", p)?);
                }
                job.target = Some(match (npy::read("--target", path)?, a.op) {
                    (Array::F32(..), Op::Nll) => {
                        return Err(CliError(format!(
                            "--target {}: nll needs int64 or int32 class ids, got float32",
                            path.display()
                        )));
                    }
                    (Array::F32(y, ys), _) => {
                        if ys != xs {
                            return Err(CliError(format!(
                                "--target {}: float32 targets are probabilities and must have the input's shape \
                                 {xs:?}, got {ys:?} (class ids must be int64 or int32)",
                                path.display()
                            )));
                        }
                        Target::Values((y, ys))
                    }
                    (Array::Ids(t, ts), _) => Target::Ids(t, ts, path.to_path_buf()),
                });
            }
            Op::KlDiv => {
                job.target =
                    Some(float_target(if a.log_target { "log-probabilities" } else { "probabilities" })?);
            }
            Op::LogSoftmax | Op::Softmax => {}
            Op::Linear => {
                job.weight = Some(npy::read_f32("--weight", required("--weight", &a.weight, a.op)?)?);
                if let Some(p) = &a.bias {
                    job.bias = Some(npy::read_f32("--bias", p)?);
                }
            }
        }
        Ok(job)
    }

    /// Runs the job on `dev`: the output's values and shape (`grad`: the input's gradient for an
    /// upstream gradient of ones).
    pub fn run(&self, dev: &Device, grad: bool) -> Result<(Vec<f32>, Vec<usize>), CliError> {
        let (x, xs) = &self.input;
        let xt = dev.tensor(x, xs)?;
        let out = |t: Tensor| -> Result<(Vec<f32>, Vec<usize>), CliError> {
            let shape = t.shape().to_vec();
            Ok((t.to_vec()?, shape))
        };
        let upload = |v: &Option<Values>| -> crate::Result<Option<Tensor>> {
            v.as_ref().map(|(d, s)| dev.tensor(d, s)).transpose()
        };
        let values_target = || -> Result<Tensor, CliError> {
            match &self.target {
                Some(Target::Values((y, ys))) => Ok(dev.tensor(y, ys)?),
                _ => Err(CliError("a float32 target is required".into())),
            }
        };
        let plain = match self.reduction {
            ReductionArg::None => Reduction::None,
            ReductionArg::Sum => Reduction::Sum,
            _ => Reduction::Mean,
        };
        let reduced = plain != Reduction::None;
        match self.op {
            Op::Mse | Op::L1 | Op::SmoothL1 | Op::Huber => {
                let yt = values_target()?;
                let g = ones(dev, reduced, xs)?;
                macro_rules! go {
                    ($l:expr) => {{
                        let l = $l;
                        if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
                    }};
                }
                match self.op {
                    Op::Mse => go!(Mse { reduction: plain }),
                    Op::L1 => go!(L1 { reduction: plain }),
                    Op::SmoothL1 => go!(SmoothL1 { beta: self.beta, reduction: plain }),
                    _ => go!(Huber { delta: self.delta, reduction: plain }),
                }
            }
            Op::Bce | Op::BceWithLogits => {
                let yt = values_target()?;
                let weight = upload(&self.weight)?;
                let g = ones(dev, reduced, xs)?;
                if self.op == Op::Bce {
                    let l = Bce { weight, reduction: plain };
                    return if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) };
                }
                let pos_weight = match &self.pos_weight {
                    Some(p) => Some(dev.tensor(p, &[p.len()])?),
                    None => None,
                };
                let l = BceWithLogits { weight, pos_weight, reduction: plain };
                if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
            }
            Op::CrossEntropy | Op::Nll => {
                let weight = upload(&self.weight)?;
                let ce = CrossEntropy {
                    weight: weight.clone(),
                    ignore_index: self.ignore_index,
                    reduction: plain,
                    label_smoothing: self.label_smoothing,
                    ..Default::default()
                };
                match &self.target {
                    Some(Target::Ids(t, ts, path)) => {
                        let tt = dev
                            .indices(t, ts)
                            .map_err(|e| CliError(format!("--target {}: {e}", path.display())))?;
                        let g = ones(dev, reduced, ts)?;
                        if self.op == Op::Nll {
                            let l = Nll { weight, ignore_index: self.ignore_index, reduction: plain };
                            return if grad {
                                out(l.backward(&xt, &tt, &g)?)
                            } else {
                                out(l.forward(&xt, &tt)?)
                            };
                        }
                        if grad { out(ce.backward(&xt, &tt, &g)?) } else { out(ce.forward(&xt, &tt)?) }
                    }
                    _ => {
                        let (yt, l) = (values_target()?, ce);
                        if grad {
                            // The per-row loss's shape: the input's without the class dim.
                            let mut gs = xs.clone();
                            if gs.len() > 1 {
                                gs.remove(1);
                            } else {
                                gs.clear();
                            }
                            out(l.backward_probs(&xt, &yt, &ones(dev, reduced, &gs)?)?.0)
                        } else {
                            out(l.forward_probs(&xt, &yt)?)
                        }
                    }
                }
            }
            Op::KlDiv => {
                let reduction = match self.reduction {
                    ReductionArg::None => KlReduction::None,
                    ReductionArg::Mean => KlReduction::Mean,
                    ReductionArg::Sum => KlReduction::Sum,
                    ReductionArg::Batchmean => KlReduction::BatchMean,
                };
                let yt = values_target()?;
                let l = KlDiv { log_target: self.log_target, reduction };
                let g = ones(dev, reduction != KlReduction::None, xs)?;
                if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
            }
            Op::LogSoftmax | Op::Softmax => {
                let g = ones(dev, false, xs)?;
                if self.op == Op::LogSoftmax {
                    let l = LogSoftmax::default().dim(self.dim);
                    let y = l.forward(&xt)?;
                    if grad { out(l.backward(&y, &g)?) } else { out(y) }
                } else {
                    let l = Softmax::default().dim(self.dim);
                    let y = l.forward(&xt)?;
                    if grad { out(l.backward(&y, &g)?) } else { out(y) }
                }
            }
            Op::Linear => {
                let wt = upload(&self.weight)?.ok_or_else(|| CliError("--weight FILE is required".into()))?;
                let bias = upload(&self.bias)?;
                let y = crate::linear(&xt, &wt, bias.as_ref())?;
                if !grad {
                    return out(y);
                }
                let g = ones(dev, false, y.shape())?;
                out(crate::Linear::default().backward(&xt, &wt, &g)?.input)
            }
        }
    }
}

/// bce-with-logits' pos_weight broadcast to the input and checked to vary only along the last
/// dim (the kernels take one value per column).
fn pos_weight_per_column(path: &Path, xs: &[usize]) -> Result<Vec<f32>, CliError> {
    let (p, ps) = npy::read_f32("--pos-weight", path)?;
    let full = broadcast("--pos-weight", &p, &ps, xs)?;
    let cols = *xs.last().unwrap_or(&1);
    if cols == 0 || full.is_empty() {
        return Ok(vec![1.0; cols]);
    }
    let first = full[..cols.min(full.len())].to_vec();
    if full.chunks(cols).any(|row| row != first.as_slice()) {
        return Err(CliError(format!(
            "--pos-weight {}: values that vary along other dims than the last are not supported",
            path.display()
        )));
    }
    Ok(first)
}
