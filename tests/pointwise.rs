//! The pointwise losses (mse, l1, smooth_l1, huber, bce, bce_with_logits, kl_div, gaussian_nll
//! with its var shapes) and binary
//! accuracy, forward and backward, on every adapter against the f64 reference.

use crate::common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::reference::broadcast_to;
use wgpu_loss::reference::pointwise::{self as reference, Pointwise};
use wgpu_loss::{
    Bce, BceWithLogits, Device, Error, Huber, KlDiv, KlReduction, L1, Mse, Reduction, SigmoidFocal, SmoothL1,
    Tensor,
};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// One loss with its options, built for a device.
#[derive(Clone, Copy, Debug)]
struct Case<'a> {
    loss: Pointwise,
    weight: Option<(&'a [f32], &'a [usize])>,
    pos_weight: Option<(&'a [f32], &'a [usize])>,
    /// kl_div's batchmean (else `reduction` as given).
    batchmean: bool,
}

impl<'a> Case<'a> {
    fn plain(loss: Pointwise) -> Self {
        Case { loss, weight: None, pos_weight: None, batchmean: false }
    }

    /// forward, backward dx, backward dy (when the loss has one) on the GPU.
    fn gpu(
        &self,
        dev: &Device,
        x: &Tensor,
        y: &Tensor,
        g: &Tensor,
        red: Reduction,
    ) -> (Tensor, Tensor, Option<Tensor>) {
        let w = self.weight.map(|(w, s)| dev.tensor(w, s).unwrap());
        let pw = self.pos_weight.map(|(p, s)| dev.tensor(p, s).unwrap());
        macro_rules! with_target {
            ($l:expr) => {{
                let l = $l;
                let (dx, dy) = l.backward_with_target(x, y, g).unwrap();
                assert_eq!(l.backward(x, y, g).unwrap().to_vec().unwrap(), dx.to_vec().unwrap());
                (l.forward(x, y).unwrap(), dx, Some(dy))
            }};
        }
        match self.loss {
            Pointwise::Mse => with_target!(Mse::default().reduction(red)),
            Pointwise::L1 => with_target!(L1::default().reduction(red)),
            Pointwise::SmoothL1(b) => with_target!(SmoothL1::default().beta(b as f32).reduction(red)),
            Pointwise::Huber(d) => with_target!(Huber::default().delta(d as f32).reduction(red)),
            Pointwise::KlDiv(log_target) => {
                let r = match (red, self.batchmean) {
                    (_, true) => KlReduction::BatchMean,
                    (Reduction::None, _) => KlReduction::None,
                    (Reduction::Mean, _) => KlReduction::Mean,
                    (Reduction::Sum, _) => KlReduction::Sum,
                };
                with_target!(KlDiv::default().log_target(log_target).reduction(r))
            }
            Pointwise::Bce => {
                let mut l = Bce::default().reduction(red);
                if let Some(w) = w {
                    l = l.weight(w);
                }
                (l.forward(x, y).unwrap(), l.backward(x, y, g).unwrap(), None)
            }
            Pointwise::BceWithLogits => {
                let mut l = BceWithLogits::default().reduction(red);
                if let Some(w) = w {
                    l = l.weight(w);
                }
                if let Some(p) = pw {
                    l = l.pos_weight(p);
                }
                (l.forward(x, y).unwrap(), l.backward(x, y, g).unwrap(), None)
            }
            // The catalogue's generic test covers every loss; this file adds the cases below.
            other => unreachable!("{other:?} is not in this file's LOSSES"),
        }
    }

    /// Runs forward and backward on `dev` and compares with the reference; returns the loss.
    fn check(
        &self,
        dev: &Device,
        x: &[f32],
        y: &[f32],
        shape: &[usize],
        red: Reduction,
        tol: Tol,
    ) -> Vec<f32> {
        let n = x.len();
        let cols = *shape.last().unwrap_or(&1);
        let divisor = if self.batchmean { shape[0] as f64 } else { n as f64 };
        let mut rng = Rng::new(n as u64 + 7);
        let g: Vec<f32> = if red == Reduction::None { rng.values(n, 2.0) } else { vec![1.5] };
        let g_shape: &[usize] = if red == Reduction::None { shape } else { &[] };
        let (xt, yt, gt) =
            (dev.tensor(x, shape).unwrap(), dev.tensor(y, shape).unwrap(), dev.tensor(&g, g_shape).unwrap());
        let (loss, dx, dy) = self.gpu(dev, &xt, &yt, &gt, red);
        let what = format!(
            "{} {:?} {shape:?} {red:?} batchmean={} weight={} pos_weight={}",
            common::label(dev),
            self.loss,
            self.batchmean,
            self.weight.is_some(),
            self.pos_weight.is_some()
        );
        // The reference takes weights at the input's shape, broadcast by coordinates.
        let full = |w: Option<(&[f32], &[usize])>| w.map(|(w, s)| broadcast_to(w, s, shape).unwrap());
        let (weight, pos_weight) = (full(self.weight), full(self.pos_weight));
        let (weight, pos_weight) = (weight.as_deref(), pos_weight.as_deref());
        let want = reference::forward(self.loss, x, y, cols, weight, pos_weight, red, divisor);
        let got = loss.to_vec().unwrap();
        assert_close(&format!("{what} forward"), &got, &want, tol.sum(n));
        let (want_dx, want_dy) =
            reference::backward(self.loss, x, y, cols, weight, pos_weight, &g, red, divisor);
        assert_close(&format!("{what} dx"), &dx.to_vec().unwrap(), &want_dx, tol);
        if let Some(dy) = dy {
            assert_close(&format!("{what} dy"), &dy.to_vec().unwrap(), &want_dy, tol);
        }
        got
    }
}

