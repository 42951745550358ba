//! Prints, for every adapter, the largest error of each kernel against its f64 reference on
//! fixed seeded inputs: a markdown table of max relative error (over values with |ref| ≥ 1e-6)
//! and max absolute error.
//!
//! ```text
//! cargo run --release --example accuracy
//! ```

use wgpu_loss::reference::pointwise::{self, Pointwise};
use wgpu_loss::{
    BceWithLogits, CrossEntropy, Device, Linear, LinearKernel, Nll, Reduction, Result, reference,
};

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

/// (max relative error where |want| ≥ 1e-6, max absolute error)
fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).fold((0.0, 0.0), |(r, a), (&g, &w)| {
        let d = (g as f64 - w).abs();
        let rel = if w.abs() >= 1e-6 { d / w.abs() } else { 0.0 };
        (f64::max(r, rel), f64::max(a, d))
    })
}

fn main() -> Result<()> {
    let (n, c) = (256, 1000);
    let logits = values(n * c, 4.0, 1);
    let mut targets: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
    targets[5] = -100;
    let class_w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
    let big = values(n * c, 1e4, 2);
    let probs: Vec<f32> = values(n * c, 0.5, 3).iter().map(|v| v + 0.5).collect();
    let (m, k, o) = (200, 300, 150);
    let xl = values(m * k, 1.0, 4);
    let wl = values(o * k, 1.0, 5);
    let bl = values(o, 1.0, 6);
    let logp = reference::log_softmax::log_softmax(&logits, c);
    let logp32: Vec<f32> = logp.iter().map(|&v| v as f32).collect();

    println!("| adapter | kernel | case | max rel err | max abs err |");
    println!("|---|---|---|---:|---:|");
    for dev in Device::all()? {
        let name = dev.name();
        let row = |kernel: &str, case: &str, got: Vec<f32>, want: Vec<f64>| {
            let (r, a) = errors(&got, &want);
            println!("| {name} | {kernel} | {case} | {r:.2e} | {a:.2e} |");
        };
        let x = dev.tensor(&logits, &[n, c])?;
        let t = dev.indices(&targets, &[n])?;
        let w = dev.tensor(&class_w, &[c])?;
        for (kernel, label) in [(LinearKernel::Tiled, "tiled"), (LinearKernel::Blocked, "blocked")] {
            let got = Linear { kernel }
                .forward(
                    &dev.tensor(&xl, &[m, k])?,
                    &dev.tensor(&wl, &[o, k])?,
                    Some(&dev.tensor(&bl, &[o])?),
                )?
                .to_vec()?;
            row(
                "linear",
                &format!("{m}x{k} · {o}x{k}ᵀ + b, {label}"),
                got,
                reference::linear::linear(&xl, &wl, Some(&bl), k),
            );
        }
        row("log_softmax", "256x1000, |x| ≤ 4", wgpu_loss::log_softmax(&x)?.to_vec()?, logp.clone());
        let xb = dev.tensor(&big, &[n, c])?;
        row(
            "log_softmax",
            "256x1000, |x| ≤ 1e4",
            wgpu_loss::log_softmax(&xb)?.to_vec()?,
            reference::log_softmax::log_softmax(&big, c),
        );
        row(
            "softmax",
            "256x1000, |x| ≤ 4",
            wgpu_loss::softmax(&x)?.to_vec()?,
            reference::log_softmax::softmax(&logits, c),
        );
        for (red, label) in [(Reduction::None, "none"), (Reduction::Mean, "mean")] {
            let got = CrossEntropy::default().weight(w.clone()).reduction(red).forward(&x, &t)?.to_vec()?;
            let want =
                reference::cross_entropy::cross_entropy(&logits, c, &targets, Some(&class_w), -100, red)?;
            row("cross_entropy", &format!("256x1000, weighted, ignore, {label}"), got, want);
        }
        let got = CrossEntropy::default().reduction(Reduction::None).forward(&xb, &t)?.to_vec()?;
        row(
            "cross_entropy",
            "256x1000, |x| ≤ 1e4, none",
            got,
            reference::cross_entropy::cross_entropy(&big, c, &targets, None, -100, Reduction::None)?,
        );
        let got = Nll::default().weight(w.clone()).forward(&dev.tensor(&logp32, &[n, c])?, &t)?.to_vec()?;
        row(
            "nll",
            "256x1000, weighted, mean",
            got,
            reference::nll::nll(&logp32, c, &targets, Some(&class_w), -100, Reduction::Mean)?,
        );
        let y = dev.tensor(&probs, &[n, c])?;
        for (xs, label) in [(&logits, "|x| ≤ 4"), (&big, "|x| ≤ 1e4")] {
            let got = BceWithLogits::default()
                .reduction(Reduction::None)
                .forward(&dev.tensor(xs, &[n, c])?, &y)?
                .to_vec()?;
            row(
                "bce_with_logits",
                &format!("256x1000, {label}, none"),
                got,
                pointwise::forward(Pointwise::BceWithLogits, xs, &probs, c, None, None, Reduction::None, 0.0),
            );
        }
        let pw: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 500.0).collect();
        let got = BceWithLogits::default().pos_weight(dev.tensor(&pw, &[c])?).forward(&x, &y)?.to_vec()?;
        row(
            "bce_with_logits",
            "256x1000, pos_weight, mean",
            got,
            pointwise::forward(
                Pointwise::BceWithLogits,
                &logits,
                &probs,
                c,
                None,
                Some(&pw),
                Reduction::Mean,
                logits.len() as f64,
            ),
        );
        for (red, label) in [(Reduction::None, "none"), (Reduction::Mean, "mean")] {
            row(
                "mse",
                &format!("256000, {label}"),
                wgpu_loss::mse(&x, &y, red)?.to_vec()?,
                pointwise::forward(Pointwise::Mse, &logits, &probs, c, None, None, red, logits.len() as f64),
            );
        }
        row("sum", "256000", vec![wgpu_loss::sum(&x)?.item()?], vec![reference::reduce::sum(&logits)]);
    }
    Ok(())
}
