//! Prints, for every adapter, the largest error of every loss of the catalogue — forward and
//! backward — against its f64 reference on seeded inputs: a markdown table of max relative error
//! (over values with |ref| ≥ 1e-6) and max absolute error.
//!
//! ```text
//! cargo run --release --example accuracy
//! ```
//!
//! Each loss runs at its quick benchmark shape (e.g. 256×1000 logits, 1 Mi pointwise elements)
//! with every variant of the catalogue (weights, ignored targets, label smoothing, probability
//! targets, options); forward is the per-element (or per-row) loss, `reduction = none` where the
//! loss has it; backward is the input gradient for a random upstream gradient of that shape
//! (and, on rows of their own, the gradients in a loss's other operands: input2, var). A
//! second table gives the fused linear + cross-entropy's errors (loss, lse, dX, dW, db) against
//! the f64 reference of the composition.

use wgpu_loss::catalogue::{LOSSES, LossReduction};
use wgpu_loss::data::{Rng, values};
use wgpu_loss::{Device, Reduction, Result};

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
    println!(
        "| adapter | loss | case | forward max rel | forward max abs | backward max rel | backward max abs |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for dev in Device::all()? {
        let name = dev.name();
        for (l, loss) in LOSSES.iter().enumerate() {
            let shape = loss.bench.iter().find(|s| s.quick).expect("every loss has a quick bench shape");
            let reduction = loss.reductions[0];
            for (v, variant) in loss.variants.iter().enumerate() {
                let seed = (l * 16 + v) as u64 + 1;
                let args = loss.sample(seed, shape.dims, variant, reduction);
                let inputs = args.upload(&dev)?;
                let out = (loss.forward)(&inputs)?;
                let fwd = errors(&out.to_vec()?, &(loss.reference)(&args)?);
                let g = Rng::new(seed + 1000).values(out.numel(), 1.0);
                let gt = dev.tensor(&g, out.shape())?;
                let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                let dx = (loss.backward)(&inputs, &out, &gt)?;
                let bwd = errors(&dx.to_vec()?, &(loss.reference_backward)(&args, &g64)?);
                let reduced = if reduction == LossReduction::None { "" } else { ", mean" };
                println!(
                    "| {name} | {} | {} {:?}{reduced} | {:.1e} | {:.1e} | {:.1e} | {:.1e} |",
                    loss.name, variant.name, shape.dims, fwd.0, fwd.1, bwd.0, bwd.1
                );
                let grads = (loss.backward_operands)(&inputs, &gt)?;
                let wants = (loss.reference_backward_operands)(&args, &g64)?;
                for ((which, grad), want) in loss.operands.iter().zip(grads).zip(wants) {
                    let (rel, abs) = errors(&grad.to_vec()?, &want);
                    println!(
                        "| {name} | {} | {} {:?}{reduced}, gradient in {} | | | {rel:.1e} | {abs:.1e} |",
                        loss.name,
                        variant.name,
                        shape.dims,
                        which.name()
                    );
                }
            }
        }
    }
    linear_cross_entropy_errors()
}

