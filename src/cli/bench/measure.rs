//! One case: checked against its reference on its first run, then timed.

use std::time::{Duration, Instant};

use super::report::Case;
use crate::dtype::DType;
use crate::gpu::device::Device;
use crate::tensor::Tensor;

/// The work of one case: it records its operations and returns the tensor to check.
pub(super) type Op<'a> = Box<dyn Fn() -> crate::error::Result<Tensor> + 'a>;

/// Work returning all of its outputs.
pub(super) type Outputs<'a> = Box<dyn Fn() -> crate::error::Result<Vec<Tensor>> + 'a>;

/// A case before it is measured.
pub(super) struct Pending<'a> {
    pub(super) kernel: &'static str,
    pub(super) direction: &'static str,
    pub(super) shape: &'static str,
    /// The element type of the inputs.
    pub(super) dtype: DType,
    pub(super) bytes: Option<u64>,
    pub(super) flops: Option<u64>,
    pub(super) op: Op<'a>,
    /// The f64 reference of the result (None: nothing to check, e.g. yardsticks).
    pub(super) want: Option<Box<dyn Fn() -> Vec<f64> + 'a>>,
    /// Allowed |got − want| as abs + rel·|want|.
    pub(super) tol: (f64, f64),
    /// The case's work returning every output it makes, to measure its peak extra memory: the
    /// most GPU memory held during the call beyond what is held once it returned (inputs and
    /// outputs).
    pub(super) mem: Option<Outputs<'a>>,
}

/// Checks the case against its reference, then times it `repeats` times.
pub(super) fn measure(dev: &Device, p: &Pending<'_>, repeats: usize, read_sum: Option<f64>) -> Case {
    let mut case = Case {
        kernel: p.kernel.into(),
        direction: p.direction.into(),
        shape: p.shape.into(),
        dtype: p.dtype.name().into(),
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
    let outcome = peak_extra(dev, p)
        .and_then(|extra| {
            case.peak_extra_bytes = extra;
            check(dev, p)
        })
        .and_then(|worst| {
            case.max_abs_err = worst;
            time(dev, p, repeats)
        });
    let times = match outcome {
        Ok(times) => times,
        Err(status) => {
            case.status = status;
            return case;
        }
    };
    let (median, min) = (times[times.len() / 2], times[0]);
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

/// The case's peak GPU memory beyond what it holds once it returned, where it says how; an
/// error is the case's status.
fn peak_extra(dev: &Device, p: &Pending<'_>) -> Result<Option<u64>, String> {
    let Some(mem) = &p.mem else { return Ok(None) };
    let extra = dev.synchronize().and_then(|_| {
        dev.reset_peak_memory();
        let outputs = mem()?;
        dev.synchronize()?;
        let extra = dev.peak_memory().saturating_sub(dev.memory_in_use());
        drop(outputs);
        Ok(extra)
    });
    extra.map(Some).map_err(|e| format!("error: {e}"))
}

/// The first run (which compiles pipelines and fills the pool), checked against the reference:
/// the largest absolute error, or why the case is wrong.
fn check(dev: &Device, p: &Pending<'_>) -> Result<Option<f64>, String> {
    let got = (p.op)()
        .and_then(|t| {
            dev.synchronize()?;
            if p.want.is_some() { t.to_vec() } else { Ok(Vec::new()) }
        })
        .map_err(|e| format!("error: {e}"))?;
    let Some(want) = &p.want else { return Ok(None) };
    let want = want();
    if want.len() != got.len() {
        return Err(format!("wrong: {} values, the reference has {}", got.len(), want.len()));
    }
    let (abs, rel) = p.tol;
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let d = (g as f64 - w).abs();
        let bad = if w.is_nan() { !g.is_nan() } else { d > abs + rel * w.abs() };
        if bad {
            return Err(format!("wrong: element {i} is {g}, the reference {w}"));
        }
        worst = worst.max(d);
    }
    Ok(Some(worst))
}

/// `repeats` timed runs, sorted: GPU timestamps where the adapter has them, else wall clock with
/// a synchronisation.
fn time(dev: &Device, p: &Pending<'_>, repeats: usize) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        match dev.gpu_time(|| (p.op)().map(drop)) {
            Ok((_, Some(gpu))) => times.push(gpu),
            Ok((_, None)) => times.push(start.elapsed()),
            Err(e) => return Err(format!("error: {e}")),
        }
    }
    times.sort();
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
