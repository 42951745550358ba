//! The bench report: one adapter's run as written to `--json` and read by `compare`, and its
//! table on stdout.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::cli::info::AdapterReport;
use crate::dtype::DType;

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
    /// The element type of the inputs: "f32", "f16" or "bf16" (reports before the dtype axis
    /// have none: f32).
    #[serde(default = "f32_name")]
    pub dtype: String,
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

fn f32_name() -> String {
    "f32".into()
}

impl Case {
    /// The shape's name, followed by the element type when it is not f32: the row a case takes
    /// in tables and charts.
    pub fn shape_label(&self) -> String {
        if self.dtype == "f32" { self.shape.clone() } else { format!("{} {}", self.shape, self.dtype) }
    }
}

/// A case that was not timed, and why.
pub(super) fn skipped_case(kernel: &str, direction: &str, shape: &str, dtype: DType, why: &str) -> Case {
    Case {
        kernel: kernel.into(),
        direction: direction.into(),
        shape: shape.into(),
        dtype: dtype.name().into(),
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

/// The report as a markdown table on stdout.
pub(super) fn print_table(r: &Report) {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header([
        "kernel",
        "direction",
        "shape",
        "dtype",
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
            c.dtype.clone(),
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
pub(super) fn utc_now() -> String {
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