/// Inputs suited to each loss: probabilities for bce, log-probabilities and probabilities (with
/// exact zeros) for kl_div, values of either sign elsewhere (with some exact ties x == y).
fn data(loss: Pointwise, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    match loss {
        Pointwise::Bce => {
            let p: Vec<f32> = (0..n).map(|_| (rng.unit() + 1.0) * 0.5).collect();
            let y: Vec<f32> =
                (0..n).map(|i| if i % 3 == 0 { (rng.unit() + 1.0) * 0.5 } else { (i % 2) as f32 }).collect();
            (p, y)
        }
        Pointwise::KlDiv(false) => {
            let x = rng.values(n, 3.0).into_iter().map(|v| v - 3.0).collect();
            let y = (0..n).map(|i| if i % 5 == 0 { 0.0 } else { (rng.unit() + 1.0) * 0.5 }).collect();
            (x, y)
        }
        Pointwise::BceWithLogits => {
            let y =
                (0..n).map(|i| if i % 3 == 0 { (rng.unit() + 1.0) * 0.5 } else { (i % 2) as f32 }).collect();
            (rng.values(n, 6.0), y)
        }
        Pointwise::KlDiv(true) => {
            (rng.values(n, 3.0), rng.values(n, 3.0).into_iter().map(|v| v - 3.0).collect())
        }
        _ => {
            let x = rng.values(n, 4.0);
            let y =
                x.iter().enumerate().map(|(i, &v)| if i % 7 == 0 { v } else { rng.unit() * 4.0 }).collect();
            (x, y)
        }
    }
}

const LOSSES: [Pointwise; 10] = [
    Pointwise::Mse,
    Pointwise::L1,
    Pointwise::SmoothL1(1.0),
    Pointwise::SmoothL1(0.0),
    Pointwise::SmoothL1(0.5),
    Pointwise::Huber(2.0),
    Pointwise::Bce,
    Pointwise::BceWithLogits,
    Pointwise::KlDiv(false),
    Pointwise::KlDiv(true),
];

#[test]
fn every_loss_every_reduction_forward_and_backward() {
    let shapes: [&[usize]; 4] = [&[1], &[3, 7], &[4099], &[2, 3, 65]];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(30);
        for loss in LOSSES {
            for shape in shapes {
                let n: usize = shape.iter().product();
                let (x, y) = data(loss, n, &mut rng);
                for red in REDUCTIONS {
                    Case::plain(loss).check(dev, &x, &y, shape, red, Tol::ELEMENT);
                }
                if let Pointwise::KlDiv(_) = loss {
                    Case { batchmean: true, ..Case::plain(loss) }.check(
                        dev,
                        &x,
                        &y,
                        shape,
                        Reduction::Mean,
                        Tol::ELEMENT,
                    );
                }
            }
        }
    });
}

#[test]
fn weights_and_pos_weight() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(31);
        for shape in [&[5usize, 1000][..], &[3, 7]] {
            let n: usize = shape.iter().product();
            let cols = shape[1];
            let full: Vec<f32> = rng.values(n, 1.0).iter().map(|v| v + 1.5).collect();
            let per_col: Vec<f32> = rng.values(cols, 1.0).iter().map(|v| v + 1.5).collect();
            let pw: Vec<f32> = rng.values(cols, 1.0).iter().map(|v| v * 2.0 + 2.5).collect();
            for loss in [Pointwise::Bce, Pointwise::BceWithLogits] {
                let (x, y) = data(loss, n, &mut rng);
                for red in REDUCTIONS {
                    for weight in [Some((&full[..], shape)), Some((&per_col[..], &[cols][..])), None] {
                        let pos: &[Option<(&[f32], &[usize])>] = if loss == Pointwise::BceWithLogits {
                            &[None, Some((&pw, &[cols]))]
                        } else {
                            &[None]
                        };
                        for &pos_weight in pos {
                            let case = Case { loss, weight, pos_weight, batchmean: false };
                            case.check(dev, &x, &y, shape, red, Tol::ELEMENT);
                        }
                    }
                }
            }
        }
    });
}

