//! jsd and tvd on every adapter: PyTorch's values, every row strategy, chunked and
//! budget-split rows, ignored and empty batches, NaN rows, large magnitudes and typed errors.
//! (The catalogue's generic test runs every reduction × variant × dtype against the reference.)

use crate::common;

use common::{Rng, Tol, assert_close, devices, label, narrow_budget_devices, small_binding_devices};
use wgpu_loss::reference::divergence::{self as reference, Rows};
use wgpu_loss::{Device, Error, Indices, Jsd, Reduction, RowStrategy, Tensor, Tvd};

const STRATEGIES: [RowStrategy; 4] =
    [RowStrategy::Auto, RowStrategy::ThreadPerRow, RowStrategy::Segment(8), RowStrategy::WorkgroupPerRow];
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

fn rows_of(labels: Option<&[i64]>, reduction: Reduction) -> Rows<'_> {
    Rows { labels, ignore_index: -100, reduction }
}

fn upload(
    dev: &Device,
    x: &[f32],
    y: &[f32],
    shape: &[usize],
    labels: Option<&[i64]>,
) -> (Tensor, Tensor, Option<Indices>) {
    let l = labels.map(|l| {
        let mut s = shape.to_vec();
        s.remove(if shape.len() == 1 { 0 } else { 1 });
        dev.indices(l, &s).unwrap()
    });
    (dev.tensor(x, shape).unwrap(), dev.tensor(y, shape).unwrap(), l)
}

/// The upstream gradient for a loss of `n` rows reduced by `reduction`.
fn upstream(dev: &Device, rng: &mut Rng, n_rows: &[usize], reduction: Reduction) -> (Tensor, Vec<f32>) {
    let g = match reduction {
        Reduction::None => rng.values(n_rows.iter().product(), 1.0),
        _ => vec![0.75],
    };
    let shape: &[usize] = if reduction == Reduction::None { n_rows } else { &[] };
    (dev.tensor(&g, shape).unwrap(), g)
}

/// jsd forward and backward on `dev` against the reference, for data `x`, `y` of `shape`.
#[allow(clippy::too_many_arguments)]
fn check_jsd(
    dev: &Device,
    loss: &Jsd,
    x: &[f32],
    y: &[f32],
    shape: &[usize],
    labels: Option<&[i64]>,
    rng: &mut Rng,
    tol: Tol,
) {
    let what = format!(
        "jsd β={} T={} {:?} {shape:?} {:?} on {}",
        loss.beta,
        loss.temperature,
        loss.reduction,
        loss.strategy,
        label(dev)
    );
    let (xt, yt, lt) = upload(dev, x, y, shape, labels);
    let rows = rows_of(labels, loss.reduction);
    let (beta, t) = (loss.beta as f64, loss.temperature as f64);
    let got = loss.forward(&xt, &yt, lt.as_ref()).unwrap().to_vec().unwrap();
    assert_close(&what, &got, &reference::jsd(x, y, shape, beta, t, rows), tol);
    let mut out_shape = shape.to_vec();
    out_shape.remove(if shape.len() == 1 { 0 } else { 1 });
    let (gt, g) = upstream(dev, rng, &out_shape, loss.reduction);
    let dx = loss.backward(&xt, &yt, lt.as_ref(), &gt).unwrap().to_vec().unwrap();
    let want = reference::jsd_backward(x, y, shape, beta, t, rows, &g);
    assert_close(&format!("{what} gradient"), &dx, &want, Tol { abs: 1e-7, rel: tol.rel });
}

