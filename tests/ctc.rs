//! The CTC loss on every adapter against the f64 reference and PyTorch's values: padded and
//! concatenated targets, unbatched, every reduction, repeated labels, empty targets, a target
//! length equal to the input length, impossible alignments with and without `zero_infinity`,
//! a blank other than 0, and the splits of time and sequences.

mod common;

use common::{Rng, Tol, assert_close, devices, label};
use wgpu_loss::reference::ctc::{self as reference, Sequence};
use wgpu_loss::{Ctc, Device, Reduction};

/// log_softmax over C of random logits, `(T, N, C)`, as f32.
fn log_probs(rng: &mut Rng, t: usize, n: usize, c: usize) -> Vec<f32> {
    let z = rng.values(t * n * c, 3.0);
    z.chunks(c)
        .flat_map(|row| {
            let m = row.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| (v as f64 - lse) as f32).collect::<Vec<_>>()
        })
        .collect()
}

/// A case: (T, N, C), padded targets (N, S), input and target lengths.
struct Case {
    shape: (usize, usize, usize),
    targets: Vec<i64>,
    s: usize,
    input_lengths: Vec<i64>,
    target_lengths: Vec<i64>,
    blank: usize,
}

/// `assert_close` where +inf and NaN must match exactly (impossible alignments).
fn close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !w.is_finite() || !g.is_finite() {
            assert!(g.is_nan() && w.is_nan() || g as f64 == w, "{what}: element {i}: got {g}, want {w}");
        }
    }
    let keep: Vec<usize> = (0..got.len()).filter(|&i| want[i].is_finite()).collect();
    let got: Vec<f32> = keep.iter().map(|&i| got[i]).collect();
    let want: Vec<f64> = keep.iter().map(|&i| want[i]).collect();
    assert_close(what, &got, &want, tol);
}

fn check(dev: &Device, case: &Case, lp: &[f32], what: &str) {
    let (t, n, c) = case.shape;
    let lp64: Vec<f64> = lp.iter().map(|&v| v as f64).collect();
    let seqs: Vec<Sequence<'_>> = (0..n)
        .map(|k| Sequence {
            input_length: case.input_lengths[k] as usize,
            targets: &case.targets[k * case.s..k * case.s + case.target_lengths[k] as usize],
        })
        .collect();
    let x = dev.tensor(lp, &[t, n, c]).unwrap();
    let targets = dev.indices(&case.targets, &[n, case.s]).unwrap();
    for zero_infinity in [false, true] {
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            let loss = Ctc { blank: case.blank, zero_infinity, reduction, ..Default::default() };
            let what = format!("{what} zero_infinity={zero_infinity} {reduction:?} on {}", label(dev));
            let got = loss.forward(&x, &targets, &case.input_lengths, &case.target_lengths).unwrap();
            let want = reference::ctc(&lp64, (n, c), &seqs, case.blank, zero_infinity, reduction);
            close(&what, &got.to_vec().unwrap(), &want, Tol::scaled(10.0));
            let g: Vec<f32> = if reduction == Reduction::None {
                (0..n).map(|k| 0.5 + k as f32).collect()
            } else {
                vec![1.5]
            };
            let gt = dev.tensor(&g, got.shape()).unwrap();
            let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            let grad = loss.backward(&x, &targets, &case.input_lengths, &case.target_lengths, &gt).unwrap();
            let want =
                reference::ctc_backward(&lp64, (n, c), &seqs, case.blank, zero_infinity, &g64, reduction);
            close(&format!("{what} gradient"), &grad.to_vec().unwrap(), &want, Tol::scaled(30.0));
        }
    }
}

#[test]
fn ctc_matches_the_reference_on_every_adapter() {
    let mut rng = Rng::new(7);
    // Repeated labels, an empty target, target length = input length, an impossible one
    // (3 labels with a repeat in 3 frames), a short input, blank in the targets' classes.
    let cases = [
        Case {
            shape: (12, 5, 6),
            targets: vec![1, 1, 2, 0, 3, 4, 5, 1, 0, 0, 0, 0, 2, 2, 2, 0, 5, 4, 3, 2],
            s: 4,
            input_lengths: vec![12, 12, 12, 3, 9],
            target_lengths: vec![3, 4, 0, 3, 4],
            blank: 0,
        },
        Case {
            shape: (7, 2, 4),
            targets: vec![0, 1, 0, 3, 1, 2, 0, 3],
            s: 4,
            input_lengths: vec![7, 4],
            target_lengths: vec![4, 4],
            blank: 2,
        },
    ];
    for dev in devices() {
        for (k, case) in cases.iter().enumerate() {
            let (t, n, c) = case.shape;
            let lp = log_probs(&mut rng, t, n, c);
            check(dev, case, &lp, &format!("case {k}"));
        }
    }
}
