//! `wgpu-loss eval <OP>` and `wgpu-loss grad <OP>`: a function of the loss catalogue on saved
//! arrays, or its gradient in the input for an upstream gradient of ones.
//!
//! The ops are the catalogue's (`crate::catalogue::LOSSES`), named with dashes; what each reads
//! from which file follows its entry (target kind, weight kind, options, reductions).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};

use super::common::{AdapterArgs, CliError};
use super::npy::{self, Array as NpyArray};
use crate::catalogue::{self, Array, Ids, Loss, LossReduction, Operand, Opt, Target, TargetKind, WeightKind};
use crate::dtype::DType;
use crate::error::Error;
use crate::gpu::device::Device;
use crate::ops::Outputs;

/// A function of the catalogue, by its CLI name.
#[derive(Clone, Copy, Debug)]
pub struct Op(pub &'static Loss);

impl Op {
    fn name(self) -> &'static str {
        cli_name(self.0)
    }
}

/// The CLI name of `loss` (its name with dashes), made once.
fn cli_name(loss: &'static Loss) -> &'static str {
    static NAMES: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        catalogue::LOSSES.iter().map(|l| (l.name, &*Box::leak(l.cli_name().into_boxed_str()))).collect()
    });
    names.iter().find(|(n, _)| *n == loss.name).map_or(loss.name, |(_, cli)| cli)
}

impl ValueEnum for Op {
    fn value_variants<'a>() -> &'a [Self] {
        static OPS: OnceLock<Vec<Op>> = OnceLock::new();
        OPS.get_or_init(|| catalogue::LOSSES.iter().map(|&l| Op(l)).collect())
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.0.pytorch))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    None,
    Mean,
    Sum,
    Batchmean,
}

impl ReductionArg {
    fn catalogue(self) -> LossReduction {
        match self {
            ReductionArg::None => LossReduction::None,
            ReductionArg::Mean => LossReduction::Mean,
            ReductionArg::Sum => LossReduction::Sum,
            ReductionArg::Batchmean => LossReduction::BatchMean,
        }
    }
}

#[derive(Args, Debug)]
pub struct OpArgs {
    /// The function.
    #[arg(value_enum)]
    pub op: Op,
    /// The input (.npy of float32, float16, or bfloat16 saved as `<V2`).
    #[arg(long)]
    pub input: PathBuf,
    /// The target: float values or probabilities (any of the input's float types, each file
    /// its own), or int64/int32 class ids.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Class weights (cross-entropy, nll, multi-margin, multilabel-soft-margin), element
    /// weights (bce, bce-with-logits) or the linear layer's W [out, in].
    #[arg(long)]
    pub weight: Option<PathBuf>,
    /// The linear layer's bias `[out]`.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// bce-with-logits' weight of positive examples.
    #[arg(long)]
    pub pos_weight: Option<PathBuf>,
    /// margin-ranking's second input (float, the input's shape).
    #[arg(long)]
    pub input2: Option<PathBuf>,
    /// A third input (float, the input's shape).
    #[arg(long)]
    pub input3: Option<PathBuf>,
    /// gaussian-nll's variance (float): the input's shape, the input's shape less its last dim,
    /// or the input's shape with one dim of size 1.
    #[arg(long)]
    pub var: Option<PathBuf>,
    /// The reduction (default: the op's own, PyTorch's: mean; batchmean for jsd and tvd; none
    /// for sigmoid-focal, as torchvision).
    #[arg(long, value_enum)]
    pub reduction: Option<ReductionArg>,
    /// The class id that does not count (default -100).
    #[arg(long, allow_hyphen_values = true)]
    pub ignore_index: Option<i64>,
    /// cross-entropy's label smoothing in [0, 1] (default 0).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub label_smoothing: Option<f32>,
    /// smooth-l1's β (default 1), or jsd's β in [0, 1] (default 0.5: 0 is the forward KL,
    /// 1 the reverse KL).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub beta: Option<f32>,
    /// jsd: the temperature both logits are divided by (default 1).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub temperature: Option<f32>,
    /// jsd, tvd: labels (int64 or int32, the input's shape without the class dim); rows
    /// labelled `--ignore-index` do not count.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// huber's δ (default 1).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub delta: Option<f32>,
    /// sigmoid-focal: the weight α of positive examples, in [0, 1] (default 0.25), or -1 to
    /// weigh both classes 1, as torchvision.
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub alpha: Option<f32>,
    /// sigmoid-focal: the focusing exponent γ (default 2).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub gamma: Option<f32>,
    /// The margin of hinge-embedding (default 1), margin-ranking (default 0) or multi-margin
    /// (default 1).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub margin: Option<f32>,
    /// poisson-nll: added to the input before its log without log input (default 1e-8);
    /// gaussian-nll: the least variance used (default 1e-6).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub eps: Option<f32>,
    /// poisson-nll: the input holds rates, not log-rates.
    #[arg(long)]
    pub no_log_input: bool,
    /// poisson-nll: add the Stirling term; gaussian-nll: add ½·log(2π).
    #[arg(long)]
    pub full: bool,
    /// multi-margin: the hinge's power, 1 or 2 (default 1); triplet-margin: the norm's degree
    /// (default 2).
    #[arg(long, allow_hyphen_values = true, value_parser = float32)]
    pub p: Option<f32>,
    /// triplet-margin: the distance to the negative is the smaller of the anchor's and the
    /// positive's.
    #[arg(long)]
    pub swap: bool,
    /// ctc: each sequence's input length (int64 or int32, one per sequence; 0-d unbatched).
    #[arg(long)]
    pub input_lengths: Option<PathBuf>,
    /// ctc: each sequence's target length.
    #[arg(long)]
    pub target_lengths: Option<PathBuf>,
    /// ctc: the blank class (default 0).
    #[arg(long)]
    pub blank: Option<usize>,
    /// ctc: an impossible sequence's infinite loss (and NaN gradient) count 0.
    #[arg(long)]
    pub zero_infinity: bool,
    /// kl-div: the target holds log-probabilities.
    #[arg(long)]
    pub log_target: bool,
    /// log-softmax and softmax: the dimension (negative counts from the end; default -1).
    #[arg(long, allow_hyphen_values = true)]
    pub dim: Option<isize>,
    /// grad: the gradient's element type: the input's (the default; float16 and bfloat16
    /// rounded to nearest even, as PyTorch gives them), or f32 unrounded. `eval` always writes
    /// float32, and refuses this flag.
    #[arg(long, value_enum)]
    pub grad_dtype: Option<GradDType>,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Where to write the result (written only on success).
    #[arg(long)]
    pub output: PathBuf,
}