/// The fused LM-head loss against the f64 reference of the composition `linear` → softcap →
/// cross-entropy + z-loss: loss (per row), lse, dX, dW, db, with and without every option.
fn linear_cross_entropy_errors() -> Result<()> {
    use wgpu_loss::LinearCrossEntropy;
    use wgpu_loss::reference::linear_cross_entropy::{self as lce, Options};
    let (n, h, v) = (256, 256, 4000);
    let x = values(n * h, 1.0, 11);
    let w = values(v * h, 3.0 / (h as f32).sqrt(), 12);
    let b = values(v, 0.5, 13);
    let cw: Vec<f32> = (0..v).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
    let mut t: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    t[7] = -100;
    let g = values(n, 1.0, 14);
    // A long tail: classes ≥ 512 biased by −30 and never targets, so their probabilities are
    // ~1e-13 and Cut Cross-Entropy's filter skips their blocks.
    let b_tail: Vec<f32> = b.iter().enumerate().map(|(i, v)| if i >= 512 { v - 30.0 } else { *v }).collect();
    let t_head: Vec<i64> = t.iter().map(|&c| if c < 0 { c } else { c % 512 }).collect();
    println!("\n| adapter | linear_cross_entropy {n}×{h}→{v} | loss | lse | dX | dW | db |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut filter_notes = Vec::new();
    for dev in Device::all()? {
        let (xt, wt, bt, tt, gt) = (
            dev.tensor(&x, &[n, h])?,
            dev.tensor(&w, &[v, h])?,
            dev.tensor(&b, &[v])?,
            dev.indices(&t, &[n])?,
            dev.tensor(&g, &[n])?,
        );
        let all = LinearCrossEntropy::default()
            .weight(dev.tensor(&cw, &[v])?)
            .label_smoothing(0.1)
            .softcap(3.0)
            .z_loss(1e-2);
        let (bt_tail, tt_head) = (dev.tensor(&b_tail, &[v])?, dev.indices(&t_head, &[n])?);
        for (case, l, o) in [
            ("defaults", LinearCrossEntropy::default(), Options::default()),
            // 16-row tiles (64 KiB of scratch), so that some 64-column blocks hold no target.
            (
                "long tail, 64 KiB scratch",
                LinearCrossEntropy::default().max_scratch_bytes(64 << 10),
                Options::default(),
            ),
            (
                "the same with the CCE filter (2⁻²⁸)",
                LinearCrossEntropy::default().max_scratch_bytes(64 << 10).filter(wgpu_loss::CCE_FILTER_EPS),
                Options::default(),
            ),
            (
                "weight, smoothing 0.1, softcap 3, z-loss 0.01",
                all,
                Options {
                    weight: Some(cw.as_slice()),
                    label_smoothing: 0.1,
                    softcap: Some(3.0),
                    z_loss: 1e-2,
                    ..Options::default()
                },
            ),
        ] {
            let l = l.reduction(Reduction::None);
            let o = Options { reduction: Reduction::None, ..o };
            let tail = case.starts_with("long tail") || case.starts_with("the same");
            let (b, bt, t, tt) =
                if tail { (&b_tail, &bt_tail, &t_head, &tt_head) } else { (&b, &bt, &t, &tt) };
            let (loss, lse) = lce::linear_cross_entropy(&x, &w, Some(b), t, h, &o)?;
            let (dx, dw, db) = lce::linear_cross_entropy_backward(&x, &w, Some(b), t, h, &o, &g)?;
            let (out, grads) = l.forward_backward(&xt, &wt, Some(bt), tt, &gt)?;
            if l.filter_eps.is_some() {
                // What the filter changed: dW values that differ from the unfiltered run.
                let exact = LinearCrossEntropy { filter_eps: None, ..l.clone() };
                let plain = exact.forward_backward(&xt, &wt, Some(bt), tt, &gt)?.1.weight.to_vec()?;
                let got = grads.weight.to_vec()?;
                let differ = got.iter().zip(&plain).filter(|(a, b)| a != b).count();
                let change = got.iter().zip(&plain).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                let largest = plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                filter_notes.push(format!(
                    "{}: the filter changed {differ} of {} dW values, by at most {change:.1e} \
                     (the largest |dW| is {largest:.1e})",
                    dev.name(),
                    got.len()
                ));
            }
            let cell = |e: (f64, f64)| format!("{:.1e} ({:.1e})", e.0, e.1);
            println!(
                "| {} | {case} | {} | {} | {} | {} | {} |",
                dev.name(),
                cell(errors(&out.loss.to_vec()?, &loss)),
                cell(errors(&out.lse.to_vec()?, &lse)),
                cell(errors(&grads.input.to_vec()?, &dx)),
                cell(errors(&grads.weight.to_vec()?, &dw)),
                cell(errors(&grads.bias.to_vec()?, &db)),
            );
        }
    }
    for note in filter_notes {
        println!("\n{note}");
    }
    Ok(())
}
