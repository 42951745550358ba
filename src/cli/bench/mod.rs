//! `wgpu-loss bench`: every loss of the catalogue, forward and backward, at its named shapes,
//! and the LM-head cases, each checked against the f64 reference before it is timed, next to
//! the adapter's yardsticks measured in the same run. A progress bar on stderr, a table on
//! stdout, a JSON report with `--json`.
//!
//! `cases.rs` makes the cases, `lmhead.rs` the LM-head ones, `distill.rs` the two-head
//! distillation ones, `measure.rs` checks and times one,
//! `report.rs` holds the report and its table.

mod cases;
mod distill;
mod lmhead;
mod measure;
mod report;

use std::path::PathBuf;

use clap::Args;

pub use report::{Case, Report};

use super::common::{AdapterArgs, CliError};
use super::info::AdapterReport;
use crate::catalogue::{BenchShape, LOSSES};
use crate::dtype::DType;
use crate::gpu::device::{Device, DeviceOptions, INSTALL_HELP};

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
    /// Comma-separated element types of the inputs, each case run in each: f32, f16, bf16.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub dtypes: Vec<DTypeArg>,
    /// Write the report (one object per adapter, in a list) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// An element type on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl DTypeArg {
    pub fn dtype(self) -> DType {
        match self {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::BF16,
        }
    }
}

/// Every shape name, for `--shapes` validation.
fn all_shape_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = LOSSES
        .iter()
        .flat_map(|l| l.bench.iter())
        .chain(lmhead::LMHEAD_SHAPES)
        .chain(distill::DISTILL_SHAPES)
        .map(|s| s.name)
        .chain(cases::YARDSTICKS.iter().map(|y| y.0))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

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
            return Err(CliError(format!("no GPU adapter found; {INSTALL_HELP}")));
        }
        devs
    } else {
        vec![args.adapter.device()?]
    };
    let mut reports = Vec::new();
    for dev in &devices {
        let report = bench_device(dev, args)?;
        report::print_table(&report);
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

/// Whether the run includes `shape`: the named ones, else those of the run's size.
fn wanted(args: &BenchArgs, shape: &BenchShape) -> bool {
    if args.shapes.is_empty() { shape.quick == args.quick } else { named(args, shape) }
}

fn named(args: &BenchArgs, shape: &BenchShape) -> bool {
    args.shapes.iter().any(|s| s == shape.name)
}

fn bench_device(dev: &Device, args: &BenchArgs) -> Result<Report, CliError> {
    let repeats = args.repeats.unwrap_or(if args.quick { 3 } else { 10 }).max(1);
    let adapter = AdapterReport::of(dev.info(), dev.limits(), dev.features());
    let timed = dev
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

    let (yard_name, yard_n, _) =
        *cases::YARDSTICKS.iter().find(|y| y.2 == args.quick).unwrap_or(&cases::YARDSTICKS[0]);
    let losses: Vec<(usize, &'static crate::catalogue::Loss, usize, &'static BenchShape)> = LOSSES
        .iter()
        .enumerate()
        .flat_map(|(l, loss)| loss.bench.iter().enumerate().map(move |(s, shape)| (l, *loss, s, shape)))
        .filter(|(_, _, _, shape)| wanted(args, shape))
        .collect();
    let dtypes: Vec<DType> = args.dtypes.iter().map(|d| d.dtype()).collect();
    let mut skipped = Vec::new();
    let heads = lmhead::lm_heads(dev, &dtypes, |s| wanted(args, s), |s| named(args, s), &mut skipped)?;
    let pairs = distill::distill_heads(dev, &dtypes, |s| wanted(args, s), |s| named(args, s), &mut skipped)?;
    let mut lm_cases = Vec::new();
    for head in &heads {
        lmhead::lmhead_cases(head, &mut lm_cases)?;
    }
    for pair in &pairs {
        distill::distill_cases(pair, &mut lm_cases)?;
    }

    let total = 3
        + dtypes.len() * losses.iter().map(|(_, l, _, s)| cases::count(l, s)).sum::<usize>()
        + lm_cases.len();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(dev.name());
    bar.set_message(format!("yardsticks {yard_name}"));
    let yardsticks = cases::yardsticks(dev, yard_name, yard_n, repeats)?;
    bar.inc(3);
    let read_sum = yardsticks.first().and_then(|c| c.gbs);
    let mut done = Vec::new();
    for (l, loss, s, shape) in losses {
        for &dtype in &dtypes {
            bar.set_message(format!("{} {} {dtype}", loss.name, shape.name));
            let seed = (l * 64 + s) as u64 + 2;
            done.extend(cases::loss_cases(dev, loss, shape, (seed, dtype), repeats, read_sum)?);
            bar.inc(cases::count(loss, shape) as u64);
        }
    }
    for p in lm_cases.drain(..) {
        bar.set_message(format!("{} {} {} {}", p.kernel, p.direction, p.shape, p.dtype));
        done.push(measure::measure(dev, &p, repeats, read_sum));
        bar.inc(1);
    }
    bar.finish_and_clear();
    done.extend(skipped);
    Ok(Report {
        tool: "wgpu-loss".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        git_revision: option_env!("WGPU_LOSS_GIT_REVISION").unwrap_or("unknown").into(),
        date: report::utc_now(),
        quick: args.quick,
        timing: if timed { "gpu-timestamps" } else { "wall-clock" }.into(),
        adapter,
        yardsticks,
        cases: done,
    })
}