/// A float option's value: any float that float32 holds (`inf` and `nan` spelled out), refused
/// when it is finite but past float32's range, which parsing would round to an infinity.
fn float32(text: &str) -> Result<f32, String> {
    let v: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (v as f32).is_infinite() {
        return Err(format!("{text} is beyond float32's range (±3.4e38)"));
    }
    Ok(v as f32)
}

/// The element type `grad` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradDType {
    /// The input's.
    Input,
    /// float32.
    F32,
}

/// Runs `eval` (`grad = false`) or `grad` and writes the output.
pub fn run(args: &OpArgs, grad: bool) -> Result<(), CliError> {
    let op = args.op.name();
    refuse_input_as_output(args)?;
    let job = Job::load(args, grad).map_err(|e| e.context(op))?;
    let dev = args.adapter.device()?;
    let (values, shape, dtype) = job.run(&dev, grad).map_err(|e| e.context(op))?;
    match dtype {
        DType::F32 => npy::write(&args.output, &npy::Values::F32(&values), &shape),
        half => {
            // Exact: the values are the widened halves.
            let bits: Vec<u16> =
                half.encode(&values).chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            npy::write(&args.output, &npy::Values::Half(&bits, half), &shape)
        }
    }
}

fn required<'a>(option: &str, path: &'a Option<PathBuf>, op: Op) -> Result<&'a Path, CliError> {
    path.as_deref().ok_or_else(|| CliError(format!("{}: {option} FILE is required", op.name())))
}

/// Whether an op (its catalogue entry) reads a flag.
pub type ReadBy = fn(&Loss) -> bool;