/// Weights and positive weights of any shape that broadcasts to the input (numpy's rules), on
/// the normal devices and on ones whose small binding limit splits the input into chunks.
#[test]
fn weights_broadcast_along_any_dims() {
    let mut rng = Rng::new(37);
    let shape = [2usize, 5, 3, 4];
    let n: usize = shape.iter().product();
    let operands: &[&[usize]] =
        &[&[5, 1, 1], &[1], &[], &[4], &[3, 1], &[2, 1, 1, 4], &[1, 5, 1, 4], &[2, 1, 3, 1]];
    let values: Vec<Vec<f32>> = operands
        .iter()
        .map(|s| rng.values(s.iter().product(), 1.0).iter().map(|v| v + 1.5).collect())
        .collect();
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(37);
        for loss in [Pointwise::Bce, Pointwise::BceWithLogits] {
            let (x, y) = data(loss, n, &mut rng);
            for (k, (&s, w)) in operands.iter().zip(&values).enumerate() {
                let other = (&values[(k + 1) % operands.len()][..], operands[(k + 1) % operands.len()]);
                let pos_weight = (loss == Pointwise::BceWithLogits).then_some(other);
                let case = Case { loss, weight: Some((w, s)), pos_weight, batchmean: false };
                for red in REDUCTIONS {
                    case.check(dev, &x, &y, &shape, red, Tol::ELEMENT);
                }
            }
        }
    });
    // 40 000 elements in chunks of at most 64 KiB of each input: the chunks' first elements
    // index the runs from their offset.
    let big = [4usize, 10, 25, 40];
    let n: usize = big.iter().product();
    let pw: Vec<f32> = rng.values(10, 1.0).iter().map(|v| v + 1.5).collect();
    let w: Vec<f32> = rng.values(4 * 40, 1.0).iter().map(|v| v + 1.5).collect();
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(37);
        let (x, y) = data(Pointwise::BceWithLogits, n, &mut rng);
        let case = Case {
            loss: Pointwise::BceWithLogits,
            weight: Some((&w, &[4, 1, 1, 40])),
            pos_weight: Some((&pw, &[10, 1, 1])),
            batchmean: false,
        };
        for red in REDUCTIONS {
            case.check(dev, &x, &y, &big, red, Tol::ELEMENT);
        }
    });
}

/// PyTorch's values for a positive weight along the class dim and a weight along the last.
#[test]
fn broadcast_weights_match_pytorch() {
    // x = torch.arange(12.).reshape(1, 3, 2, 2) * 0.5 - 2.5
    // y = (torch.arange(12) % 3 == 0).float().reshape(1, 3, 2, 2)
    // pw = torch.tensor([1., 2., 3.]).reshape(3, 1, 1); w = torch.tensor([0.5, 2.])
    // F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, reduction='none')
    let want = [
        1.2894449234,
        0.2538561821,
        0.1007066369,
        2.6265234947,
        0.2370384932,
        1.3862943649,
        0.4740769863,
        2.6265234947,
        0.8507066369,
        0.7615680695,
        1.2894449234,
        6.0971746445,
    ];
    // ... reduction='sum' = 17.9933586121
    // F.binary_cross_entropy(torch.sigmoid(x), y, weight=pw) = 2.7080895901
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.5).collect();
    let y: Vec<f32> = (0..12).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let p: Vec<f32> = x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    let shape = [1, 3, 2, 2];
    common::on_each(devices(), |dev| {
        let t = |v: &[f32], s: &[usize]| dev.tensor(v, s).unwrap();
        let logits =
            BceWithLogits::default().weight(t(&[0.5, 2.0], &[2])).pos_weight(t(&[1.0, 2.0, 3.0], &[3, 1, 1]));
        let got = logits.clone().reduction(Reduction::None).forward(&t(&x, &shape), &t(&y, &shape)).unwrap();
        assert_close(&format!("{} none", common::label(dev)), &got.to_vec().unwrap(), &want, Tol::ELEMENT);
        let sum = logits.reduction(Reduction::Sum).forward(&t(&x, &shape), &t(&y, &shape)).unwrap();
        assert_close("sum", &[sum.item().unwrap()], &[17.9933586121], Tol::ELEMENT.sum(12));
        let bce =
            Bce::default().weight(t(&[1.0, 2.0, 3.0], &[3, 1, 1])).forward(&t(&p, &shape), &t(&y, &shape));
        assert_close("bce mean", &[bce.unwrap().item().unwrap()], &[2.7080895901], Tol::ELEMENT.sum(12));
        // More dims than the input, or a dim that is neither 1 nor the input's: refused.
        for bad in [&[1usize, 1, 3, 2, 2][..], &[2, 1, 1]] {
            let w = t(&vec![1.0; bad.iter().product()], bad);
            let e = Bce::default().weight(w).forward(&t(&p, &shape), &t(&y, &shape)).unwrap_err();
            assert!(matches!(e, Error::Shape { .. }), "{bad:?}: {e}");
        }
    });
}

