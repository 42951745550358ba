//! Prints, for every adapter, the largest error of every loss — forward and backward — against
//! its f64 reference on fixed seeded inputs: a markdown table of max relative error (over values
//! with |ref| ≥ 1e-6) and max absolute error.
//!
//! ```text
//! cargo run --release --example accuracy
//! ```
//!
//! Forward is the per-element (or per-row) loss, `reduction = none`; backward is the input
//! gradient (and the target gradient where there is one) for a random upstream gradient of that
//! shape. A second table gives the fused linear + cross-entropy's errors (loss, lse, dX, dW,
//! db) against the f64 reference of the composition.

use wgpu_loss::reference::pointwise::{self, Pointwise};
use wgpu_loss::reference::{cross_entropy as ce, log_softmax as ls, nll as nll_ref};
use wgpu_loss::{
    Bce, BceWithLogits, CrossEntropy, Device, Huber, KlDiv, KlReduction, L1, LogSoftmax, Mse, Nll, Reduction,
    Result, SmoothL1, Softmax, Tensor,
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

fn both(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0.max(b.0), a.1.max(b.1))
}

fn main() -> Result<()> {
    let (n, c) = (256, 1000);
    let shape = [n, c];
    let x = values(n * c, 4.0, 1);
    let y = values(n * c, 4.0, 2);
    let probs: Vec<f32> = values(n * c, 0.5, 3).iter().map(|v| v + 0.5).collect();
    let labels: Vec<f32> = values(n * c, 0.5, 8).iter().map(|v| v + 0.5).collect();
    let g = values(n * c, 1.0, 4);
    let g_rows = values(n, 1.0, 5);
    let mut ids: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
    ids[5] = -100;
    let class_w: Vec<f32> = (0..c).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
    let pw: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 500.0).collect();
    let logp = ls::log_softmax(&x, c);
    let logp32: Vec<f32> = logp.iter().map(|&v| v as f32).collect();
    // K-dim: (8, 50, 16) logits with (8, 16) targets
    let kshape = [8usize, 50, 16];
    let kx = values(8 * 50 * 16, 4.0, 6);
    let kids: Vec<i64> = (0..8 * 16).map(|i| ((i * 31) % 50) as i64).collect();
    let kg = values(8 * 16, 1.0, 7);
    let none = Reduction::None;

    println!(
        "| adapter | loss | case | forward max rel | forward max abs | backward max rel | backward max abs |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for dev in Device::all()? {
        let name = dev.name();
        let t = |v: &[f32], s: &[usize]| dev.tensor(v, s);
        let (xt, yt, pt, gt) = (t(&x, &shape)?, t(&y, &shape)?, t(&probs, &shape)?, t(&g, &shape)?);
        let row = |loss: &str, case: &str, fwd: (f64, f64), bwd: (f64, f64)| {
            println!(
                "| {name} | {loss} | {case} | {:.1e} | {:.1e} | {:.1e} | {:.1e} |",
                fwd.0, fwd.1, bwd.0, bwd.1
            );
        };
        // The pointwise losses: forward (none), and both gradients where the loss has them.
        let pointwise_case = |loss: Pointwise, a: &[f32], b: &[f32], at: &Tensor, bt: &Tensor| -> Result<_> {
            let (fwd, dx, dy) = match loss {
                Pointwise::Mse => {
                    let l = Mse { reduction: none };
                    let (dx, dy) = l.backward_with_target(at, bt, &gt)?;
                    (l.forward(at, bt)?, dx, Some(dy))
                }
                Pointwise::L1 => {
                    let l = L1 { reduction: none };
                    let (dx, dy) = l.backward_with_target(at, bt, &gt)?;
                    (l.forward(at, bt)?, dx, Some(dy))
                }
                Pointwise::SmoothL1(beta) => {
                    let l = SmoothL1 { beta: beta as f32, reduction: none };
                    let (dx, dy) = l.backward_with_target(at, bt, &gt)?;
                    (l.forward(at, bt)?, dx, Some(dy))
                }
                Pointwise::Huber(delta) => {
                    let l = Huber { delta: delta as f32, reduction: none };
                    let (dx, dy) = l.backward_with_target(at, bt, &gt)?;
                    (l.forward(at, bt)?, dx, Some(dy))
                }
                Pointwise::Bce => {
                    let l = Bce::default().reduction(none);
                    (l.forward(at, bt)?, l.backward(at, bt, &gt)?, None)
                }
                Pointwise::KlDiv(log_target) => {
                    let l = KlDiv { log_target, reduction: KlReduction::None };
                    let (dx, dy) = l.backward_with_target(at, bt, &gt)?;
                    (l.forward(at, bt)?, dx, Some(dy))
                }
                _ => unreachable!("handled with its options below"),
            };
            let want = pointwise::forward(loss, a, b, c, None, None, none, 0.0);
            let (wx, wy) = pointwise::backward(loss, a, b, c, None, None, &g, none, 0.0);
            let mut bwd = errors(&dx.to_vec()?, &wx);
            if let Some(dy) = dy {
                bwd = both(bwd, errors(&dy.to_vec()?, &wy));
            }
            Ok((errors(&fwd.to_vec()?, &want), bwd))
        };
        for (label, loss) in [
            ("mse", Pointwise::Mse),
            ("l1", Pointwise::L1),
            ("smooth_l1", Pointwise::SmoothL1(1.0)),
            ("huber", Pointwise::Huber(1.0)),
        ] {
            let (f, b) = pointwise_case(loss, &x, &y, &xt, &yt)?;
            row(label, "256×1000, |x| ≤ 4", f, b);
        }
        let (f, b) = pointwise_case(Pointwise::Bce, &probs, &labels, &pt, &t(&labels, &shape)?)?;
        row("bce", "256×1000, p and y ∈ (0, 1)", f, b);
        let (f, b) = pointwise_case(Pointwise::KlDiv(false), &logp32, &probs, &t(&logp32, &shape)?, &pt)?;
        row("kl_div", "256×1000", f, b);
        let (f, b) = pointwise_case(
            Pointwise::KlDiv(true),
            &logp32,
            &logp32,
            &t(&logp32, &shape)?,
            &t(&logp32, &shape)?,
        )?;
        row("kl_div", "256×1000, log_target", f, b);
        {
            let l =
                BceWithLogits::default().reduction(none).weight(t(&class_w, &[c])?).pos_weight(t(&pw, &[c])?);
            let want = pointwise::forward(
                Pointwise::BceWithLogits,
                &x,
                &probs,
                c,
                Some(&class_w),
                Some(&pw),
                none,
                0.0,
            );
            let (wx, _) = pointwise::backward(
                Pointwise::BceWithLogits,
                &x,
                &probs,
                c,
                Some(&class_w),
                Some(&pw),
                &g,
                none,
                0.0,
            );
            let f = errors(&l.forward(&xt, &pt)?.to_vec()?, &want);
            let b = errors(&l.backward(&xt, &pt, &gt)?.to_vec()?, &wx);
            row("bce_with_logits", "256×1000, weight + pos_weight", f, b);
        }
        // cross_entropy with class ids: weights, label smoothing 0.1, an ignored row.
        {
            let l = CrossEntropy::default().reduction(none).weight(t(&class_w, &[c])?).label_smoothing(0.1);
            let it = dev.indices(&ids, &[n])?;
            let want = ce::cross_entropy_nd(&x, &shape, &ids, Some(&class_w), -100, 0.1, none)?;
            let wx = ce::cross_entropy_backward(&x, &shape, &ids, Some(&class_w), -100, 0.1, none, &g_rows)?;
            let f = errors(&l.forward(&xt, &it)?.to_vec()?, &want);
            let b = errors(&l.backward(&xt, &it, &t(&g_rows, &[n])?)?.to_vec()?, &wx);
            row("cross_entropy", "256×1000, weight + smoothing 0.1 + ignore", f, b);
            let lk = CrossEntropy::default().reduction(none).label_smoothing(0.1);
            let (kxt, kit) = (t(&kx, &kshape)?, dev.indices(&kids, &[8, 16])?);
            let want = ce::cross_entropy_nd(&kx, &kshape, &kids, None, -100, 0.1, none)?;
            let wx = ce::cross_entropy_backward(&kx, &kshape, &kids, None, -100, 0.1, none, &kg)?;
            let f = errors(&lk.forward(&kxt, &kit)?.to_vec()?, &want);
            let b = errors(&lk.backward(&kxt, &kit, &t(&kg, &[8, 16])?)?.to_vec()?, &wx);
            row("cross_entropy", "K-dim (8, 50, 16), smoothing 0.1", f, b);
            let lp = CrossEntropy::default().reduction(none).weight(t(&class_w, &[c])?).label_smoothing(0.1);
            let want = ce::cross_entropy_probs(&x, &shape, &probs, Some(&class_w), 0.1, none);
            let (wx, wy) =
                ce::cross_entropy_probs_backward(&x, &shape, &probs, Some(&class_w), 0.1, none, &g_rows);
            let f = errors(&lp.forward_probs(&xt, &pt)?.to_vec()?, &want);
            let (dx, dy) = lp.backward_probs(&xt, &pt, &t(&g_rows, &[n])?)?;
            let b = both(errors(&dx.to_vec()?, &wx), errors(&dy.to_vec()?, &wy));
            row("cross_entropy", "256×1000, probabilities, weight + smoothing", f, b);
            let ln = Nll::default().reduction(none).weight(t(&class_w, &[c])?);
            let lpt = t(&logp32, &shape)?;
            let want = nll_ref::nll_nd(&logp32, &shape, &ids, Some(&class_w), -100, none)?;
            let wx = nll_ref::nll_backward(&logp32, &shape, &ids, Some(&class_w), -100, none, &g_rows)?;
            let f = errors(&ln.forward(&lpt, &it)?.to_vec()?, &want);
            let b = errors(&ln.backward(&lpt, &it, &t(&g_rows, &[n])?)?.to_vec()?, &wx);
            row("nll", "256×1000, weight + ignore", f, b);
        }
        for dim in [1isize, 0] {
            let d = dim as usize;
            let y = LogSoftmax::default().dim(dim).forward(&xt)?;
            let yv = y.to_vec()?;
            let f = errors(&yv, &ls::log_softmax_dim(&x, &shape, d));
            let b = errors(
                &LogSoftmax::default().dim(dim).backward(&y, &gt)?.to_vec()?,
                &ls::log_softmax_backward(&yv, &g, &shape, d),
            );
            row("log_softmax", &format!("256×1000, dim {dim}"), f, b);
            let p = Softmax::default().dim(dim).forward(&xt)?;
            let pv = p.to_vec()?;
            let f = errors(&pv, &ls::softmax_dim(&x, &shape, d));
            let b = errors(
                &Softmax::default().dim(dim).backward(&p, &gt)?.to_vec()?,
                &ls::softmax_backward(&pv, &g, &shape, d),
            );
            row("softmax", &format!("256×1000, dim {dim}"), f, b);
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
            .class_weight(dev.tensor(&cw, &[v])?)
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
                    class_weight: Some(cw.as_slice()),
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
