//! `wgpu-loss compare A.json B.json …`: bench reports from several machines merged into one
//! markdown table (kernel × adapter: GB/s or GFLOP/s and % of the adapter's read_sum yardstick)
//! and, with `--chart`, an SVG bar chart of the % of yardstick.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use plotters::prelude::*;

use super::bench::{Case, Report};
use super::common::CliError;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Reports written by `wgpu-loss bench --json`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Also draw an SVG bar chart of each case's % of its adapter's yardstick.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

fn load(path: &PathBuf) -> Result<Vec<Report>, CliError> {
    let at = |msg: String| CliError(format!("{}: {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| at(format!("cannot read: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| at(format!("not JSON: {e}")))?;
    let list = if value.is_array() { value } else { serde_json::Value::Array(vec![value]) };
    serde_json::from_value(list).map_err(|e| at(format!("not a wgpu-loss bench report: {e}")))
}

/// The column label of a report: adapter, backend, and the date when two share a name.
fn label(r: &Report) -> String {
    format!("{} ({})", r.adapter.name, r.adapter.backend)
}

fn cell(c: &Case) -> String {
    if c.status != "ok" {
        return c.status.split(':').next().unwrap_or("—").to_string();
    }
    let rate = match (c.gbs, c.gflops) {
        (Some(g), _) => format!("{g:.2} GB/s"),
        (_, Some(f)) => format!("{f:.2} GFLOP/s"),
        _ => "—".into(),
    };
    match c.ratio_to_read_sum {
        Some(r) => format!("{rate} ({:.0}%)", r * 100.0),
        None => rate,
    }
}

pub fn run(args: &CompareArgs) -> Result<(), CliError> {
    let mut reports = Vec::new();
    for p in &args.reports {
        reports.extend(load(p)?);
    }
    let mut labels: Vec<String> = Vec::new();
    for r in &reports {
        let mut l = label(r);
        if labels.contains(&l) {
            l = format!("{l} {}", r.date);
        }
        labels.push(l);
    }
    // Rows in first-seen order: (kernel, direction, shape).
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut cells: BTreeMap<(usize, (String, String, String)), &Case> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        for c in r.yardsticks.iter().chain(&r.cases) {
            let key = (c.kernel.clone(), c.direction.clone(), c.shape_label());
            if !rows.contains(&key) {
                rows.push(key.clone());
            }
            cells.insert((i, key), c);
        }
    }
    let mut out = String::new();
    out.push_str("| kernel | direction | shape |");
    for l in &labels {
        out.push_str(&format!(" {l} |"));
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---:|".repeat(labels.len()));
    out.push('\n');
    for key in &rows {
        out.push_str(&format!("| {} | {} | {} |", key.0, key.1, key.2));
        for i in 0..reports.len() {
            let text = cells.get(&(i, key.clone())).map_or("—".to_string(), |c| cell(c));
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out.push_str(
        "\nRates are medians; (%) is the rate over the adapter's own read_sum yardstick in the same run.\n",
    );
    for (r, l) in reports.iter().zip(&labels) {
        out.push_str(&format!(
            "- {l}: {} {}, timing {}, wgpu-loss {} ({}), {}{}\n",
            r.adapter.driver,
            r.adapter.driver_info,
            r.timing,
            r.version,
            r.git_revision,
            r.date,
            if r.quick { ", quick run" } else { "" }
        ));
    }
    print!("{out}");
    if let Some(path) = &args.chart {
        chart(path, &reports, &labels, &rows, &cells)?;
    }
    Ok(())
}

type Key = (String, String, String);

fn chart(
    path: &PathBuf,
    reports: &[Report],
    labels: &[String],
    rows: &[Key],
    cells: &BTreeMap<(usize, Key), &Case>,
) -> Result<(), CliError> {
    let at = |e: String| CliError(format!("--chart {}: {e}", path.display()));
    // Only cases with a yardstick ratio (memory-bound kernels).
    let rows: Vec<&Key> = rows
        .iter()
        .filter(|k| {
            (0..reports.len())
                .any(|i| cells.get(&(i, (*k).clone())).and_then(|c| c.ratio_to_read_sum).is_some())
        })
        .collect();
    if rows.is_empty() {
        return Err(at("no case has a yardstick ratio to draw".into()));
    }
    let max = rows
        .iter()
        .flat_map(|k| {
            (0..reports.len()).filter_map(|i| cells.get(&(i, (*k).clone())).and_then(|c| c.ratio_to_read_sum))
        })
        .fold(0.0f64, f64::max)
        * 100.0;
    let width = 200 + 28 * rows.len() as u32 * reports.len().max(1) as u32;
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (width.max(640), 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| at(e.to_string()))?;
        let n = rows.len();
        let mut ctx = ChartBuilder::on(&root)
            .caption("% of each adapter's read_sum yardstick (median)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(150)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..max * 1.1)
            .map_err(|e| at(e.to_string()))?;
        let names: Vec<String> = rows.iter().map(|k| format!("{} {} {}", k.0, k.1, k.2)).collect();
        ctx.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.0).abs() < 1e-9 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_style(("sans-serif", 10).into_font().transform(FontTransform::Rotate90))
            .y_desc("% of read_sum")
            .draw()
            .map_err(|e| at(e.to_string()))?;
        let per = reports.len() as f64;
        for (i, l) in labels.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let bars = rows.iter().enumerate().filter_map(|(j, k)| {
                let v = cells.get(&(i, (*k).clone())).and_then(|c| c.ratio_to_read_sum)? * 100.0;
                let x0 = j as f64 + 0.1 + 0.8 * i as f64 / per;
                Some(Rectangle::new([(x0, 0.0), (x0 + 0.8 / per, v)], color.filled()))
            });
            ctx.draw_series(bars)
                .map_err(|e| at(e.to_string()))?
                .label(l.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| at(e.to_string()))?;
        root.present().map_err(|e| at(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| at(e.to_string()))
}