#[test]
fn pytorch_golden_values() {
    let ln2 = std::f64::consts::LN_2;
    common::on_each(devices(), |dev| {
        let none = Reduction::None;
        let c = |loss| Case::plain(loss);
        // F.binary_cross_entropy_with_logits([100, -100, 0, 0], [0, 1, 0, 1], reduction='none')
        //   = [100, 100, ln 2, ln 2]; pos_weight=[3] at x=0, y=1: 3 ln 2
        let got = c(Pointwise::BceWithLogits).check(
            dev,
            &[100.0, -100.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0, 1.0],
            &[4],
            none,
            Tol::scaled(100.0),
        );
        assert_close("bce_with_logits extremes", &got, &[100.0, 100.0, ln2, ln2], Tol::scaled(100.0));
        let pw = Case { pos_weight: Some((&[3.0], &[1])), ..c(Pointwise::BceWithLogits) };
        assert_close(
            "pos_weight",
            &pw.check(dev, &[0.0], &[1.0], &[1], none, Tol::ELEMENT),
            &[3.0 * ln2],
            Tol::ELEMENT,
        );
        // F.binary_cross_entropy([0., 1., 0.5], [1., 1., 0.]) = [100, 0, ln 2] (log clamped at -100)
        let got =
            c(Pointwise::Bce).check(dev, &[0.0, 1.0, 0.5], &[1.0, 1.0, 0.0], &[3], none, Tol::scaled(100.0));
        assert_close("bce clamp", &got, &[100.0, 0.0, ln2], Tol::ELEMENT);
        // its gradient at p = 0, y = 1 divides by max((1 - p) p, 1e-12): -1e12
        let g1 = dev.tensor(&[1.0], &[]).unwrap();
        let dx = Bce::default()
            .reduction(Reduction::Sum)
            .backward(&dev.tensor(&[0.0], &[1]).unwrap(), &dev.tensor(&[1.0], &[1]).unwrap(), &g1)
            .unwrap();
        assert_close("bce gradient clamp", &dx.to_vec().unwrap(), &[-1e12], Tol::ELEMENT);
        // smooth_l1(beta=1) at diffs 0.5, 2 = [0.125, 1.5]; huber(delta=2) at 0.5, 2, 3 = [0.125, 2, 4];
        // smooth_l1(beta=2) at diff 3 = 2
        let x = [0.5f32, 2.0, 3.0];
        let z = [0.0f32; 3];
        let got = c(Pointwise::SmoothL1(1.0)).check(dev, &x[..2], &z[..2], &[2], none, Tol::ELEMENT);
        assert_close("smooth_l1", &got, &[0.125, 1.5], Tol::ELEMENT);
        let got = c(Pointwise::Huber(2.0)).check(dev, &x, &z, &[3], none, Tol::ELEMENT);
        assert_close("huber", &got, &[0.125, 2.0, 4.0], Tol::ELEMENT);
        let got = c(Pointwise::SmoothL1(2.0)).check(dev, &x[2..], &z[2..], &[1], none, Tol::ELEMENT);
        assert_close("smooth_l1 beta 2", &got, &[2.0], Tol::ELEMENT);
        // kl_div(log [0.2, 0.3, 0.5], [0, 0.5, 0.5], reduction='none') = [0, 0.25541281, 0]; sum 0.25541281
        let logp = [0.2f32.ln(), 0.3f32.ln(), 0.5f32.ln()];
        let got = c(Pointwise::KlDiv(false)).check(dev, &logp, &[0.0, 0.5, 0.5], &[1, 3], none, Tol::ELEMENT);
        assert_close("kl_div", &got, &[0.0, 0.25541281, 0.0], Tol::ELEMENT);
        let bm = Case { batchmean: true, ..c(Pointwise::KlDiv(false)) };
        let got = bm.check(dev, &logp, &[0.0, 0.5, 0.5], &[1, 3], Reduction::Mean, Tol::ELEMENT);
        assert_close("kl_div batchmean", &got, &[0.25541281], Tol::ELEMENT);
        // l1 gradient at a zero difference is 0: sign(0)
        let dx = L1::default()
            .backward(
                &dev.tensor(&[1.0, 2.0], &[2]).unwrap(),
                &dev.tensor(&[1.0, 0.0], &[2]).unwrap(),
                &dev.tensor(&[1.0], &[]).unwrap(),
            )
            .unwrap();
        assert_eq!(dx.to_vec().unwrap(), [0.0, 0.5]);
    });
}

