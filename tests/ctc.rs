//! The CTC loss on every adapter against the f64 reference and PyTorch's values: padded and
//! concatenated targets, unbatched, every reduction, repeated labels, empty targets, a target
//! length equal to the input length, impossible alignments with and without `zero_infinity`,
//! a blank other than 0, and the splits of time and sequences; `forward_backward` against
//! `forward` and `backward`.

use crate::common;

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
    let t = case.shape.0;
    // γ = exp(α + β + nll − lp) carries the f32 rounding of log-likelihoods that grow with T (an
    // ulp of 300 is 3e-5), relative in γ: a tolerance growing with T.
    let every = [Reduction::None, Reduction::Mean, Reduction::Sum];
    let tol = Tol { abs: 1e-6 * t as f64, rel: 3e-6 * t as f64 };
    check_within(dev, case, lp, what, (&[false, true], &every), tol)
}

/// [`check`] for the given zero_infinity and reduction choices, with the gradient's tolerance.
fn check_within(
    dev: &Device,
    case: &Case,
    lp: &[f32],
    what: &str,
    (zero_infinities, reductions): (&[bool], &[Reduction]),
    grad_tol: Tol,
) {
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
    for &zero_infinity in zero_infinities {
        for &reduction in reductions {
            let loss = Ctc { blank: case.blank, zero_infinity, reduction, ..Default::default() };
            let what = format!("{what} zero_infinity={zero_infinity} {reduction:?} on {}", label(dev));
            // Both directions are recorded before either is read (under an adversarial pool the
            // upstream gradient's upload reuses a buffer of the forward's).
            let got = loss.forward(&x, &targets, &case.input_lengths, &case.target_lengths).unwrap();
            let g: Vec<f32> = if reduction == Reduction::None {
                (0..n).map(|k| 0.5 + k as f32).collect()
            } else {
                vec![1.5]
            };
            let gt = dev.tensor(&g, got.shape()).unwrap();
            let grad = loss.backward(&x, &targets, &case.input_lengths, &case.target_lengths, &gt).unwrap();
            let (il, tl) = (&case.input_lengths, &case.target_lengths);
            let (both, both_grad) = loss.forward_backward(&x, &targets, il, tl, &gt).unwrap();
            let want = reference::ctc(&lp64, (n, c), &seqs, case.blank, zero_infinity, reduction);
            // forward_backward runs the same kernels in the same order: the same bits.
            let bits =
                |t: &wgpu_loss::Tensor| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&both), bits(&got), "{what}: forward_backward's loss");
            assert_eq!(bits(&both_grad), bits(&grad), "{what}: forward_backward's gradient");
            close(&what, &got.to_vec().unwrap(), &want, Tol::scaled(10.0));
            let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            let want =
                reference::ctc_backward(&lp64, (n, c), &seqs, case.blank, zero_infinity, &g64, reduction);
            close(&format!("{what} gradient"), &grad.to_vec().unwrap(), &want, grad_tol);
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
    // Again under an adversarial pool (every buffer the one released last, nothing submitted
    // before a read): the host lengths and targets are uploaded inside the operation.
    for dev in devices().iter().chain(common::adversarial_devices()) {
        for (k, case) in cases.iter().enumerate() {
            let (t, n, c) = case.shape;
            let lp = log_probs(&mut rng, t, n, c);
            check(dev, case, &lp, &format!("case {k}"));
        }
    }
}

