//! `wgpu-loss bench`: every kernel, forward and backward, at named shapes, each checked against
//! the f64 reference before it is timed, next to the adapter's yardsticks measured in the same
//! run. A progress bar on stderr, a table on stdout, a JSON report with `--json`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::reference::{self, pointwise::Pointwise};
use crate::{
    Bce, BceWithLogits, CrossEntropy, Device, DeviceOptions, Huber, KlDiv, L1, LogSoftmax, Mse, Nll,
    Reduction, SmoothL1, Softmax, Tensor,
};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::common::{AdapterArgs, CliError};
use super::info::AdapterReport;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Run on every adapter in turn.
    #[arg(long)]
    pub all_adapters: bool,
    /// A CI-sized run: small shapes, few repetitions.
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated shape names to run (see the README; default: all of the run's size).
    #[arg(long, value_delimiter = ',')]
    pub shapes: Vec<String>,
    /// Timed repetitions per case (default 10, 3 with --quick).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Write the report (one object per adapter, in a list) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One adapter's run, as written to `--json` and read by `compare`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub git_revision: String,
    pub date: String,
    pub quick: bool,
    /// "gpu-timestamps" or "wall-clock".
    pub timing: String,
    pub adapter: AdapterReport,
    pub yardsticks: Vec<Case>,
    pub cases: Vec<Case>,
}

/// One timed case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Case {
    pub kernel: String,
    /// "forward" or "backward" (or "yardstick").
    pub direction: String,
    /// The shape's name, e.g. "vocab32k_4096x32000".
    pub shape: String,
    /// "ok", or why the case was not timed ("wrong: …", "error: …").
    pub status: String,
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    /// Bytes the case must move (inputs read once, outputs written once).
    pub bytes: Option<u64>,
    pub flops: Option<u64>,
    pub gbs: Option<f64>,
    pub gflops: Option<f64>,
    /// GB/s over the read_sum yardstick of the same run.
    pub ratio_to_read_sum: Option<f64>,
    pub max_abs_err: Option<f64>,
    /// Peak GPU memory beyond the inputs and outputs, in bytes (measured where the case says).
    #[serde(default)]
    pub peak_extra_bytes: Option<u64>,
}

/// A named shape and whether it belongs to the quick or the full run.
struct Shape {
    name: &'static str,
    dims: &'static [usize],
    quick: bool,
}

const CLASS_SHAPES: &[Shape] = &[
    Shape { name: "vocab32k_4096x32000", dims: &[4096, 32000], quick: false },
    Shape { name: "vocab32k_1024x32000", dims: &[1024, 32000], quick: false },
    Shape { name: "imagenet_1024x1000", dims: &[1024, 1000], quick: false },
    Shape { name: "tabular_65536x10", dims: &[65536, 10], quick: false },
    Shape { name: "small_256x1000", dims: &[256, 1000], quick: true },
    Shape { name: "tabular_4096x10", dims: &[4096, 10], quick: true },
];
const POINTWISE_SHAPES: &[Shape] = &[
    Shape { name: "pointwise_16M", dims: &[16 << 20], quick: false },
    Shape { name: "pointwise_1M", dims: &[1 << 20], quick: true },
];
const LINEAR_SHAPES: &[Shape] = &[
    Shape { name: "linear_2048", dims: &[2048, 2048, 2048], quick: false },
    Shape { name: "linear_1024", dims: &[1024, 1024, 1024], quick: false },
    Shape { name: "linear_256", dims: &[256, 256, 256], quick: true },
];

/// LM heads `N × H → V`: x `(N, H)`, W `(V, H)`. Software adapters run the full-size ones only
/// when `--shapes` names them (one forward takes ~25 s on lavapipe at 2048×1024×32000).
const LMHEAD_SHAPES: &[Shape] = &[
    Shape { name: "lmhead_2048x1024x32000", dims: &[2048, 1024, 32000], quick: false },
    Shape { name: "lmhead_1024x2048x128256", dims: &[1024, 2048, 128256], quick: false },
    Shape { name: "lmhead_128x1024x32000", dims: &[128, 1024, 32000], quick: false },
    Shape { name: "lmhead_128x128x2000", dims: &[128, 128, 2000], quick: true },
];