/// Every flag of `eval` and `grad` that some ops read and others do not, with the catalogue's
/// answer to whether an op reads it: an op refuses a flag it does not read, so that nothing a
/// user asks for is silently dropped (a new op gets the check from its catalogue entry).
/// `--input`, `--output`, `--backend` and `--adapter` are every op's; `--grad-dtype` is `grad`'s.
pub const OP_FLAGS: &[(&str, ReadBy)] = &[
    ("--target", |l| l.target != TargetKind::None),
    ("--weight", |l| l.weight != WeightKind::None),
    ("--bias", |l| l.bias),
    ("--pos-weight", |l| l.pos_weight),
    ("--input2", |l| l.operands.contains(&Operand::Input2)),
    ("--input3", |l| l.operands.contains(&Operand::Input3)),
    ("--var", |l| l.operands.contains(&Operand::Var)),
    ("--reduction", |l| l.reductions != [LossReduction::None]),
    ("--ignore-index", |l| l.reads(Opt::IgnoreIndex)),
    ("--label-smoothing", |l| l.reads(Opt::LabelSmoothing)),
    ("--beta", |l| l.reads(Opt::Beta) || l.reads(Opt::JsdBeta)),
    ("--temperature", |l| l.reads(Opt::Temperature)),
    ("--labels", |l| l.labels),
    ("--delta", |l| l.reads(Opt::Delta)),
    ("--alpha", |l| l.reads(Opt::Alpha)),
    ("--gamma", |l| l.reads(Opt::Gamma)),
    ("--margin", |l| l.reads(Opt::Margin)),
    ("--eps", |l| l.reads(Opt::Eps)),
    ("--no-log-input", |l| l.reads(Opt::LogInput)),
    ("--full", |l| l.reads(Opt::Full)),
    ("--p", |l| l.reads(Opt::P)),
    ("--swap", |l| l.reads(Opt::Swap)),
    ("--input-lengths", |l| l.lengths),
    ("--target-lengths", |l| l.lengths),
    ("--blank", |l| l.reads(Opt::Blank)),
    ("--zero-infinity", |l| l.reads(Opt::ZeroInfinity)),
    ("--log-target", |l| l.reads(Opt::LogTarget)),
    ("--dim", |l| l.reads(Opt::Dim)),
];

/// The flags of [`OP_FLAGS`] given on this command line.
fn given(a: &OpArgs) -> Vec<&'static str> {
    let set = [
        ("--target", a.target.is_some()),
        ("--weight", a.weight.is_some()),
        ("--bias", a.bias.is_some()),
        ("--pos-weight", a.pos_weight.is_some()),
        ("--input2", a.input2.is_some()),
        ("--input3", a.input3.is_some()),
        ("--var", a.var.is_some()),
        ("--reduction", a.reduction.is_some()),
        ("--ignore-index", a.ignore_index.is_some()),
        ("--label-smoothing", a.label_smoothing.is_some()),
        ("--beta", a.beta.is_some()),
        ("--temperature", a.temperature.is_some()),
        ("--labels", a.labels.is_some()),
        ("--delta", a.delta.is_some()),
        ("--alpha", a.alpha.is_some()),
        ("--gamma", a.gamma.is_some()),
        ("--margin", a.margin.is_some()),
        ("--eps", a.eps.is_some()),
        ("--no-log-input", a.no_log_input),
        ("--full", a.full),
        ("--p", a.p.is_some()),
        ("--swap", a.swap),
        ("--input-lengths", a.input_lengths.is_some()),
        ("--target-lengths", a.target_lengths.is_some()),
        ("--blank", a.blank.is_some()),
        ("--zero-infinity", a.zero_infinity),
        ("--log-target", a.log_target),
        ("--dim", a.dim.is_some()),
    ];
    set.into_iter().filter(|&(_, on)| on).map(|(flag, _)| flag).collect()
}

/// Refuses a flag that the op does not read, naming the flag, the ops that read it and the op.
fn check_flags(a: &OpArgs) -> Result<(), CliError> {
    // jsd and tvd read --ignore-index only of their --labels.
    if a.op.0.labels && a.ignore_index.is_some() && a.labels.is_none() {
        return Err(CliError(format!(
            "--ignore-index is read of --labels, which {} was not given",
            a.op.name()
        )));
    }
    for flag in given(a) {
        let reads = OP_FLAGS.iter().find(|(f, _)| *f == flag).map(|(_, reads)| *reads);
        if reads.is_some_and(|reads| !reads(a.op.0)) {
            let readers: Vec<&'static str> = catalogue::LOSSES
                .iter()
                .filter(|l| reads.is_some_and(|reads| reads(l)))
                .map(|&l| cli_name(l))
                .collect();
            // A short list helps; a long one is every op but a few.
            let message = if readers.len() <= 6 {
                format!("{flag} is only for {}, not {}", readers.join(", "), a.op.name())
            } else {
                format!("{flag} is not an option of {}", a.op.name())
            };
            return Err(CliError(message));
        }
    }
    Ok(())
}