/// The float32 log-probabilities, as Python printed them (`%.8g`: each rounds to its float32).
#[allow(clippy::excessive_precision)]
const LP: [f32; 30] = [
    -1.1122675,
    -0.67574167,
    -1.8176401,
    -1.2552826,
    -0.66197103,
    -1.6135907,
    -0.205299,
    -3.4225578,
    -1.8775307,
    -1.3423487,
    -0.78787124,
    -1.2589338,
    -0.62247455,
    -1.3312854,
    -1.6132072,
    -2.2317729,
    -0.90243936,
    -0.71932095,
    -1.4990056,
    -0.80216986,
    -1.1138494,
    -1.453675,
    -0.61231619,
    -1.4952328,
    -1.3873003,
    -0.9744572,
    -0.98656785,
    -0.55004674,
    -2.1897583,
    -1.1675338,
];
/// PyTorch's gradient for an upstream gradient of ones per sequence (reduction none and sum).
const GRAD_SUM: [f64; 30] = [
    0.264962028,
    -0.4273705601,
    0.1624085725,
    -0.429987132,
    0.515833607,
    -0.08584642111,
    -0.1397112451,
    -0.01325611669,
    0.152967363,
    -0.1048765088,
    0.4548119503,
    -0.3499354719,
    -0.1293397864,
    -0.06990776949,
    0.1992475573,
    -0.01429625746,
    0.4055791003,
    -0.3912828847,
    -0.02769331661,
    -0.300599482,
    0.3282927949,
    -0.3029393603,
    0.5420938209,
    -0.2391544216,
    -0.09544395518,
    -0.2774102438,
    0.3728541872,
    0.0,
    0.0,
    0.0,
];
const GRAD_MEAN: [f64; 30] = [
    0.06624050699,
    -0.10684264,
    0.04060214313,
    -0.214993566,
    0.2579168035,
    -0.04292321055,
    -0.03492781126,
    -0.003314029171,
    0.03824184075,
    -0.0524382544,
    0.2274059751,
    -0.1749677359,
    -0.03233494661,
    -0.01747694237,
    0.04981188932,
    -0.00714812873,
    0.2027895502,
    -0.1956414424,
    -0.006923329153,
    -0.0751498705,
    0.08207319872,
    -0.1514696801,
    0.2710469105,
    -0.1195772108,
    -0.02386098879,
    -0.06935256096,
    0.09321354679,
    0.0,
    0.0,
    0.0,
];

/// PyTorch's own values, from torch 2.15 (CPU) in float64 on the float32 log-probabilities LP:
/// ```python
/// import torch, torch.nn.functional as F
/// torch.manual_seed(3)
/// lp32 = torch.randn(5, 2, 3).log_softmax(2).float()          # LP
/// tg = torch.tensor([[1, 1], [2, 0]]); il = torch.tensor([5, 4]); tl = torch.tensor([2, 1])
/// for red in ["none", "mean", "sum"]:
///     x = lp32.double().requires_grad_()
///     l = F.ctc_loss(x, tg, il, tl, blank=0, reduction=red)
///     print(red, l); l.sum().backward(); print(x.grad.reshape(-1))
/// x = lp32[:4, :1].double().requires_grad_()
/// l = F.ctc_loss(x, torch.tensor([[1, 1, 1]]), torch.tensor([4]), torch.tensor([3]), blank=2,
///                reduction="sum", zero_infinity=True)
/// print(l); l.backward(); print(x.grad)                       # 0 and zeros
/// ```
/// Sequence 0 repeats its label (1, 1); sequence 1 stops at t = 4 (its gradient is 0 there).
#[test]
fn pytorch_golden_values() {
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&LP, &[5, 2, 3]).unwrap();
        let padded = dev.indices(&[1i64, 1, 2, 0], &[2, 2]).unwrap();
        let concatenated = dev.indices(&[1i64, 1, 2], &[3]).unwrap();
        for targets in [&padded, &concatenated] {
            let what = format!("targets {:?} on {}", targets.shape(), label(dev));
            for (reduction, want, grad) in [
                (Reduction::None, vec![2.039661409, 2.922209544], &GRAD_SUM),
                (Reduction::Mean, vec![1.971020124], &GRAD_MEAN),
                (Reduction::Sum, vec![4.961870953], &GRAD_SUM),
            ] {
                let loss = Ctc::default().reduction(reduction);
                let out = loss.forward(&x, targets, &[5, 4], &[2, 1]).unwrap();
                close(
                    &format!("{what} {reduction:?}"),
                    &out.to_vec().unwrap(),
                    &want,
                    Tol { abs: 1e-6, rel: 1e-6 },
                );
                let ones = dev.tensor(&vec![1.0; out.numel()], out.shape()).unwrap();
                let got = loss.backward(&x, targets, &[5, 4], &[2, 1], &ones).unwrap().to_vec().unwrap();
                close(&format!("{what} {reduction:?} gradient"), &got, grad, Tol { abs: 1e-6, rel: 1e-6 });
            }
        }
        // Impossible (a repeated label needs a blank between): 0 and a zero gradient.
        let lp4: Vec<f32> = (0..4).flat_map(|t| LP[t * 6..t * 6 + 3].to_vec()).collect();
        let x = dev.tensor(&lp4, &[4, 1, 3]).unwrap();
        let t = dev.indices(&[1i64, 1, 1], &[1, 3]).unwrap();
        let loss = Ctc { blank: 2, zero_infinity: true, reduction: Reduction::Sum, ..Default::default() };
        assert_eq!(loss.forward(&x, &t, &[4], &[3]).unwrap().item().unwrap(), 0.0);
        let g = dev.tensor(&[1.0], &[]).unwrap();
        assert_eq!(loss.backward(&x, &t, &[4], &[3], &g).unwrap().to_vec().unwrap(), vec![0.0; 12]);
        // Unbatched: (T, C) with targets (S) gives sequence 0's loss as a 0-d tensor.
        let lp0: Vec<f32> = (0..5).flat_map(|t| LP[t * 6..t * 6 + 3].to_vec()).collect();
        let x = dev.tensor(&lp0, &[5, 3]).unwrap();
        let t = dev.indices(&[1i64, 1], &[2]).unwrap();
        let out = Ctc::default().reduction(Reduction::None).forward(&x, &t, &[5], &[2]).unwrap();
        assert_eq!(out.shape(), &[] as &[usize]);
        assert!((out.item().unwrap() as f64 - 2.039661409).abs() < 1e-5, "{}", label(dev));
    });
}