/// Every shape name, for `--shapes` validation.
fn all_shape_names() -> Vec<&'static str> {
    CLASS_SHAPES
        .iter()
        .chain(POINTWISE_SHAPES)
        .chain(LINEAR_SHAPES)
        .chain(LMHEAD_SHAPES)
        .map(|s| s.name)
        .chain(["yardstick_16M", "yardstick_1M"])
        .collect()
}

fn values(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// A class-loss shape's host logits and targets and their GPU copies.
type ClassInput = (&'static Shape, Vec<f32>, Vec<i64>, Tensor, crate::Indices);
/// A pointwise shape's host x, probabilities p and targets y, and their GPU copies.
type PointInput = (&'static Shape, Vec<f32>, Vec<f32>, Vec<f32>, Tensor, Tensor, Tensor);
/// A linear shape's host x and W and their GPU copies.
type LinearInput = (&'static Shape, Vec<f32>, Vec<f32>, Tensor, Tensor);

/// The work of one case: it records its operations and returns the tensor to check.
type Op<'a> = Box<dyn Fn() -> crate::Result<Tensor> + 'a>;

struct Pending<'a> {
    kernel: &'static str,
    direction: &'static str,
    shape: &'static str,
    bytes: Option<u64>,
    flops: Option<u64>,
    op: Op<'a>,
    /// The f64 reference of the result (None: nothing to check, e.g. yardsticks).
    want: Option<Box<dyn Fn() -> Vec<f64> + 'a>>,
    /// Allowed |got − want| as abs + rel·|want|.
    tol: (f64, f64),
    /// The case's work returning every output it makes, to measure its peak extra memory: the
    /// most GPU memory held during the call beyond what is held once it returned (inputs and
    /// outputs).
    mem: Option<Op2<'a>>,
}

/// Work returning all of its outputs.
type Op2<'a> = Box<dyn Fn() -> crate::Result<Vec<Tensor>> + 'a>;

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let known = all_shape_names();
    for s in &args.shapes {
        if !known.contains(&s.as_str()) {
            return Err(CliError(format!("--shapes: unknown shape {s:?}; known: {}", known.join(", "))));
        }
    }
    let devices = if args.all_adapters {
        let list = Device::adapters(args.adapter.backends(), args.adapter.adapter.as_deref());
        let devs: Vec<Device> =
            list.iter().filter_map(|a| Device::from_adapter(a, DeviceOptions::default()).ok()).collect();
        if devs.is_empty() {
            return Err(CliError(format!("no GPU adapter found; {}", crate::INSTALL_HELP)));
        }
        devs
    } else {
        vec![args.adapter.device()?]
    };
    let mut reports = Vec::new();
    for dev in &devices {
        let report = bench_device(dev, args)?;
        print_table(&report);
        reports.push(report);
        dev.clear_pool();
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&reports).map_err(|e| CliError(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| CliError(format!("--json {}: cannot write: {e}", path.display())))?;
    }
    Ok(())
}

fn wanted(args: &BenchArgs, shape: &Shape) -> bool {
    if args.shapes.is_empty() {
        shape.quick == args.quick
    } else {
        args.shapes.iter().any(|s| s == shape.name)
    }
}

fn bench_device(dev: &Device, args: &BenchArgs) -> Result<Report, CliError> {
    let repeats = args.repeats.unwrap_or(if args.quick { 3 } else { 10 }).max(1);
    let adapter = AdapterReport::of(dev.info(), dev.limits(), dev.features());
    let timed = dev
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

    // Inputs live for the whole run; every case borrows them.
    let yard_n = if args.quick { 1 << 20 } else { 16 << 20 };
    let yard_name = if args.quick { "yardstick_1M" } else { "yardstick_16M" };
    let yard = dev.tensor(&values(yard_n, 1.0, 1), &[yard_n])?;
    let yard_dst = dev.tensor(&vec![0.0; yard_n], &[yard_n])?;
    let one_t = dev.tensor(&[1.0], &[])?;
    let one = &one_t;

    let class_inputs: Vec<ClassInput> = CLASS_SHAPES
        .iter()
        .filter(|s| wanted(args, s))
        .map(|s| {
            let (n, c) = (s.dims[0], s.dims[1]);
            let x = values(n * c, 4.0, 2);
            let t: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
            let xt = dev.tensor(&x, s.dims)?;
            let tt = dev.indices(&t, &[n])?;
            Ok((s, x, t, xt, tt))
        })
        .collect::<crate::Result<_>>()?;
    let point_inputs: Vec<PointInput> = POINTWISE_SHAPES
        .iter()
        .filter(|s| wanted(args, s))
        .map(|s| {
            let n = s.dims[0];
            let x = values(n, 3.0, 3);
            let p: Vec<f32> = values(n, 0.49, 4).iter().map(|v| v + 0.5).collect();
            let y: Vec<f32> = values(n, 0.5, 5).iter().map(|v| v + 0.5).collect();
            Ok((
                s,
                x.clone(),
                p.clone(),
                y.clone(),
                dev.tensor(&x, &[n])?,
                dev.tensor(&p, &[n])?,
                dev.tensor(&y, &[n])?,
            ))
        })
        .collect::<crate::Result<_>>()?;
    let linear_inputs: Vec<LinearInput> = LINEAR_SHAPES
        .iter()
        .filter(|s| wanted(args, s))
        .map(|s| {
            let (m, n, k) = (s.dims[0], s.dims[1], s.dims[2]);
            let x = values(m * k, 1.0, 6);
            let w = values(n * k, 1.0, 7);
            Ok((s, x.clone(), w.clone(), dev.tensor(&x, &[m, k])?, dev.tensor(&w, &[n, k])?))
        })
        .collect::<crate::Result<_>>()?;

    let mut skipped = Vec::new();
    let software = dev.info().device_type == wgpu::DeviceType::Cpu;
    let mut lm_inputs = Vec::new();
    for s in LMHEAD_SHAPES
        .iter()
        .filter(|s| wanted(args, s) || (!args.quick && !s.quick && args.shapes.is_empty()))
    {
        if software && !s.quick && !args.shapes.iter().any(|n| n == s.name) {
            for (kernel, direction) in LMHEAD_CASES {
                skipped.push(skipped_case(
                    kernel,
                    direction,
                    s.name,
                    "skipped: minutes on a software adapter; name it in --shapes to run",
                ));
            }
            continue;
        }
        lm_inputs.push(LmHead::new(dev, s)?);
    }
    let mut yardsticks: Vec<Pending<'_>> = vec![
        Pending {
            kernel: "read_sum",
            direction: "yardstick",
            shape: yard_name,
            bytes: Some(yard_n as u64 * 4),
            flops: None,
            op: Box::new(|| crate::ops::bandwidth::read_sum(&yard)),
            want: None,
            tol: (0.0, 0.0),
            mem: None,
        },
        Pending {
            kernel: "copy_vec4",
            direction: "yardstick",
            shape: yard_name,
            bytes: Some(yard_n as u64 * 8),
            flops: None,
            op: Box::new(|| crate::ops::bandwidth::copy(&yard)),
            want: None,
            tol: (0.0, 0.0),
            mem: None,
        },
        Pending {
            kernel: "copy_buffer_to_buffer",
            direction: "yardstick",
            shape: yard_name,
            bytes: Some(yard_n as u64 * 8),
            flops: None,
            op: Box::new(|| {
                let mut enc = dev.wgpu_device().create_command_encoder(&Default::default());
                enc.copy_buffer_to_buffer(yard.buffer(), 0, yard_dst.buffer(), 0, yard_n as u64 * 4);
                dev.flush()?;
                dev.wgpu_queue().submit([enc.finish()]);
                Ok(yard_dst.clone())
            }),
            want: None,
            tol: (0.0, 0.0),
            mem: None,
        },
    ];
    // The forward outputs the softmax gradients start from, computed once.
    let outputs: Vec<(Tensor, Tensor)> = class_inputs
        .iter()
        .map(|(_, _, _, xt, _)| Ok((LogSoftmax::default().forward(xt)?, Softmax::default().forward(xt)?)))
        .collect::<crate::Result<_>>()?;
    let mut cases: Vec<Pending<'_>> = Vec::new();
    for ((s, x, t, xt, tt), (ly, sy)) in class_inputs.iter().zip(&outputs) {
        let (n, c) = (s.dims[0], s.dims[1]);
        let xb = (n * c * 4) as u64;
        let shape = s.dims;
        cases.push(Pending {
            kernel: "cross_entropy",
            direction: "forward",
            shape: s.name,
            bytes: Some(xb + n as u64 * 4),
            flops: None,
            op: Box::new(move || CrossEntropy::default().forward(xt, tt)),
            want: Some(Box::new(move || {
                reference::cross_entropy::cross_entropy(x, c, t, None, -100, Reduction::Mean)
                    .unwrap_or_default()
            })),
            tol: (1e-5, 1e-4),
            mem: None,
        });
        cases.push(Pending {
            kernel: "cross_entropy",
            direction: "backward",
            shape: s.name,
            bytes: Some(2 * xb + n as u64 * 4),
            flops: None,
            op: Box::new(|| CrossEntropy::default().backward(xt, tt, one)),
            want: Some(Box::new(move || {
                reference::cross_entropy::cross_entropy_backward(
                    x,
                    shape,
                    t,
                    None,
                    -100,
                    0.0,
                    Reduction::Mean,
                    &[1.0f32],
                )
                .unwrap_or_default()
            })),
            tol: (1e-7, 1e-3),
            mem: None,
        });
        if c >= 1000 {
            cases.push(Pending {
                kernel: "log_softmax",
                direction: "forward",
                shape: s.name,
                bytes: Some(2 * xb),
                flops: None,
                op: Box::new(move || LogSoftmax::default().forward(xt)),
                want: Some(Box::new(move || reference::log_softmax::log_softmax(x, c))),
                tol: (1e-5, 1e-5),
                mem: None,
            });
            cases.push(Pending {
                kernel: "softmax",
                direction: "forward",
                shape: s.name,
                bytes: Some(2 * xb),
                flops: None,
                op: Box::new(move || Softmax::default().forward(xt)),
                want: Some(Box::new(move || reference::log_softmax::softmax(x, c))),
                tol: (1e-6, 1e-4),
                mem: None,
            });
            // nll reads one value per row (its input is the log-softmax output).
            cases.push(Pending {
                kernel: "nll",
                direction: "forward",
                shape: s.name,
                bytes: Some(n as u64 * 8),
                flops: None,
                op: Box::new(move || Nll::default().forward(ly, tt)),
                want: Some(Box::new(move || {
                    let logp: Vec<f32> =
                        reference::log_softmax::log_softmax(x, c).iter().map(|&v| v as f32).collect();
                    reference::nll::nll(&logp, c, t, None, -100, Reduction::Mean).unwrap_or_default()
                })),
                tol: (1e-5, 1e-4),
                mem: None,
            });
            // The upstream gradient of the softmax gradients is x itself (any data will do).
            cases.push(Pending {
                kernel: "log_softmax",
                direction: "backward",
                shape: s.name,
                bytes: Some(3 * xb),
                flops: None,
                op: Box::new(move || LogSoftmax::default().backward(ly, xt)),
                want: Some(Box::new(move || {
                    let y: Vec<f32> =
                        reference::log_softmax::log_softmax(x, c).iter().map(|&v| v as f32).collect();
                    reference::log_softmax::log_softmax_backward(&y, x, shape, 1)
                })),
                tol: (1e-4, 1e-3),
                mem: None,
            });
            cases.push(Pending {
                kernel: "softmax",
                direction: "backward",
                shape: s.name,
                bytes: Some(3 * xb),
                flops: None,
                op: Box::new(move || Softmax::default().backward(sy, xt)),
                want: Some(Box::new(move || {
                    let y: Vec<f32> =
                        reference::log_softmax::softmax(x, c).iter().map(|&v| v as f32).collect();
                    reference::log_softmax::softmax_backward(&y, x, shape, 1)
                })),
                tol: (1e-5, 1e-3),
                mem: None,
            });
            cases.push(Pending {
                kernel: "nll",
                direction: "backward",
                shape: s.name,
                bytes: Some(xb + n as u64 * 4),
                flops: None,
                op: Box::new(|| Nll::default().backward(xt, tt, one)),
                want: Some(Box::new(move || {
                    reference::nll::nll_backward(x, shape, t, None, -100, Reduction::Mean, &[1.0f32])
                        .unwrap_or_default()
                })),
                tol: (1e-7, 1e-5),
                mem: None,
            });
        }
    }
    for (s, x, p, y, xt, pt, yt) in &point_inputs {
        let n = s.dims[0];
        let nb = n as u64 * 4;
        let losses: [(&'static str, Pointwise, &Tensor, &Vec<f32>); 7] = [
            ("mse", Pointwise::Mse, xt, x),
            ("l1", Pointwise::L1, xt, x),
            ("smooth_l1", Pointwise::SmoothL1(1.0), xt, x),
            ("huber", Pointwise::Huber(1.0), xt, x),
            ("bce", Pointwise::Bce, pt, p),
            ("bce_with_logits", Pointwise::BceWithLogits, xt, x),
            ("kl_div", Pointwise::KlDiv(false), xt, x),
        ];
        for (name, loss, input, host) in losses {
            let run = move |backward: bool| -> crate::Result<Tensor> {
                let r = Reduction::Mean;
                macro_rules! go {
                    ($l:expr) => {
                        if backward { $l.backward(input, yt, one) } else { $l.forward(input, yt) }
                    };
                }
                match loss {
                    Pointwise::Mse => go!(Mse { reduction: r }),
                    Pointwise::L1 => go!(L1 { reduction: r }),
                    Pointwise::SmoothL1(_) => go!(SmoothL1 { beta: 1.0, reduction: r }),
                    Pointwise::Huber(_) => go!(Huber { delta: 1.0, reduction: r }),
                    Pointwise::Bce => go!(Bce { weight: None, reduction: r }),
                    Pointwise::BceWithLogits => {
                        go!(BceWithLogits { weight: None, pos_weight: None, reduction: r })
                    }
                    _ => go!(KlDiv::default()),
                }
            };
            cases.push(Pending {
                kernel: name,
                direction: "forward",
                shape: s.name,
                bytes: Some(2 * nb),
                flops: None,
                op: Box::new(move || run(false)),
                want: Some(Box::new(move || {
                    reference::pointwise::forward(loss, host, y, n, None, None, Reduction::Mean, n as f64)
                })),
                tol: (1e-6, 1e-4),
                mem: None,
            });
            cases.push(Pending {
                kernel: name,
                direction: "backward",
                shape: s.name,
                bytes: Some(3 * nb),
                flops: None,
                op: Box::new(move || run(true)),
                want: Some(Box::new(move || {
                    reference::pointwise::backward(
                        loss,
                        host,
                        y,
                        n,
                        None,
                        None,
                        &[1.0f32],
                        Reduction::Mean,
                        n as f64,
                    )
                    .0
                })),
                tol: (1e-9, 1e-4),
                mem: None,
            });
        }
    }
    for (s, x, w, xt, wt) in &linear_inputs {
        let (m, n, k) = (s.dims[0], s.dims[1], s.dims[2]);
        cases.push(Pending {
            kernel: "linear",
            direction: "forward",
            shape: s.name,
            bytes: None,
            flops: Some(2 * (m * n * k) as u64),
            op: Box::new(move || crate::linear(xt, wt, None)),
            want: Some(Box::new(move || reference::linear::linear(x, w, None, k))),
            tol: (1e-3, 1e-4),
            mem: None,
        });
        // dX = dY·W, dW = dYᵀ·X, db: two GEMMs; x stands in for dY (the shapes are square).
        // Not at 2048³, where eleven runs take minutes on a software adapter.
        if m > 1024 {
            continue;
        }
        cases.push(Pending {
            kernel: "linear",
            direction: "backward",
            shape: s.name,
            bytes: None,
            flops: Some(4 * (m * n * k) as u64),
            op: Box::new(move || Ok(crate::Linear::default().backward(xt, wt, xt)?.weight)),
            want: Some(Box::new(move || reference::linear::linear_backward(x, w, x, k).1)),
            tol: (1e-3, 1e-4),
            mem: None,
        });
    }

    for lm in &lm_inputs {
        lmhead_cases(lm, &mut cases)?;
    }

    let total = (yardsticks.len() + cases.len()) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(dev.name());
    let mut done_yard = Vec::new();
    for p in yardsticks.drain(..) {
        bar.set_message(format!("{} {}", p.kernel, p.shape));
        done_yard.push(measure(dev, &p, repeats, None));
        bar.inc(1);
    }
    let read_sum = done_yard.first().and_then(|c| c.gbs);
    let mut done = Vec::new();
    for p in cases.drain(..) {
        bar.set_message(format!("{} {} {}", p.kernel, p.direction, p.shape));
        done.push(measure(dev, &p, repeats, read_sum));
        bar.inc(1);
    }
    bar.finish_and_clear();
    done.extend(skipped);
    Ok(Report {
        tool: "wgpu-loss".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        git_revision: option_env!("WGPU_LOSS_GIT_REVISION").unwrap_or("unknown").into(),
        date: utc_now(),
        quick: args.quick,
        timing: if timed { "gpu-timestamps" } else { "wall-clock" }.into(),
        adapter,
        yardsticks: done_yard,
        cases: done,
    })
}

/// The (kernel, direction) pairs of every LM-head shape.
const LMHEAD_CASES: [(&str, &str); 4] = [
    ("linear_cross_entropy", "forward"),
    ("linear_cross_entropy", "forward+backward"),
    ("linear+cross_entropy", "forward"),
    ("linear+cross_entropy", "forward+backward"),
];

fn skipped_case(kernel: &str, direction: &str, shape: &str, why: &str) -> Case {
    Case {
        kernel: kernel.into(),
        direction: direction.into(),
        shape: shape.into(),
        status: why.into(),
        median_ms: None,
        min_ms: None,
        bytes: None,
        flops: None,
        gbs: None,
        gflops: None,
        ratio_to_read_sum: None,
        max_abs_err: None,
        peak_extra_bytes: None,
    }
}

/// An LM head's host x, W, b and targets.
type LmHost = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<i64>);

/// An LM head's inputs: x `(N, H)`, W `(V, H)` scaled so logits have a spread of a few units,
/// b, targets, the upstream gradient 1, and the host copies (for the f64 reference on small
/// shapes).
struct LmHead {
    shape: &'static Shape,
    host: Option<LmHost>,
    x: Tensor,
    w: Tensor,
    b: Tensor,
    t: crate::Indices,
    one: Tensor,
}

impl LmHead {
    fn new(dev: &Device, shape: &'static Shape) -> crate::Result<LmHead> {
        let (n, h, v) = (shape.dims[0], shape.dims[1], shape.dims[2]);
        let x = values(n * h, 1.0, 8);
        let w = values(v * h, 3.0 / (h as f32).sqrt(), 9);
        let b = values(v, 0.5, 10);
        let t: Vec<i64> = (0..n).map(|i| if i % 17 == 3 { -100 } else { ((i * 7919) % v) as i64 }).collect();
        let lm = LmHead {
            shape,
            x: dev.tensor(&x, &[n, h])?,
            w: dev.tensor(&w, &[v, h])?,
            b: dev.tensor(&b, &[v])?,
            t: dev.indices(&t, &[n])?,
            one: dev.tensor(&[1.0], &[])?,
            host: None,
        };
        // The f64 reference costs N·H·V multiply-adds on the CPU: only for small shapes.
        let small = n * h * v <= 64 << 20;
        Ok(LmHead { host: small.then_some((x, w, b, t)), ..lm })
    }

    fn fused_forward(&self) -> crate::Result<Vec<Tensor>> {
        let o = crate::LinearCrossEntropy::default().forward(&self.x, &self.w, Some(&self.b), &self.t)?;
        Ok(vec![o.loss, o.lse])
    }

    fn fused_step(&self) -> crate::Result<Vec<Tensor>> {
        let (o, g) = crate::LinearCrossEntropy::default().forward_backward(
            &self.x,
            &self.w,
            Some(&self.b),
            &self.t,
            &self.one,
        )?;
        Ok(vec![g.weight, g.input, g.bias, o.loss, o.lse])
    }

    fn unfused_forward(&self) -> crate::Result<Vec<Tensor>> {
        let logits = crate::linear(&self.x, &self.w, Some(&self.b))?;
        Ok(vec![crate::cross_entropy(&logits, &self.t)?])
    }

    fn unfused_step(&self) -> crate::Result<Vec<Tensor>> {
        let logits = crate::linear(&self.x, &self.w, Some(&self.b))?;
        let ce = CrossEntropy::default();
        let loss = ce.forward(&logits, &self.t)?;
        let dlogits = ce.backward(&logits, &self.t, &self.one)?;
        drop(logits);
        let g = crate::Linear::default().backward(&self.x, &self.w, &dlogits)?;
        Ok(vec![g.weight, g.input, g.bias, loss])
    }
}

fn first(outputs: crate::Result<Vec<Tensor>>) -> crate::Result<Tensor> {
    outputs?.into_iter().next().ok_or_else(|| crate::Error::Wgpu("no output".into()))
}

/// The four cases of an LM head. Each is checked before timing: against the f64 reference
/// where the shape is small, else fused against unfused (both are tested against the
/// reference in tests/linear_cross_entropy.rs). dW is checked relative to its largest value.
fn lmhead_cases<'a>(lm: &'a LmHead, cases: &mut Vec<Pending<'a>>) -> Result<(), CliError> {
    let (n, h, v) = (lm.shape.dims[0], lm.shape.dims[1], lm.shape.dims[2]);
    let f64s = |t: Tensor| -> crate::Result<Vec<f64>> { Ok(t.to_vec()?.iter().map(|&v| v as f64).collect()) };
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
            let pick = |t: Option<Tensor>| f64s(t.ok_or_else(|| crate::Error::Wgpu("no output".into()))?);
            ((pick(ul)?, pick(uw)?), (pick(fl)?, pick(fw)?))
        }
    };
    let dw_tol = 1e-3 * dw_fused.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let fwd_flops = Some(2 * (n * h * v) as u64);
    let step_flops = Some(6 * (n * h * v) as u64);
    let (lf, wf, lu, wu) = (loss_fused, dw_fused, loss_unfused, dw_unfused);
    cases.push(Pending {
        kernel: "linear_cross_entropy",
        direction: "forward",
        shape: lm.shape.name,
        bytes: None,
        flops: fwd_flops,
        op: Box::new(move || first(lm.fused_forward())),
        want: Some(Box::new(move || lf.clone())),
        tol: (1e-5, 1e-4),
        mem: Some(Box::new(move || lm.fused_forward())),
    });
    cases.push(Pending {
        kernel: "linear_cross_entropy",
        direction: "forward+backward",
        shape: lm.shape.name,
        bytes: None,
        flops: step_flops,
        op: Box::new(move || first(lm.fused_step())),
        want: Some(Box::new(move || wf.clone())),
        tol: (dw_tol, 1e-3),
        mem: Some(Box::new(move || lm.fused_step())),
    });
    cases.push(Pending {
        kernel: "linear+cross_entropy",
        direction: "forward",
        shape: lm.shape.name,
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
        bytes: None,
        flops: step_flops,
        op: Box::new(move || first(lm.unfused_step())),
        want: Some(Box::new(move || wu.clone())),
        tol: (dw_tol, 1e-3),
        mem: Some(Box::new(move || lm.unfused_step())),
    });
    Ok(())
}