/// Refuses an `--output` that is one of the inputs (the same file, through links too): the
/// result would replace it. Checked before anything is read or run.
fn refuse_input_as_output(a: &OpArgs) -> Result<(), CliError> {
    let Ok(out) = std::fs::metadata(&a.output) else { return Ok(()) };
    let inputs = [
        ("--input", Some(&a.input)),
        ("--target", a.target.as_ref()),
        ("--weight", a.weight.as_ref()),
        ("--bias", a.bias.as_ref()),
        ("--pos-weight", a.pos_weight.as_ref()),
        ("--input2", a.input2.as_ref()),
        ("--input3", a.input3.as_ref()),
        ("--var", a.var.as_ref()),
        ("--labels", a.labels.as_ref()),
        ("--input-lengths", a.input_lengths.as_ref()),
        ("--target-lengths", a.target_lengths.as_ref()),
    ];
    for (flag, path) in inputs {
        if let Some(path) = path
            && std::fs::metadata(path).is_ok_and(|m| same_file(&out, &m, &a.output, path))
        {
            return Err(CliError(format!(
                "--output {} is the {flag} file: the result would replace it",
                a.output.display()
            )));
        }
    }
    Ok(())
}

/// Whether two paths' metadata are of one file (device and inode on Unix; elsewhere the
/// canonical paths).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, pa: &Path, pb: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (pa, pb);
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        matches!((pa.canonicalize(), pb.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// The CLI names of the ops that accept `what`, for messages.
fn ops_with(what: impl Fn(&Loss) -> bool) -> String {
    let names: Vec<&str> = catalogue::LOSSES.iter().filter(|l| what(l)).map(|&l| cli_name(l)).collect();
    names.join(", ")
}

/// A `--weight` or `--pos-weight` file of shape `from`, checked to broadcast to the input's
/// shape `to` (numpy's rules; the library broadcasts it without materialising it).
fn broadcastable(
    option: &str,
    path: &Path,
    (data, from, dtype): (Vec<f32>, Vec<usize>, DType),
    to: &[usize],
) -> Result<Array, CliError> {
    let lead = to.len().checked_sub(from.len());
    let fits = lead.is_some_and(|lead| from.iter().zip(&to[lead..]).all(|(&f, &t)| f == 1 || f == t));
    if !fits {
        return Err(CliError(format!(
            "{option} {}: shape {from:?} does not broadcast to the input's shape {to:?}",
            path.display()
        )));
    }
    Ok(Array::of_dtype(&data, &from, dtype))
}

/// One `eval` or `grad`, loaded from its files and checked, before any device is involved.
pub struct Job {
    op: Op,
    args: catalogue::Args,
    /// Where the class ids came from, for messages about them.
    target_path: Option<PathBuf>,
    grad_dtype: GradDType,
}

impl Job {
    /// Reads the files `args` names and checks them and the options against the operation (for
    /// `grad` when `grad`, else `eval`).
    pub fn load(a: &OpArgs, grad: bool) -> Result<Job, CliError> {
        let loss = a.op.0;
        if !grad && a.grad_dtype.is_some() {
            return Err(CliError("--grad-dtype is only for grad: eval always writes float32".into()));
        }
        let (x, xs, dtype) = npy::read_float("--input", &a.input)?;
        let mut args = catalogue::Args::new(Array::of_dtype(&x, &xs, dtype));
        check_flags(a)?;
        let o = &mut args.options;
        o.reduction = a.reduction.map_or(loss.default_reduction, ReductionArg::catalogue);
        // Every flag given is one the op reads (checked above).
        o.ignore_index = a.ignore_index.unwrap_or(o.ignore_index);
        o.label_smoothing = a.label_smoothing.unwrap_or(o.label_smoothing);
        if loss.reads(Opt::Beta) {
            o.beta = a.beta.unwrap_or(o.beta);
        }
        if loss.reads(Opt::JsdBeta) {
            o.jsd_beta = a.beta.unwrap_or(o.jsd_beta);
        }
        o.temperature = a.temperature.unwrap_or(o.temperature);
        o.delta = a.delta.unwrap_or(o.delta);
        o.log_target = a.log_target;
        o.dim = a.dim.unwrap_or(o.dim);
        o.alpha = a.alpha.unwrap_or(o.alpha);
        o.gamma = a.gamma.unwrap_or(o.gamma);
        o.margin = a.margin.or(o.margin);
        o.eps = a.eps.or(o.eps);
        o.log_input = !a.no_log_input;
        o.full = a.full;
        o.p = a.p.or(o.p);
        o.swap = a.swap;
        o.blank = a.blank.unwrap_or(o.blank);
        o.zero_infinity = a.zero_infinity;
        let takes_reduction = loss.reductions != [LossReduction::None];
        if takes_reduction && !loss.reductions.contains(&o.reduction) {
            let name = o.reduction.name();
            let with = ops_with(|l| l.reductions.contains(&o.reduction));
            return Err(CliError(format!("--reduction {name} is only for {with}, not {}", a.op.name())));
        }
        if !takes_reduction {
            o.reduction = LossReduction::None;
        }
        let target_path = a.target.clone();
        args.target = load_target(a, loss, &xs)?;
        args.weight = match (loss.weight, &a.weight) {
            (WeightKind::Elements, Some(p)) => {
                Some(broadcastable("--weight", p, npy::read_float("--weight", p)?, &xs)?)
            }
            (WeightKind::Classes, Some(p)) => {
                let (w, ws, d) = npy::read_float("--weight", p)?;
                Some(Array::of_dtype(&w, &ws, d))
            }
            (WeightKind::Matrix, p) => {
                let (w, ws, d) = npy::read_float("--weight", required("--weight", p, a.op)?)?;
                Some(Array::of_dtype(&w, &ws, d))
            }
            (_, _) => None,
        };
        if loss.bias
            && let Some(p) = &a.bias
        {
            let (b, bs, d) = npy::read_float("--bias", p)?;
            args.bias = Some(Array::of_dtype(&b, &bs, d));
        }
        if let (Some(p), true) = (&a.pos_weight, loss.pos_weight) {
            args.pos_weight =
                Some(broadcastable("--pos-weight", p, npy::read_float("--pos-weight", p)?, &xs)?);
        }
        args.labels = load_labels(a, loss)?;
        (args.input_lengths, args.target_lengths) = load_lengths(a, loss)?;
        for (which, array) in load_operands(a, loss, &xs)? {
            *args.operand_mut(which) = Some(array);
        }
        Ok(Job { op: a.op, args, target_path, grad_dtype: a.grad_dtype.unwrap_or(GradDType::Input) })
    }

    /// Runs the job on `dev`: the output's values (widened to f32), shape and element type.
    /// `eval` gives f32 computed without rounding to half; `grad` the input's gradient for an
    /// upstream gradient of ones, in the input's element type unless `--grad-dtype f32`.
    pub fn run(&self, dev: &Device, grad: bool) -> Result<(Vec<f32>, Vec<usize>, DType), CliError> {
        let loss = self.op.0;
        let mut args = self.args.clone();
        args.options.outputs =
            if grad && self.grad_dtype == GradDType::Input { Outputs::AsInputs } else { Outputs::F32 };
        let inputs = args.upload(dev).map_err(|e| match (&self.args.target, &self.target_path) {
            // Class ids that do not fit the kernels' i32 are the target file's fault.
            (Some(Target::Ids { .. }), Some(path))
                if matches!(e, Error::InvalidArgument { op: "indices", .. }) =>
            {
                CliError(format!("--target {}: {e}", path.display()))
            }
            _ => CliError::from(e),
        })?;
        let out = (loss.forward)(&inputs)?;
        let result =
            if grad { (loss.backward)(&inputs, &out, &catalogue::ones(dev, out.shape())?)? } else { out };
        let shape = result.shape().to_vec();
        Ok((result.to_vec()?, shape, result.dtype()))
    }
}

/// The files of the operands besides the input that `loss` takes (`--input2`, `--input3`,
/// `--var`): each required by the ops that take it and refused by the others; the inputs must
/// have the input's shape (a var's shape is checked by the library, by PyTorch's rule).
fn load_operands(a: &OpArgs, loss: &Loss, xs: &[usize]) -> Result<Vec<(Operand, Array)>, CliError> {
    let mut out = Vec::new();
    for (which, path) in [(Operand::Input2, &a.input2), (Operand::Input3, &a.input3), (Operand::Var, &a.var)]
    {
        let flag = format!("--{}", which.name());
        let takes = loss.operands.contains(&which);
        let path = match (path, takes) {
            (Some(_), false) => {
                let with = ops_with(|l| l.operands.contains(&which));
                return Err(CliError(format!("{flag} is only for {with}, not {}", a.op.name())));
            }
            (None, false) => continue,
            (path, true) => required(&flag, path, a.op)?,
        };
        let (v, shape, dtype) = npy::read_float(&flag, path)?;
        if which != Operand::Var && shape != xs {
            return Err(CliError(format!(
                "{flag} {}: shape {shape:?} differs from the input's {xs:?}",
                path.display()
            )));
        }
        out.push((which, Array::of_dtype(&v, &shape, dtype)));
    }
    Ok(out)
}

/// ctc's `--input-lengths` and `--target-lengths` files (int64 or int32), required by the ops
/// that take lengths and refused by the others.
fn load_lengths(a: &OpArgs, loss: &Loss) -> Result<(Option<Ids>, Option<Ids>), CliError> {
    let flags = [("--input-lengths", &a.input_lengths), ("--target-lengths", &a.target_lengths)];
    if !loss.lengths {
        if let Some((flag, _)) = flags.iter().find(|(_, p)| p.is_some()) {
            let with = ops_with(|l| l.lengths);
            return Err(CliError(format!("{flag} is only for {with}, not {}", a.op.name())));
        }
        return Ok((None, None));
    }
    let mut out = flags.iter().map(|&(flag, path)| {
        let path = required(flag, path, a.op)?;
        match npy::read(flag, path)? {
            NpyArray::Ids(data, shape) => Ok(Ids { data, shape }),
            NpyArray::Float(..) => Err(CliError(format!(
                "{flag} {}: {} needs int64 or int32 lengths, got floats",
                path.display(),
                a.op.name()
            ))),
        }
    });
    let input = out.next().expect("two flags")?;
    let target = out.next().expect("two flags")?;
    Ok((Some(input), Some(target)))
}

/// The `--labels` file of the losses that take labels.
fn load_labels(a: &OpArgs, loss: &Loss) -> Result<Option<Ids>, CliError> {
    let Some(path) = &a.labels else { return Ok(None) };
    if !loss.labels {
        return Err(CliError(format!("--labels is only for {}", ops_with(|l| l.labels))));
    }
    match npy::read("--labels", path)? {
        NpyArray::Ids(data, shape) => Ok(Some(Ids { data, shape })),
        NpyArray::Float(..) => Err(CliError(format!(
            "--labels {}: {} needs int64 or int32 labels, got floats",
            path.display(),
            a.op.name()
        ))),
    }
}

/// The target file read as `loss` takes it, with one message for each wrong kind.
fn load_target(a: &OpArgs, loss: &Loss, xs: &[usize]) -> Result<Option<Target>, CliError> {
    let op = a.op.name();
    let float = |what: &str| -> Result<Option<Target>, CliError> {
        let path = required("--target", &a.target, a.op)?;
        match npy::read("--target", path)? {
            NpyArray::Float(v, s, d) => Ok(Some(Target::Values(Array::of_dtype(&v, &s, d)))),
            NpyArray::Ids(..) => Err(CliError(format!(
                "--target {}: {op} needs float {what}, got integer class ids",
                path.display()
            ))),
        }
    };
    match loss.target {
        TargetKind::None => Ok(None),
        TargetKind::Values { what } => float(what),
        TargetKind::Distribution => float(if a.log_target { "log-probabilities" } else { "probabilities" }),
        TargetKind::Ids | TargetKind::IdsOrProbabilities => {
            let path = required("--target", &a.target, a.op)?;
            match npy::read("--target", path)? {
                NpyArray::Float(..) if loss.target == TargetKind::Ids => Err(CliError(format!(
                    "--target {}: {op} needs int64 or int32 class ids, got floats",
                    path.display()
                ))),
                NpyArray::Float(y, ys, d) => {
                    if ys != xs {
                        return Err(CliError(format!(
                            "--target {}: float targets are probabilities and must have the input's shape \
                             {xs:?}, got {ys:?} (class ids must be int64 or int32)",
                            path.display()
                        )));
                    }
                    Ok(Some(Target::Values(Array::of_dtype(&y, &ys, d))))
                }
                NpyArray::Ids(t, ts) => Ok(Some(Target::Ids { data: t, shape: ts })),
            }
        }
    }
}