#[test]
fn nan_propagates_and_infinities_follow_pytorch() {
    common::on_each(devices(), |dev| {
        let t = |v: &[f32]| dev.tensor(v, &[v.len()]).unwrap();
        let x = t(&[1.0, f32::NAN, 3.0, 0.5, 0.25]);
        let y = t(&[0.0, 0.0, f32::NAN, 0.5, 1.0]);
        for red in REDUCTIONS {
            let got = Mse::default().reduction(red).forward(&x, &y).unwrap().to_vec().unwrap();
            match red {
                Reduction::None => {
                    assert!(got[1].is_nan() && got[2].is_nan(), "{got:?}");
                    assert_eq!([got[0], got[3], got[4]], [1.0, 0.0, 0.5625]);
                }
                _ => assert!(got[0].is_nan(), "{red:?}: {got:?}"),
            }
        }
        let g = dev.tensor(&[1.0], &[]).unwrap();
        let dx = L1::default().reduction(Reduction::Sum).backward(&x, &y, &g).unwrap().to_vec().unwrap();
        assert!(dx[1].is_nan() && dx[2].is_nan() && dx[0] == 1.0, "{dx:?}");
        // Infinite differences: mse and l1 give inf, huber and smooth_l1 too; their gradients
        // are inf (mse), ±1 (l1, smooth_l1) and ±delta (huber), as PyTorch computes them.
        let x = t(&[f32::INFINITY, f32::NEG_INFINITY]);
        let y = t(&[0.0, 0.0]);
        let none = Reduction::None;
        let g2 = t(&[1.0, 1.0]);
        assert_eq!(
            Mse::default().reduction(none).forward(&x, &y).unwrap().to_vec().unwrap(),
            [f32::INFINITY; 2]
        );
        assert_eq!(
            L1::default().reduction(none).forward(&x, &y).unwrap().to_vec().unwrap(),
            [f32::INFINITY; 2]
        );
        assert_eq!(
            Huber::default().reduction(none).forward(&x, &y).unwrap().to_vec().unwrap(),
            [f32::INFINITY; 2]
        );
        assert_eq!(
            Mse::default().reduction(none).backward(&x, &y, &g2).unwrap().to_vec().unwrap(),
            [f32::INFINITY, f32::NEG_INFINITY]
        );
        assert_eq!(
            L1::default().reduction(none).backward(&x, &y, &g2).unwrap().to_vec().unwrap(),
            [1.0, -1.0]
        );
        assert_eq!(
            Huber::default().delta(2.0).reduction(none).backward(&x, &y, &g2).unwrap().to_vec().unwrap(),
            [2.0, -2.0]
        );
        assert_eq!(
            SmoothL1::default().reduction(none).backward(&x, &y, &g2).unwrap().to_vec().unwrap(),
            [1.0, -1.0]
        );
        // bce_with_logits gives the loss's limit at infinite logits: (+inf, 0) and (-inf, 1) are
        // +inf, (+inf, 1) and (-inf, 0) are 0. PyTorch gives +inf for the first and NaN for the
        // other three (pytorch issue #135359).
        let bce = BceWithLogits::default().reduction(none);
        assert_eq!(bce.forward(&x, &t(&[0.0, 1.0])).unwrap().to_vec().unwrap(), [f32::INFINITY; 2]);
        assert_eq!(bce.forward(&x, &t(&[1.0, 0.0])).unwrap().to_vec().unwrap(), [0.0; 2]);
        assert_eq!(bce.backward(&x, &t(&[0.0, 1.0]), &g2).unwrap().to_vec().unwrap(), [1.0, -1.0]);
        // kl_div: a negative target is NaN (log of a negative number)
        let got = KlDiv::default()
            .reduction(KlReduction::None)
            .forward(&t(&[-1.0]), &t(&[-0.5]))
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(got[0].is_nan());
    });
}