/// Checks the case against its reference, then times it `repeats` times.
fn measure(dev: &Device, p: &Pending<'_>, repeats: usize, read_sum: Option<f64>) -> Case {
    let mut case = Case {
        kernel: p.kernel.into(),
        direction: p.direction.into(),
        shape: p.shape.into(),
        status: "ok".into(),
        median_ms: None,
        min_ms: None,
        bytes: p.bytes,
        flops: p.flops,
        gbs: None,
        gflops: None,
        ratio_to_read_sum: None,
        max_abs_err: None,
        peak_extra_bytes: None,
    };
    if let Some(mem) = &p.mem {
        let extra = dev.synchronize().and_then(|_| {
            dev.reset_peak_memory();
            let outputs = mem()?;
            dev.synchronize()?;
            let extra = dev.peak_memory().saturating_sub(dev.memory_in_use());
            drop(outputs);
            Ok(extra)
        });
        match extra {
            Ok(b) => case.peak_extra_bytes = Some(b),
            Err(e) => {
                case.status = format!("error: {e}");
                return case;
            }
        }
    }
    // The first run compiles pipelines and fills the pool; its result is checked.
    let got = match (p.op)().and_then(|t| {
        dev.synchronize()?;
        if p.want.is_some() { t.to_vec() } else { Ok(Vec::new()) }
    }) {
        Ok(v) => v,
        Err(e) => {
            case.status = format!("error: {e}");
            return case;
        }
    };
    if let Some(want) = &p.want {
        let want = want();
        if want.len() != got.len() {
            case.status = format!("wrong: {} values, the reference has {}", got.len(), want.len());
            return case;
        }
        let (abs, rel) = p.tol;
        let mut worst = 0.0f64;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let d = (g as f64 - w).abs();
            let within = d <= abs + rel * w.abs();
            let bad = if w.is_nan() { !g.is_nan() } else { !within };
            if bad {
                case.status = format!("wrong: element {i} is {g}, the reference {w}");
                return case;
            }
            worst = worst.max(d);
        }
        case.max_abs_err = Some(worst);
    }
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        match dev.gpu_time(|| (p.op)().map(drop)) {
            Ok((_, Some(gpu))) => times.push(gpu),
            Ok((_, None)) => times.push(start.elapsed()),
            Err(e) => {
                case.status = format!("error: {e}");
                return case;
            }
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let min = times[0];
    case.median_ms = Some(ms(median));
    case.min_ms = Some(ms(min));
    let secs = median.as_secs_f64().max(1e-12);
    case.gbs = p.bytes.map(|b| b as f64 / secs / 1e9);
    case.gflops = p.flops.map(|f| f as f64 / secs / 1e9);
    case.ratio_to_read_sum = match (case.gbs, read_sum) {
        (Some(g), Some(r)) if r > 0.0 => Some(g / r),
        _ => None,
    };
    case
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_table(r: &Report) {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header([
        "kernel",
        "direction",
        "shape",
        "status",
        "median ms",
        "min ms",
        "rate",
        "/ read_sum",
        "peak extra MiB",
    ]);
    for c in r.yardsticks.iter().chain(&r.cases) {
        let rate = match (c.gbs, c.gflops) {
            (Some(g), _) => format!("{g:.2} GB/s"),
            (_, Some(f)) => format!("{f:.2} GFLOP/s"),
            _ => "—".into(),
        };
        let f = |v: Option<f64>, p: usize| v.map_or("—".into(), |v| format!("{v:.p$}"));
        table.add_row([
            c.kernel.clone(),
            c.direction.clone(),
            c.shape.clone(),
            c.status.clone(),
            f(c.median_ms, 3),
            f(c.min_ms, 3),
            rate,
            f(c.ratio_to_read_sum, 2),
            f(c.peak_extra_bytes.map(|b| b as f64 / (1 << 20) as f64), 2),
        ]);
    }
    println!(
        "\n## {} ({} {}, {}; timing: {})\n",
        r.adapter.name, r.adapter.backend, r.adapter.device_type, r.adapter.driver_info, r.timing
    );
    println!("{table}");
}

/// Now as an ISO 8601 UTC timestamp (civil-from-days, no time-zone database needed).
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