fn check_tvd(
    dev: &Device,
    loss: &Tvd,
    x: &[f32],
    y: &[f32],
    shape: &[usize],
    labels: Option<&[i64]>,
    rng: &mut Rng,
) {
    let what = format!("tvd {:?} {shape:?} {:?} on {}", loss.reduction, loss.strategy, label(dev));
    let (xt, yt, lt) = upload(dev, x, y, shape, labels);
    let rows = rows_of(labels, loss.reduction);
    let got = loss.forward(&xt, &yt, lt.as_ref()).unwrap().to_vec().unwrap();
    assert_close(&what, &got, &reference::tvd(x, y, shape, rows), Tol::ELEMENT.sum(x.len()));
    let mut out_shape = shape.to_vec();
    out_shape.remove(if shape.len() == 1 { 0 } else { 1 });
    let (gt, g) = upstream(dev, rng, &out_shape, loss.reduction);
    let dx = loss.backward(&xt, &yt, lt.as_ref(), &gt).unwrap().to_vec().unwrap();
    assert_close(
        &format!("{what} gradient"),
        &dx,
        &reference::tvd_backward(x, y, shape, rows, &g),
        Tol::ELEMENT,
    );
}

/// Labels of `n` rows with every third one ignored.
fn some_ignored(rng: &mut Rng, n: usize) -> Vec<i64> {
    let mut l = rng.classes(n, 7);
    for v in l.iter_mut().step_by(3) {
        *v = -100;
    }
    l
}

/// Rows of probabilities of `shape` (class dim 1).
fn probabilities(rng: &mut Rng, shape: &[usize]) -> Vec<f32> {
    let x = rng.values(shape.iter().product(), 3.0);
    let mut p = vec![0.0; x.len()];
    for row in wgpu_loss::reference::rows_along_dim(shape, 1) {
        let total: f64 = row.iter().map(|&i| (x[i] as f64).exp()).sum();
        for &i in &row {
            p[i] = ((x[i] as f64).exp() / total) as f32;
        }
    }
    p
}