#[test]
fn bce_rejects_inputs_outside_zero_one() {
    let dev = &devices()[0];
    let x = dev.tensor(&[0.5, 1.5, -0.1, 0.2], &[4]).unwrap();
    let y = dev.tensor(&[0.0; 4], &[4]).unwrap();
    for red in REDUCTIONS {
        match Bce::default().reduction(red).forward(&x, &y).unwrap().to_vec() {
            Err(Error::InputOutOfRange { op: "bce", position: 1, value, .. }) => assert_eq!(value, 1.5),
            other => panic!("{red:?}: expected InputOutOfRange, got {other:?}"),
        }
    }
    let nan = dev.tensor(&[0.5, f32::NAN], &[2]).unwrap();
    let err = wgpu_loss::bce(&nan, &dev.tensor(&[0.0; 2], &[2]).unwrap(), Reduction::Mean).unwrap().item();
    assert!(matches!(err, Err(Error::InputOutOfRange { position: 1, .. })), "{err:?}");
}

#[test]
fn options_and_shapes_are_checked() {
    let dev = &devices()[0];
    let x = dev.tensor(&[0.5; 6], &[2, 3]).unwrap();
    let y = dev.tensor(&[0.5; 6], &[6]).unwrap();
    assert!(matches!(Mse::default().forward(&x, &y), Err(Error::Shape { op: "mse", .. })));
    assert!(matches!(
        SmoothL1::default().beta(-1.0).forward(&x, &x),
        Err(Error::InvalidArgument { op: "smooth_l1", .. })
    ));
    assert!(matches!(
        Huber::default().delta(0.0).forward(&x, &x),
        Err(Error::InvalidArgument { op: "huber", .. })
    ));
    let g = dev.tensor(&[1.0; 6], &[2, 3]).unwrap();
    assert!(
        matches!(Mse::default().backward(&x, &x, &g), Err(Error::Shape { .. })),
        "mean needs a one-value gradient"
    );
    let g1 = dev.tensor(&[1.0], &[]).unwrap();
    assert!(matches!(
        Mse::default().reduction(Reduction::None).backward(&x, &x, &g1),
        Err(Error::Shape { .. })
    ));
    let s = dev.tensor(&[1.0], &[]).unwrap();
    assert!(matches!(
        KlDiv::default().reduction(KlReduction::BatchMean).forward(&s, &s),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn empty_inputs() {
    let dev = &devices()[0];
    let e = dev.tensor(&[], &[0]).unwrap();
    assert!(wgpu_loss::mse(&e, &e, Reduction::Mean).unwrap().item().unwrap().is_nan());
    assert_eq!(wgpu_loss::l1(&e, &e, Reduction::Sum).unwrap().item().unwrap(), 0.0);
    assert!(wgpu_loss::mse(&e, &e, Reduction::None).unwrap().to_vec().unwrap().is_empty());
}

#[test]
fn chunked_equals_unchunked() {
    // 64 KiB bindings split 70 000 elements into chunks; the fused partial sums keep their
    // partition, so mean and sum are bitwise equal.
    let mut rng = Rng::new(32);
    let n = 70_000;
    for (small, dev) in small_binding_devices().iter().zip(devices()) {
        for loss in [Pointwise::Huber(1.0), Pointwise::BceWithLogits] {
            let (x, y) = data(loss, n, &mut rng);
            for red in REDUCTIONS {
                let a = Case::plain(loss).check(small, &x, &y, &[n], red, Tol::ELEMENT);
                let b = Case::plain(loss).check(dev, &x, &y, &[n], red, Tol::ELEMENT);
                if red != Reduction::None && dev.texture_inputs() == small.texture_inputs() {
                    assert_eq!(a, b, "{loss:?} {red:?}");
                }
            }
        }
    }
}

#[test]
fn binary_accuracy_counts_sign_agreement() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(33);
        let n = 5000;
        let x = rng.values(n, 2.0);
        let y: Vec<f32> = (0..n).map(|i| (i % 3 == 0) as u8 as f32).collect();
        let got = wgpu_loss::binary_accuracy(&dev.tensor(&x, &[n]).unwrap(), &dev.tensor(&y, &[n]).unwrap())
            .unwrap()
            .item()
            .unwrap();
        let want =
            reference::forward(Pointwise::BinaryAccuracy, &x, &y, n, None, None, Reduction::Mean, n as f64);
        assert_close(&common::label(dev), &[got], &want, Tol::ELEMENT.sum(n));
    });
}

