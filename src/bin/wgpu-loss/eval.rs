//! `wgpu-loss eval <OP>` and `wgpu-loss grad <OP>`: a `torch.nn.functional` function on saved
//! arrays, or its gradient for an upstream gradient of ones.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use wgpu_loss::{
    Bce, BceWithLogits, CrossEntropy, Device, Huber, Indices, KlDiv, KlReduction, L1, LogSoftmax, Mse, Nll,
    Reduction, SmoothL1, Softmax, Tensor,
};

use crate::npy::{self, Array};
use crate::{AdapterArgs, CliError};

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
    /// The linear layer's bias [out].
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
    let dev = args.adapter.device()?;
    let op = args.op.name();
    let (values, shape) = compute(&dev, args, grad).map_err(|e| e.context(op))?;
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
    let mut stride = 1;
    for i in (0..from.len()).rev() {
        let d = from[i];
        if d != 1 && d != to[pad + i] {
            return Err(bad());
        }
        strides[pad + i] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let n: usize = to.iter().product();
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
fn ones(dev: &Device, reduced: bool, shape: &[usize]) -> wgpu_loss::Result<Tensor> {
    if reduced { dev.tensor(&[1.0], &[]) } else { dev.tensor(&vec![1.0; shape.iter().product()], shape) }
}

fn ids(
    dev: &Device,
    option: &str,
    path: &Path,
    values: Vec<i64>,
    shape: &[usize],
) -> Result<Indices, CliError> {
    dev.indices(&values, shape).map_err(|e| CliError(format!("{option} {}: {e}", path.display())))
}

/// The result's values and shape.
fn compute(dev: &Device, a: &OpArgs, grad: bool) -> Result<(Vec<f32>, Vec<usize>), CliError> {
    let (x, xs) = npy::read_f32("--input", &a.input)?;
    let xt = dev.tensor(&x, &xs)?;
    let float_target = |what: &str| -> Result<(Tensor, Vec<usize>), CliError> {
        let path = required("--target", &a.target, a.op)?;
        match npy::read("--target", path)? {
            Array::F32(v, s) => Ok((dev.tensor(&v, &s)?, s)),
            Array::Ids(..) => Err(CliError(format!(
                "--target {}: {} needs float32 {what}, got integer class ids",
                path.display(),
                a.op.name()
            ))),
        }
    };
    let out = |t: Tensor| -> Result<(Vec<f32>, Vec<usize>), CliError> {
        let shape = t.shape().to_vec();
        Ok((t.to_vec()?, shape))
    };
    match a.op {
        Op::Mse | Op::L1 | Op::SmoothL1 | Op::Huber => {
            let red = plain_reduction(a)?;
            let (yt, _) = float_target("targets")?;
            let g = ones(dev, red != Reduction::None, &xs)?;
            macro_rules! go {
                ($l:expr) => {{
                    let l = $l;
                    if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
                }};
            }
            match a.op {
                Op::Mse => go!(Mse { reduction: red }),
                Op::L1 => go!(L1 { reduction: red }),
                Op::SmoothL1 => go!(SmoothL1 { beta: a.beta, reduction: red }),
                _ => go!(Huber { delta: a.delta, reduction: red }),
            }
        }
        Op::Bce | Op::BceWithLogits => {
            let red = plain_reduction(a)?;
            let (yt, _) = float_target("targets")?;
            let weight = match &a.weight {
                Some(p) => {
                    let (w, ws) = npy::read_f32("--weight", p)?;
                    Some(dev.tensor(&broadcast("--weight", &w, &ws, &xs)?, &xs)?)
                }
                None => None,
            };
            let g = ones(dev, red != Reduction::None, &xs)?;
            if a.op == Op::Bce {
                if a.pos_weight.is_some() {
                    return Err(CliError("--pos-weight is only for bce-with-logits".into()));
                }
                let l = Bce { weight, reduction: red };
                return if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) };
            }
            let pos_weight = match &a.pos_weight {
                Some(p) => Some(dev.tensor(&pos_weight_per_column(p, &xs)?, &[*xs.last().unwrap_or(&1)])?),
                None => None,
            };
            let l = BceWithLogits { weight, pos_weight, reduction: red };
            if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
        }
        Op::CrossEntropy | Op::Nll => {
            let red = plain_reduction(a)?;
            let path = required("--target", &a.target, a.op)?;
            let weight = match &a.weight {
                Some(p) => {
                    let (w, ws) = npy::read_f32("--weight", p)?;
                    Some(dev.tensor(&w, &ws)?)
                }
                None => None,
            };
            let reduced = red != Reduction::None;
            match (npy::read("--target", path)?, a.op) {
                (Array::F32(..), Op::Nll) => Err(CliError(format!(
                    "--target {}: nll needs int64 or int32 class ids, got float32",
                    path.display()
                ))),
                (Array::F32(y, ys), _) => {
                    if ys != xs {
                        return Err(CliError(format!(
                            "--target {}: float32 targets are probabilities and must have the input's shape {xs:?}, \
                             got {ys:?} (class ids must be int64 or int32)",
                            path.display()
                        )));
                    }
                    let l = CrossEntropy {
                        weight,
                        ignore_index: a.ignore_index,
                        reduction: red,
                        label_smoothing: a.label_smoothing,
                        ..Default::default()
                    };
                    let yt = dev.tensor(&y, &ys)?;
                    if grad {
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
                (Array::Ids(t, ts), op) => {
                    let tt = ids(dev, "--target", path, t, &ts)?;
                    let g = ones(dev, reduced, &ts)?;
                    if op == Op::Nll {
                        let l = Nll { weight, ignore_index: a.ignore_index, reduction: red };
                        return if grad { out(l.backward(&xt, &tt, &g)?) } else { out(l.forward(&xt, &tt)?) };
                    }
                    let l = CrossEntropy {
                        weight,
                        ignore_index: a.ignore_index,
                        reduction: red,
                        label_smoothing: a.label_smoothing,
                        ..Default::default()
                    };
                    if grad { out(l.backward(&xt, &tt, &g)?) } else { out(l.forward(&xt, &tt)?) }
                }
            }
        }
        Op::KlDiv => {
            let reduction = match a.reduction {
                ReductionArg::None => KlReduction::None,
                ReductionArg::Mean => KlReduction::Mean,
                ReductionArg::Sum => KlReduction::Sum,
                ReductionArg::Batchmean => KlReduction::BatchMean,
            };
            let (yt, _) = float_target(if a.log_target { "log-probabilities" } else { "probabilities" })?;
            let l = KlDiv { log_target: a.log_target, reduction };
            let g = ones(dev, reduction != KlReduction::None, &xs)?;
            if grad { out(l.backward(&xt, &yt, &g)?) } else { out(l.forward(&xt, &yt)?) }
        }
        Op::LogSoftmax | Op::Softmax => {
            let g = ones(dev, false, &xs)?;
            if a.op == Op::LogSoftmax {
                let l = LogSoftmax::default().dim(a.dim);
                let y = l.forward(&xt)?;
                if grad { out(l.backward(&y, &g)?) } else { out(y) }
            } else {
                let l = Softmax::default().dim(a.dim);
                let y = l.forward(&xt)?;
                if grad { out(l.backward(&y, &g)?) } else { out(y) }
            }
        }
        Op::Linear => {
            let (w, ws) = npy::read_f32("--weight", required("--weight", &a.weight, a.op)?)?;
            let bias = match &a.bias {
                Some(p) => {
                    let (b, bs) = npy::read_f32("--bias", p)?;
                    Some(dev.tensor(&b, &bs)?)
                }
                None => None,
            };
            let wt = dev.tensor(&w, &ws)?;
            let y = wgpu_loss::linear(&xt, &wt, bias.as_ref())?;
            if !grad {
                return out(y);
            }
            let g = ones(dev, false, y.shape())?;
            out(wgpu_loss::Linear::default().backward(&xt, &wt, &g)?.input)
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
    let first = full[..cols].to_vec();
    if full.chunks(cols).any(|row| row != first.as_slice()) {
        return Err(CliError(format!(
            "--pos-weight {}: values that vary along other dims than the last are not supported",
            path.display()
        )));
    }
    Ok(first)
}