/// PyTorch's values: the composition Liger Kernel's tests use as its reference (log_softmax of
/// logits / T, then F.kl_div terms), in float64, produced with torch 2.15 (CPU):
/// ```python
/// import torch, torch.nn.functional as F
/// def jsd(s, t, beta=0.5, T=1.0, labels=None, ignore_index=-100, reduction="batchmean"):
///     lq = F.log_softmax(s / T, dim=-1)
///     lp = F.log_softmax(t / T, dim=-1)
///     if beta == 0.0:
///         rows = F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1)   # KL(P || Q)
///     elif beta == 1.0:
///         rows = F.kl_div(lp, lq, reduction="none", log_target=True).sum(-1)   # KL(Q || P)
///     else:
///         lm = torch.log(torch.lerp(lq.exp(), lp.exp(), beta))
///         rows = (beta * F.kl_div(lm, lp, reduction="none", log_target=True).sum(-1)
///                 + (1 - beta) * F.kl_div(lm, lq, reduction="none", log_target=True).sum(-1))
///     keep = torch.ones_like(rows, dtype=torch.bool) if labels is None else labels != ignore_index
///     rows = torch.where(keep, rows, 0.0)
///     if reduction == "none": return rows
///     if reduction == "sum": return rows.sum()
///     return rows.sum() / keep.sum()
/// s = torch.tensor([[1., 2., 3., 0.5, -1.], [0., 0., 0., 0., 0.], [4., -2., 1., 3., 0.25]], dtype=torch.float64)
/// t = torch.tensor([[3., 2., 1., 0., 0.], [1., -1., 2., 0.5, 0.], [4., -1., 1., 2., 0.]], dtype=torch.float64)
/// labels = torch.tensor([3, -100, 1])
/// for beta, T, lab, red in [(0.5, 1.0, None, "batchmean"), (0.0, 1.0, None, "sum"), (1.0, 1.0, None, "none"),
///                           (0.3, 2.0, labels, "batchmean"), (1.0, 0.5, labels, "sum"), (0.0, 3.0, labels, "none")]:
///     x = s.clone().requires_grad_()
///     out = jsd(x, t, beta, T, lab, reduction=red)
///     out.sum().backward()
///     print(out.detach().flatten().tolist(), x.grad.flatten().tolist())
/// ```
#[allow(clippy::type_complexity)]
const JSD_GOLDEN: &[(f32, f32, bool, Reduction, &[f64], &[f64])] = &[
    (
        0.5,
        1.0,
        false,
        Reduction::Mean,
        &[0.11796972773026575],
        &[
            -2.3493881341e-02,
            -9.0357634982e-03,
            3.4306843476e-02,
            -1.4667156330e-04,
            -1.6305270738e-03,
            -3.7522447235e-03,
            1.5568931662e-02,
            -2.4691184963e-02,
            3.6932566705e-03,
            9.1812413547e-03,
            -1.2507096314e-02,
            -2.1986129617e-04,
            -6.2269165928e-04,
            1.3295694227e-02,
            5.3955042976e-05,
        ],
    ),
    (
        0.0,
        1.0,
        false,
        Reduction::Sum,
        &[1.5643167425916717],
        &[
            -5.3951864111e-01,
            -1.1829659949e-04,
            5.3915355873e-01,
            2.0124686764e-02,
            -1.9641307781e-02,
            -7.1239361275e-03,
            1.7196882344e-01,
            -3.6302123181e-01,
            7.4372982378e-02,
            1.2380336212e-01,
            -1.3364370092e-01,
            -3.8507535924e-03,
            -6.6537280745e-03,
            1.4299254425e-01,
            1.1556383288e-03,
        ],
    ),
    (
        1.0,
        1.0,
        false,
        Reduction::None,
        &[1.092050888071937, 0.4650000271936961, 0.0807613324135138],
        &[
            -2.6099360372e-01,
            -2.5064160230e-01,
            5.6586735337e-01,
            -3.0331970415e-02,
            -2.3900176936e-02,
            -1.0000000000e-01,
            3.0000000000e-01,
            -3.0000000000e-01,
            5.9396928798e-18,
            1.0000000000e-01,
            -1.7814352665e-01,
            -2.1585617352e-03,
            -8.8692439407e-03,
            1.8928828418e-01,
            -1.1695184953e-04,
        ],
    ),
    (
        0.3,
        2.0,
        true,
        Reduction::Mean,
        &[0.030894750564111544],
        &[
            -1.1689602864e-02,
            -9.6458820077e-04,
            1.3645033348e-02,
            9.7053425952e-04,
            -1.9613765426e-03,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            -3.3653842730e-03,
            -9.8779479078e-04,
            -7.5091873179e-04,
            5.1059581995e-03,
            -1.8604039238e-06,
        ],
    ),
    (
        1.0,
        0.5,
        true,
        Reduction::Sum,
        &[3.515764036317636],
        &[
            -2.3316510847e-01,
            -7.9010572626e-01,
            1.0541125042e+00,
            -2.7727147312e-02,
            -3.1145221085e-03,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            -4.1814359111e-01,
            -2.4158610162e-05,
            -1.0364743366e-03,
            4.1894963771e-01,
            2.5458633985e-04,
        ],
    ),
    (
        0.0,
        3.0,
        true,
        Reduction::None,
        &[0.11730704956023952, 0.0, 0.015536420109084362],
        &[
            -5.3949641288e-02,
            1.0331412377e-03,
            5.6131784081e-02,
            8.1255475327e-03,
            -1.1340831564e-02,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            -9.8296688245e-03,
            -8.9774892740e-03,
            -3.6161330741e-03,
            2.1967627100e-02,
            4.5566407312e-04,
        ],
    ),
];

const STUDENT: [f32; 15] = [1., 2., 3., 0.5, -1., 0., 0., 0., 0., 0., 4., -2., 1., 3., 0.25];
const TEACHER: [f32; 15] = [3., 2., 1., 0., 0., 1., -1., 2., 0.5, 0., 4., -1., 1., 2., 0.];
const LABELS: [i64; 3] = [3, -100, 1];