#[test]
fn bce_on_subnormal_probabilities_follows_pytorch_whatever_the_flush_mode() {
    // p = torch.tensor([1e-40, 1e-44, 1e-38, 3e-39, 1e-45, 0.5]); y = [1, 1, 1, 0.25, 1, 1]
    // F.binary_cross_entropy(p, y, reduction='none')
    //   = [92.1034088135, 100.0, 87.4982299805, 22.1755523682, 100.0, 0.6931471825]
    // (log p in full, then clamped at −100; a subnormal's log comes from its bits, so an adapter
    // that flushes subnormals to zero gives the same.)
    let p = [1e-40f32, 1e-44, 1e-38, 3e-39, 1e-45, 0.5];
    let y = [1.0f32, 1.0, 1.0, 0.25, 1.0, 1.0];
    let want = [92.1034088135, 100.0, 87.4982299805, 22.1755523682, 100.0, 0.6931471825];
    common::on_each(devices(), |dev| {
        let (pt, yt) = (dev.tensor(&p, &[6]).unwrap(), dev.tensor(&y, &[6]).unwrap());
        let got = Bce::default().reduction(Reduction::None).forward(&pt, &yt).unwrap().to_vec().unwrap();
        assert_close(&format!("{} bce", common::label(dev)), &got, &want, Tol { abs: 1e-5, rel: 1e-6 });
        let reference = reference::forward(Pointwise::Bce, &p, &y, 6, None, None, Reduction::None, 6.0);
        assert_close(
            &format!("{} bce vs reference", common::label(dev)),
            &got,
            &reference,
            Tol { abs: 1e-5, rel: 1e-6 },
        );
    });
}

#[test]
fn bce_with_logits_stays_exact_on_confident_logits() {
    // log1p(e^−50) = 1.9287498479639178e-22 for (x, y) = (50, 1) and (−50, 0). The softplus with
    // a series log1p keeps both; PyTorch float32 gives 1.9287e-22 for the first and 0 for the
    // second:
    //   F.binary_cross_entropy_with_logits(torch.tensor([50., -50.]), torch.tensor([1., 0.]),
    //                                      reduction='none') = [1.9287e-22, 0.0]
    // The tolerance is WGSL's bound on exp(−50): (3 + 2·50) ulp.
    let want = [1.9287498479639178e-22, 1.9287498479639178e-22];
    common::on_each(devices(), |dev| {
        let (x, y) = (dev.tensor(&[50.0, -50.0], &[2]).unwrap(), dev.tensor(&[1.0, 0.0], &[2]).unwrap());
        let got =
            BceWithLogits::default().reduction(Reduction::None).forward(&x, &y).unwrap().to_vec().unwrap();
        assert_close(&common::label(dev), &got, &want, Tol { abs: 0.0, rel: 103.0 * f32::EPSILON as f64 });
    });
}

/// gaussian_nll's var by PyTorch's rule: the input's shape, one fewer dim (unsqueezed), or one
/// dim of size 1 (here the middle of three, 5000 long, so that its gradient's sum takes three
/// passes of sum_dim); the rest refused. Against the reference, and bitwise repeatable.
#[test]
fn gaussian_nll_var_shapes_and_their_gradient_sums() {
    use wgpu_loss::reference::{pointwise::gaussian_var_shape, sum_to};
    let shape = [3usize, 5000, 2];
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(41);
    let x = rng.values(n, 2.0);
    let y = rng.values(n, 2.0);
    let f = Pointwise::GaussianNll { full: false, eps: 1e-6 };
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(41);
        let (xt, yt) = (dev.tensor(&x, &shape).unwrap(), dev.tensor(&y, &shape).unwrap());
        for var_shape in [vec![3, 5000, 2], vec![3, 5000], vec![3, 1, 2], vec![1, 5000, 2]] {
            let var: Vec<f32> = rng.uniform(var_shape.iter().product(), 0.2, 2.0);
            let from = gaussian_var_shape(&shape, &var_shape).unwrap();
            let aux = broadcast_to(&var, &from, &shape).unwrap();
            let vt = dev.tensor(&var, &var_shape).unwrap();
            let loss = wgpu_loss::GaussianNll::default().reduction(Reduction::Sum);
            let what = format!("var {var_shape:?} on {}", common::label(dev));
            let got = loss.forward(&xt, &yt, &vt).unwrap().to_vec().unwrap();
            let want = reference::forward(f, &x, &y, 2, None, Some(&aux), Reduction::Sum, n as f64);
            assert_close(&what, &got, &want, Tol::scaled(3.0).sum(n));
            let g = dev.tensor(&[1.0], &[]).unwrap();
            let (dx, dvar) = loss.backward(&xt, &yt, &vt, &g).unwrap();
            let (dx_want, _) =
                reference::backward(f, &x, &y, 2, None, Some(&aux), &[1.0], Reduction::Sum, n as f64);
            assert_close(&what, &dx.to_vec().unwrap(), &dx_want, Tol::scaled(3.0));
            let per = reference::aux_backward(f, &x, &y, 2, None, &aux, &[1.0], Reduction::Sum, n as f64);
            let dvar_want = sum_to(&per, &shape, &from).unwrap();
            assert_eq!(dvar.shape(), &var_shape[..], "{what}");
            let dvar_got = dvar.to_vec().unwrap();
            assert_close(&what, &dvar_got, &dvar_want, Tol::scaled(3.0).sum(5000));
            let again = loss.backward(&xt, &yt, &vt, &g).unwrap().1.to_vec().unwrap();
            assert_eq!(again, dvar_got, "{what}: the same bits twice");
        }
        for bad in [vec![3, 2], vec![3, 1, 1], vec![1, 5000, 1], vec![2]] {
            let vt = dev.tensor(&vec![1.0; bad.iter().product()], &bad).unwrap();
            let err = wgpu_loss::GaussianNll::default().forward(&xt, &yt, &vt).unwrap_err();
            assert!(matches!(err, Error::Shape { .. }), "var {bad:?}: {err}");
        }
        let mut neg = vec![1.0f32; n];
        neg[777] = -0.5;
        let vt = dev.tensor(&neg, &shape).unwrap();
        let err = wgpu_loss::GaussianNll::default().forward(&xt, &yt, &vt).unwrap().item().unwrap_err();
        assert!(matches!(err, Error::InputOutOfRange { position: 777, .. }), "{err}");
        // A broadcast var's error names var's own element (the kernel reports the input's).
        for (var_shape, at) in [(vec![3, 1, 2], 3usize), (vec![1, 5000, 2], 7777), (vec![3, 5000], 9001)] {
            let mut neg = vec![1.0f32; var_shape.iter().product()];
            neg[at] = -0.25;
            neg[at + 1] = -2.0;
            let vt = dev.tensor(&neg, &var_shape).unwrap();
            let err = wgpu_loss::GaussianNll::default().forward(&xt, &yt, &vt).unwrap().item().unwrap_err();
            assert!(
                matches!(err, Error::InputOutOfRange { position, value, .. } if position == at && value == -0.25),
                "var {var_shape:?}: {err}"
            );
        }
    });
}