/// Devices whose loop budget is narrowed to 1 024 trips: with 201 extended labels a step costs
/// 5 trips, so the recursions split T = 300 into chunks of 192 steps (a multiple of 64, for the
/// 60-byte rows' aligned offsets), and the results must be the same bits as unsplit.
#[test]
fn time_splits_give_the_same_results() {
    let mut rng = Rng::new(11);
    let case = Case {
        shape: (300, 3, 5),
        targets: (0..3 * 100).map(|i| 1 + (i * 7 % 4) as i64).collect(),
        s: 100,
        input_lengths: vec![300, 250, 90],
        target_lengths: vec![100, 17, 60],
        blank: 0,
    };
    let lp = log_probs(&mut rng, 300, 3, 5);
    let run = |dev: &Device| {
        let x = dev.tensor(&lp, &[300, 3, 5]).unwrap();
        let t = dev.indices(&case.targets, &[3, 100]).unwrap();
        let loss = Ctc::default().reduction(Reduction::Sum);
        let out = loss.forward(&x, &t, &case.input_lengths, &case.target_lengths).unwrap();
        let g = dev.tensor(&[1.0], &[]).unwrap();
        let grad = loss.backward(&x, &t, &case.input_lengths, &case.target_lengths, &g).unwrap();
        (out.to_vec().unwrap(), grad.to_vec().unwrap())
    };
    for (narrow, whole) in common::narrow_budget_devices().iter().zip(devices()) {
        assert_eq!(run(narrow), run(whole), "{}: split against whole", label(narrow));
        check(narrow, &case, &lp, "narrowed budget");
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    use wgpu_loss::Error;
    let dev = &devices()[0];
    let x = dev.tensor(&LP, &[5, 2, 3]).unwrap();
    let t = dev.indices(&[1i64, 1, 2, 0], &[2, 2]).unwrap();
    let loss = Ctc::default();
    let err = |r: wgpu_loss::Result<wgpu_loss::Tensor>| r.unwrap_err();
    assert!(matches!(err(loss.forward(&x, &t, &[6, 4], &[2, 1])), Error::InvalidArgument { .. }));
    assert!(matches!(err(loss.forward(&x, &t, &[5, 4], &[3, 1])), Error::InvalidArgument { .. }));
    assert!(matches!(err(loss.forward(&x, &t, &[5], &[2])), Error::Shape { .. }));
    assert!(matches!(
        err(Ctc::default().blank(3).forward(&x, &t, &[5, 4], &[2, 1])),
        Error::InvalidArgument { .. }
    ));
    let bad = dev.indices(&[1i64, 3, 2, 0], &[2, 2]).unwrap();
    let e = loss.forward(&x, &bad, &[5, 4], &[2, 1]).unwrap().item().unwrap_err();
    assert!(matches!(e, Error::TargetOutOfRange { position: 1, value: 3, classes: 3, .. }), "{e}");
}

/// The largest targets and inputs a device takes, against the f64 reference: S is bounded by the
/// loop budget (4·S + 3 trips loop over a sequence's extended labels: S ≤ 14 999 on the software
/// adapters), T·(2S + 1) by one binding (a sequence's alpha table: 32 Mi floats in 128 MiB).
/// At S = T − 1 = 4 095 (the table just fitting 128 MiB) the loss and gradient are right;
/// at the largest S (with the longest T its table allows, too short for it: an impossible
/// alignment) the loss is +inf, or 0 with zero_infinity; one label or one step more is a typed
/// error.
#[test]
fn the_largest_targets_and_inputs_a_device_takes() {
    let c = 20;
    // Targets cycling through the classes 1..C: no repeat, so T ≥ S aligns.
    let targets = |s: usize| (0..s).map(|k| (1 + k % (c - 1)) as i64).collect::<Vec<_>>();
    // T = S + 1 = 4 096: the alpha table, 4 096 × 8 191 floats, just fits 128 MiB. Its
    // log-likelihood is about −25 000, whose f32 ulp is 0.002, rounded at each of 4 096 steps:
    // γ's absolute error reaches a few hundredths (PyTorch's own float32 ctc_loss is off its
    // float64 by 0.036 here). The f64 reference is computed once for every adapter.
    let (s, t) = (4_095, 4_096);
    let lp = log_probs(&mut Rng::new(9), t, 1, c);
    let lp64: Vec<f64> = lp.iter().map(|&v| v as f64).collect();
    let labels = targets(s);
    let seqs = [Sequence { input_length: t, targets: &labels }];
    let want = reference::ctc(&lp64, (1, c), &seqs, 0, false, Reduction::Sum);
    let want_grad = reference::ctc_backward(&lp64, (1, c), &seqs, 0, false, &[1.0], Reduction::Sum);
    common::on_each(common::one_per_adapter(), |dev| {
        let what = label(dev);
        let budget = dev.loop_budget().min(60_000) as usize;
        let floats = (dev.binding_limit() / 4) as usize;
        let most_labels = (budget - 3) / 4;
        let mut rng = Rng::new(10);
        if t * (2 * s + 1) <= floats && s <= most_labels {
            let started = std::time::Instant::now();
            let x = dev.tensor(&lp, &[t, 1, c]).unwrap();
            let tt = dev.indices(&labels, &[1, s]).unwrap();
            let l = Ctc { reduction: Reduction::Sum, ..Default::default() };
            let loss = l.forward(&x, &tt, &[t as i64], &[s as i64]).unwrap();
            let one = dev.tensor(&[1.0], &[]).unwrap();
            let grad = l.backward(&x, &tt, &[t as i64], &[s as i64], &one).unwrap();
            close(&format!("{what} T={t} S={s}"), &loss.to_vec().unwrap(), &want, Tol::scaled(1e4));
            let tol = Tol { abs: 0.04, rel: 0.0 };
            close(&format!("{what} T={t} S={s} gradient"), &grad.to_vec().unwrap(), &want_grad, tol);
            eprintln!("{what}: T={t} S={s} forward and backward {:.1?}", started.elapsed());
        }
        if dev.loop_budget() > 60_000 {
            return; // a GPU: no loop budget, and other binding limits
        }
        // The longest target: its longest input is too short (impossible), +inf or 0.
        let s = most_labels;
        let t = floats / (2 * s + 1);
        let lp = log_probs(&mut rng, t, 1, c);
        let x = dev.tensor(&lp, &[t, 1, c]).unwrap();
        let tt = dev.indices(&targets(s), &[1, s]).unwrap();
        let l = Ctc { zero_infinity: true, reduction: Reduction::Sum, ..Default::default() };
        let started = std::time::Instant::now();
        let got = l.forward(&x, &tt, &[t as i64], &[s as i64]).unwrap().item().unwrap();
        assert_eq!(got, 0.0, "{what}: T={t} S={s}, impossible, zero_infinity");
        eprintln!("{what}: T={t} S={s} forward {:.1?}", started.elapsed());
        // One label more, or one step more: typed errors before anything runs.
        let err = Ctc::default()
            .forward(&x, &dev.indices(&targets(s + 1), &[1, s + 1]).unwrap(), &[t as i64], &[s as i64 + 1])
            .unwrap_err();
        assert!(matches!(&err, wgpu_loss::Error::Limit { .. }), "{what}: {err}");
        let longer = dev.tensor(&log_probs(&mut rng, t + 1, 1, c), &[t + 1, 1, c]).unwrap();
        let err = Ctc::default().forward(&longer, &tt, &[t as i64 + 1], &[s as i64]).unwrap_err();
        assert!(matches!(&err, wgpu_loss::Error::Limit { .. }), "{what}: {err}");
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("{what}: ctc takes S <= {most_labels} and T (2S + 1) <= {floats}\n").as_bytes(),
        );
    });
}