#[test]
fn jsd_matches_pytorch() {
    common::on_each(devices(), |dev| {
        for &(beta, temperature, labelled, reduction, want, grad) in JSD_GOLDEN {
            let loss = Jsd { beta, temperature, reduction, ..Jsd::default() };
            let what = format!("jsd β={beta} T={temperature} {reduction:?} on {}", label(dev));
            let labels = labelled.then_some(&LABELS[..]);
            let (x, y, l) = upload(dev, &STUDENT, &TEACHER, &[3, 5], labels);
            let got = loss.forward(&x, &y, l.as_ref()).unwrap().to_vec().unwrap();
            assert_close(&what, &got, want, Tol { abs: 1e-6, rel: 1e-5 });
            let ones = dev
                .tensor(&vec![1.0; got.len()], if reduction == Reduction::None { &[3] } else { &[] })
                .unwrap();
            let dx = loss.backward(&x, &y, l.as_ref(), &ones).unwrap().to_vec().unwrap();
            assert_close(&format!("{what} gradient"), &dx, grad, Tol { abs: 1e-7, rel: 1e-5 });
        }
    });
}

/// The same composition for tvd, `0.5 * (p - q).abs().sum(-1)` with ignored rows masked:
/// ```python
/// p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
/// q = torch.tensor([[0.25, 0.25, 0.5, 0.0], [0.4, 0.3, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]], dtype=torch.float64)
/// # batchmean: 0.3666666666666667, grad ±1/6 (0 where p == q); labels [0, 2, -100]: 0.325,
/// # grad ±0.25 on the first two rows; none: [0.25, 0.4, 0.45]
/// ```
#[test]
fn tvd_matches_pytorch() {
    let p = [0.5, 0.25, 0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.25, 0.25, 0.25, 0.25];
    let q = [0.25, 0.25, 0.5, 0.0, 0.4, 0.3, 0.2, 0.1, 0.7, 0.1, 0.1, 0.1];
    let sixth = 1.0 / 6.0;
    let signs = [1.0, 0.0, -1.0, 0.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0];
    common::on_each(devices(), |dev| {
        /// (labels, reduction, loss, gradient for an upstream gradient of ones)
        type Case<'a> = (Option<&'a [i64]>, Reduction, &'a [f64], Vec<f64>);
        let cases: [Case; 3] = [
            (None, Reduction::Mean, &[0.3666666666666667], signs.iter().map(|s| s * sixth).collect()),
            (
                Some(&[0, 2, -100]),
                Reduction::Mean,
                &[0.325],
                signs.iter().enumerate().map(|(i, s)| if i < 8 { s * 0.25 } else { 0.0 }).collect(),
            ),
            (None, Reduction::None, &[0.25, 0.4, 0.45], signs.iter().map(|s| s * 0.5).collect()),
        ];
        for (labels, reduction, want, grad) in cases {
            let what = format!("tvd {reduction:?} on {}", label(dev));
            let (x, y, l) = upload(dev, &p, &q, &[3, 4], labels);
            let loss = Tvd { reduction, ..Tvd::default() };
            let got = loss.forward(&x, &y, l.as_ref()).unwrap().to_vec().unwrap();
            assert_close(&what, &got, want, Tol::ELEMENT);
            let ones = dev
                .tensor(&vec![1.0; got.len()], if reduction == Reduction::None { &[3] } else { &[] })
                .unwrap();
            let dx = loss.backward(&x, &y, l.as_ref(), &ones).unwrap().to_vec().unwrap();
            assert_close(&format!("{what} gradient"), &dx, &grad, Tol::ELEMENT);
        }
    });
}

/// Vocabulary-sized rows (quads and not), and a strided class dim, by every strategy.
#[test]
fn every_strategy_on_wide_and_strided_rows() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(91);
        for shape in [&[5, 3000][..], &[3, 2999], &[2, 300, 3]] {
            let n: usize = shape.iter().product();
            let (x, y) = (rng.values(n, 6.0), rng.values(n, 6.0));
            let rows = shape[0] * shape[2..].iter().product::<usize>();
            let labels = some_ignored(&mut rng, rows);
            for strategy in STRATEGIES {
                for (beta, t) in [(0.0, 1.0), (1.0, 2.0), (0.5, 1.0), (0.2, 0.5)] {
                    let reduction = REDUCTIONS[rng.classes(1, 3)[0] as usize];
                    let loss = Jsd { beta, temperature: t, reduction, strategy, ..Jsd::default() };
                    check_jsd(dev, &loss, &x, &y, shape, Some(&labels), &mut rng, Tol::ELEMENT.sum(shape[1]));
                }
                let (p, q) = (probabilities(&mut rng, shape), probabilities(&mut rng, shape));
                for reduction in REDUCTIONS {
                    check_tvd(
                        dev,
                        &Tvd { reduction, strategy, ..Tvd::default() },
                        &p,
                        &q,
                        shape,
                        Some(&labels),
                        &mut rng,
                    );
                }
            }
        }
    });
}