/// torchvision's alpha rule: in [0, 1], or −1 for no class weighting; anything else (and a
/// non-finite γ) is an error before anything runs.
#[test]
fn sigmoid_focal_takes_torchvisions_alphas_only() {
    let dev = &devices()[0];
    let x = dev.tensor(&[0.5, -1.0], &[2]).unwrap();
    let y = dev.tensor(&[1.0, 0.0], &[2]).unwrap();
    for alpha in [0.0, 0.25, 1.0, -1.0] {
        assert!(SigmoidFocal::default().alpha(alpha).forward(&x, &y).is_ok(), "alpha {alpha}");
    }
    for alpha in [2.0, -0.5, 1.0001, f32::NAN] {
        let got = SigmoidFocal::default().alpha(alpha).forward(&x, &y);
        assert!(matches!(got, Err(Error::InvalidArgument { .. })), "alpha {alpha}: {got:?}");
    }
    let got = SigmoidFocal::default().gamma(f32::INFINITY).forward(&x, &y);
    assert!(matches!(got, Err(Error::InvalidArgument { .. })), "{got:?}");
}

/// sigmoid_focal where `1 − p_t` rounds to 0 (|x| = 110: e^−110 is below f32's smallest) with
/// γ < 0: `0^γ` is +inf and the cross-entropy 0 too, so the loss is NaN, as torchvision computes
/// it in float32 (its float64 gives inf there, its `1 − p_t` rounding to 0 already at |x| ≈ 37);
/// and infinite logits, whose loss is the limit, as `bce_with_logits`'s.
#[test]
fn sigmoid_focal_saturated_and_infinite_logits() {
    common::on_each(devices(), |dev| {
        let x = dev.tensor(&[110.0, -110.0, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY], &[5]).unwrap();
        let y = dev.tensor(&[1.0, 0.0, 1.0, 0.0, 0.0], &[5]).unwrap();
        let ones = dev.tensor(&[1.0; 5], &[5]).unwrap();
        let negative = SigmoidFocal::default().alpha(-1.0).gamma(-1.0);
        let loss = negative.forward(&x, &y).unwrap().to_vec().unwrap();
        let grad = negative.backward(&x, &y, &ones).unwrap().to_vec().unwrap();
        let what = common::label(dev);
        assert!(
            loss[..2].iter().all(|v| v.is_nan()) && grad[..2].iter().all(|v| v.is_nan()),
            "{what}: {loss:?} {grad:?}"
        );
        let limits = SigmoidFocal::default().forward(&x, &y).unwrap().to_vec().unwrap();
        assert_eq!(&limits[2..], &[0.0, 0.0, f32::INFINITY], "{what}");
    });
}