/// Rows split into chunks by a 64 KiB binding limit, and rows spread over more threads by the
/// narrowest loop budget.
#[test]
fn chunked_and_budget_split_rows() {
    let mut rng = Rng::new(92);
    let cases: [(&[Device], &[usize]); 4] = [
        (small_binding_devices(), &[64, 1000]),
        (small_binding_devices(), &[40, 999]),
        (narrow_budget_devices(), &[2, 5001]),
        (narrow_budget_devices(), &[3, 8000]),
    ];
    for (devs, shape) in cases {
        for dev in devs {
            let n: usize = shape.iter().product();
            let (x, y) = (rng.values(n, 4.0), rng.values(n, 4.0));
            let labels = some_ignored(&mut rng, shape[0]);
            for reduction in REDUCTIONS {
                let loss = Jsd { reduction, beta: 0.4, ..Jsd::default() };
                check_jsd(dev, &loss, &x, &y, shape, Some(&labels), &mut rng, Tol::ELEMENT.sum(shape[1]));
                let (p, q) = (probabilities(&mut rng, shape), probabilities(&mut rng, shape));
                check_tvd(dev, &Tvd { reduction, ..Tvd::default() }, &p, &q, shape, None, &mut rng);
            }
        }
    }
}

/// Logits around ±10⁴ (T = 1 and 0.25): the log-probabilities come from (x − max) − log Σ, so
/// the loss keeps the digits of the small differences between the rows.
#[test]
fn large_magnitudes_keep_their_digits() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(93);
        let shape = [4, 64];
        let base: Vec<f32> = (0..4 * 64).map(|i| if i % 2 == 0 { 1.0e4 } else { -1.0e4 }).collect();
        let x: Vec<f32> = base.iter().zip(rng.values(256, 2.0)).map(|(b, v)| b + v).collect();
        let y: Vec<f32> = base.iter().zip(rng.values(256, 2.0)).map(|(b, v)| b + v).collect();
        for (beta, t) in [(0.5, 1.0), (0.0, 0.25), (1.0, 1.0)] {
            let loss = Jsd { beta, temperature: t, reduction: Reduction::None, ..Jsd::default() };
            check_jsd(dev, &loss, &x, &y, &shape, None, &mut rng, Tol { abs: 1e-5, rel: 1e-4 });
        }
    });
}

#[test]
fn ignored_and_empty_batches() {
    common::on_each(devices(), |dev| {
        let (x, y, l) = upload(dev, &STUDENT, &TEACHER, &[3, 5], Some(&[-100, -100, -100]));
        let g = dev.tensor(&[1.0], &[]).unwrap();
        for kind in ["jsd", "tvd"] {
            let forward = |reduction| -> Vec<f32> {
                let out = match kind {
                    "jsd" => Jsd { reduction, ..Jsd::default() }.forward(&x, &y, l.as_ref()),
                    _ => Tvd { reduction, ..Tvd::default() }.forward(&x, &y, l.as_ref()),
                };
                out.unwrap().to_vec().unwrap()
            };
            let what = format!("{kind} all ignored on {}", label(dev));
            assert!(forward(Reduction::Mean)[0].is_nan(), "{what}: the mean over no row is NaN");
            assert_eq!(forward(Reduction::Sum), [0.0], "{what}: sum");
            assert_eq!(forward(Reduction::None), [0.0; 3], "{what}: none");
            let dx = match kind {
                "jsd" => Jsd::default().backward(&x, &y, l.as_ref(), &g),
                _ => Tvd::default().backward(&x, &y, l.as_ref(), &g),
            };
            assert_eq!(dx.unwrap().to_vec().unwrap(), [0.0; 15], "{what}: gradient");
        }
        // No row at all.
        let empty = dev.tensor(&[], &[0, 5]).unwrap();
        let loss = Jsd::default();
        assert!(loss.forward(&empty, &empty, None).unwrap().item().unwrap().is_nan());
        let sum = Jsd { reduction: Reduction::Sum, ..Jsd::default() };
        assert_eq!(sum.forward(&empty, &empty, None).unwrap().item().unwrap(), 0.0);
        assert_eq!(loss.backward(&empty, &empty, None, &g).unwrap().shape(), &[0, 5]);
    });
}

#[test]
fn nan_rows_give_nan() {
    common::on_each(devices(), |dev| {
        let mut x = STUDENT;
        x[6] = f32::NAN;
        let (xt, yt, _) = upload(dev, &x, &TEACHER, &[3, 5], None);
        let g = dev.tensor(&[1.0; 3], &[3]).unwrap();
        let loss = Jsd { reduction: Reduction::None, ..Jsd::default() };
        let got = loss.forward(&xt, &yt, None).unwrap().to_vec().unwrap();
        assert!(!got[0].is_nan() && got[1].is_nan() && !got[2].is_nan(), "{got:?} on {}", label(dev));
        let dx = loss.backward(&xt, &yt, None, &g).unwrap().to_vec().unwrap();
        assert!(dx[5..10].iter().all(|v| v.is_nan()) && dx[..5].iter().all(|v| !v.is_nan()), "{dx:?}");
        let tvd = Tvd { reduction: Reduction::None, ..Tvd::default() };
        let got = tvd.forward(&xt, &yt, None).unwrap().to_vec().unwrap();
        assert!(got[1].is_nan() && !got[0].is_nan(), "{got:?}");
        let dx = tvd.backward(&xt, &yt, None, &g).unwrap().to_vec().unwrap();
        assert!(dx[6].is_nan() && !dx[5].is_nan() && !dx[7].is_nan(), "tvd: only the NaN element: {dx:?}");
    });
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = &devices()[0];
    let (x, y, l) = upload(dev, &STUDENT, &TEACHER, &[3, 5], Some(&LABELS));
    let invalid = |r: Result<Tensor, Error>| matches!(r, Err(Error::InvalidArgument { .. }));
    let shape = |r: Result<Tensor, Error>| matches!(r, Err(Error::Shape { .. }));
    for beta in [-0.1, 1.5, f32::NAN] {
        assert!(invalid(Jsd { beta, ..Jsd::default() }.forward(&x, &y, None)), "β = {beta}");
    }
    for temperature in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(invalid(Jsd { temperature, ..Jsd::default() }.forward(&x, &y, None)), "T = {temperature}");
    }
    let other = dev.tensor(&[0.0; 12], &[3, 4]).unwrap();
    assert!(shape(Jsd::default().forward(&x, &other, None)), "teacher of another shape");
    assert!(shape(Tvd::default().forward(&x, &other, None)), "tvd target of another shape");
    let two = dev.indices(&[1, 2], &[2]).unwrap();
    assert!(shape(Jsd::default().forward(&x, &y, Some(&two))), "labels of another shape");
    let scalar = dev.tensor(&[1.0], &[]).unwrap();
    assert!(shape(Jsd::default().forward(&scalar, &scalar, None)), "0-d input");
    let per_row = dev.tensor(&[1.0; 3], &[3]).unwrap();
    assert!(shape(Jsd::default().backward(&x, &y, l.as_ref(), &per_row)), "grad of the reduced loss");
    let none = Jsd { reduction: Reduction::None, ..Jsd::default() };
    assert!(shape(none.backward(&x, &y, l.as_ref(), &scalar)), "grad of per-row losses");
}
