//! The generic test of the loss catalogue: every loss × reduction × variant × test shape, on
//! every adapter, forward and backward against its f64 reference; every reference gradient
//! against finite differences of the reference forward; and PyTorch's own values for each loss.
//! A loss added to the catalogue is tested here with nothing else to write.

use crate::common;

use common::{adversarial_devices, devices, f64s, label};
use wgpu_loss::catalogue::{
    self, Args, Array, GradientOf, LOSSES, Loss, LossReduction, Operand, Options, Target, Variant,
};
use wgpu_loss::data::Rng;
use wgpu_loss::{DType, Device};

/// A loss, reduction, variant and shape, with its seed.
type Case = (&'static Loss, LossReduction, &'static Variant, &'static [usize], u64);

/// Every (loss, reduction, variant, shape) with its seed; only the losses named in
/// `WGPU_LOSS_ONLY` (comma-separated) when it is set, for work on a few losses (the run then
/// says so in its count line).
fn cases() -> Vec<Case> {
    let only = std::env::var("WGPU_LOSS_ONLY").ok();
    let mut out = Vec::new();
    for (l, loss) in LOSSES.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|n| n == loss.name)) {
            continue;
        }
        for (r, &reduction) in loss.reductions.iter().enumerate() {
            for (v, variant) in loss.variants.iter().enumerate() {
                for (s, &shape) in loss.test_shapes.iter().enumerate() {
                    let seed = ((l * 16 + r) * 16 + v) as u64 * 16 + s as u64;
                    out.push((*loss, reduction, variant, shape, seed));
                }
            }
        }
    }
    out
}

/// `|got − want| ≤ abs + rel·|want|` for each value (NaN matches NaN); the worst miss, if any.
fn miss(got: &[f32], want: &[f64], (abs, rel): (f64, f64)) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} values, the reference has {}", got.len(), want.len()));
    }
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let bad = if w.is_nan() || g.is_nan() {
            w.is_nan() != g.is_nan()
        } else if w.is_infinite() {
            g != w
        } else {
            (g - w).abs() > abs + rel * w.abs()
        };
        if bad {
            let excess =
                if g.is_finite() && w.is_finite() { (g - w).abs() / (abs + rel * w.abs()) } else { f64::MAX };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    worst.map(|(i, _)| format!("element {i}: got {}, want {}", got[i], want[i]))
}

/// One case on `dev` with every float operand of `dtype`, forward and backward against the
/// reference computed from the same (rounded) values: the misses, if any. Losses come back f32,
/// gradients (and log_softmax's, softmax's and linear's outputs) in the input's element type,
/// compared with the tolerance `Tolerance::for_dtype` argues (the loss's own for f32).
fn check_case(dev: &Device, case: Case, dtype: DType) -> Vec<String> {
    let (loss, reduction, variant, shape, seed) = case;
    let what = format!(
        "{} {dtype} reduction={} {} shape {:?} on {}",
        loss.name,
        reduction.name(),
        variant.name,
        shape,
        label(dev)
    );
    let mut misses = Vec::new();
    let args = loss.sample(seed, shape, variant, reduction).as_dtype(dtype);
    let inputs = args.upload(dev).unwrap_or_else(|e| panic!("{what}: upload: {e}"));
    // Everything is recorded before anything is read, as a training step would: under an
    // adversarial pool the upstream gradient's upload then reuses a buffer the forward released
    // and has not run yet.
    let out = (loss.forward)(&inputs).unwrap_or_else(|e| panic!("{what}: forward: {e}"));
    let g = Rng::new(seed ^ 0x5eed).values(out.numel(), 1.0);
    let gt = dev.tensor(&g, out.shape()).unwrap();
    // A function's backward is taken at the output it is given: at the unrounded forward here,
    // which the reference differentiates (a half output's rounding would reach the gradient, as
    // it does in PyTorch; tests/dtype.rs checks that path).
    let y = match out.dtype() {
        DType::F32 => out.clone(),
        _ => (loss.forward)(&inputs.with_f32_outputs()).unwrap_or_else(|e| panic!("{what}: forward: {e}")),
    };
    let grad = (loss.backward)(&inputs, &y, &gt).unwrap_or_else(|e| panic!("{what}: backward: {e}"));
    // And at the half output itself, as a user's graph holds it (PyTorch's half gradient): one
    // pass, against the reference taken at the same rounded values.
    let at_half = (out.dtype() != DType::F32)
        .then(|| (loss.backward)(&inputs, &out, &gt).unwrap_or_else(|e| panic!("{what}: backward: {e}")));
    let grads = (loss.backward_operands)(&inputs, &gt).unwrap_or_else(|e| panic!("{what}: backward: {e}"));
    // Where the op has a training step sharing work between the two, the same bits as both.
    let both = loss
        .forward_backward
        .map(|f| f(&inputs, &gt).unwrap_or_else(|e| panic!("{what}: forward_backward: {e}")));

    let tol = loss.tolerance.for_dtype(out.dtype());
    let want = (loss.reference)(&args).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    if let Some(m) = miss(&out.to_vec().unwrap(), &want, tol.forward) {
        misses.push(format!("{what}: forward {m}"));
    }
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    assert_eq!(grad.shape(), &args.input.shape[..], "{what}: the gradient has the input's shape");
    assert_eq!(grad.dtype(), dtype, "{what}: the gradient has the input's element type");
    let tol = loss.tolerance.for_dtype(grad.dtype());
    let want = (loss.reference_backward)(&args, &g64).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    if let Some(m) = miss(&grad.to_vec().unwrap(), &want, tol.backward) {
        misses.push(format!("{what}: backward {m}"));
    }
    if let Some(grad) = at_half {
        let y = Array::of_dtype(&out.to_vec().unwrap(), out.shape(), out.dtype());
        let at = Args { output: Some(y), ..args.clone() };
        let want = (loss.reference_backward)(&at, &g64).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
        if let Some(m) = miss(&grad.to_vec().unwrap(), &want, tol.backward) {
            misses.push(format!("{what}: backward at the half output {m}"));
        }
    }
    if let Some((loss_out, grad_out)) = both {
        let bits =
            |t: &wgpu_loss::Tensor| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&loss_out), bits(&out), "{what}: forward_backward's loss is forward's");
        assert_eq!(bits(&grad_out), bits(&grad), "{what}: forward_backward's gradient is backward's");
    }
    let wants =
        (loss.reference_backward_operands)(&args, &g64).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    assert_eq!((grads.len(), wants.len()), (loss.operands.len(), loss.operands.len()), "{what}");
    for ((&which, grad), want) in loss.operands.iter().zip(grads).zip(wants) {
        let operand = args.operand(which).unwrap_or_else(|| panic!("{what}: no {}", which.name()));
        assert_eq!(grad.shape(), &operand.shape[..], "{what}: the {} gradient has its shape", which.name());
        assert_eq!(grad.dtype(), dtype, "{what}: the {} gradient has its element type", which.name());
        let tol = loss.tolerance.for_dtype(grad.dtype());
        if let Some(m) = miss(&grad.to_vec().unwrap(), &want, tol.backward) {
            misses.push(format!("{what}: backward in {} {m}", which.name()));
        }
    }
    misses
}

/// Every case on every device in each of `dtypes`; fails listing every miss, else prints the
/// count (to stderr directly: the harness captures `eprintln!`, and CI shows the count).
fn check_all(dtypes: &[DType], what: &str) {
    check_all_on(devices(), dtypes, what)
}

/// [`check_all`] on `devs`.
fn check_all_on(devs: &[Device], dtypes: &[DType], what: &str) {
    let per_device = common::on_each(devs, |dev| {
        let mut failures = Vec::new();
        let mut runs = 0;
        for &dtype in dtypes {
            for case in cases() {
                failures.extend(check_case(dev, case, dtype));
                runs += 1;
            }
        }
        (failures, runs)
    });
    let runs: usize = per_device.iter().map(|(_, r)| r).sum();
    let failures: Vec<String> = per_device.into_iter().flat_map(|(f, _)| f).collect();
    assert!(failures.is_empty(), "{} of {runs} cases differ:\n{}", failures.len(), failures.join("\n"));
    let only = std::env::var("WGPU_LOSS_ONLY").map(|o| format!(" (only {o})")).unwrap_or_default();
    let line = format!(
        "catalogue: {runs} {what} cases (loss x reduction x variant x shape x device) match their references{only}\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

#[test]
fn every_loss_matches_its_reference_on_every_adapter() {
    check_all(&[DType::F32], "f32");
}

/// Every case again with every float operand in f16 and in bf16: the kernels decode the halves
/// and compute in f32.
#[test]
fn every_loss_in_half_precision_on_every_adapter() {
    check_all(&[DType::F16, DType::BF16], "half-precision (x f16, bf16)");
}

/// Every case in f32 again with an adversarial pool: each allocation gets the buffer released
/// last, nothing is submitted before a read, so an upload or a reuse ordered wrongly against
/// recorded work shows as a wrong number.
#[test]
fn every_loss_under_an_adversarial_pool() {
    check_all_on(adversarial_devices(), &[DType::F32], "f32 adversarial-pool");
}

/// log_softmax over rows of `cols` values.
fn log_softmax_rows(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.iter().map(move |v| v - lse)
        })
        .collect()
}

/// Σ reference(args)·g with the operand `which` (the input for `None`) set to `x`.
fn objective(loss: &Loss, args: &Args, which: Option<Operand>, x: &[f64], g: &[f64]) -> f64 {
    let mut a = args.clone();
    match which {
        // PyTorch's CTC gradient is in the logits z of lp = log_softmax(z): perturb z (= lp).
        None if loss.gradient == GradientOf::LogSoftmaxLogits => {
            a.input.data = log_softmax_rows(x, *a.input.shape.last().unwrap())
        }
        None => a.input.data = x.to_vec(),
        Some(w) => a.operand_mut(w).as_mut().expect("the operand is given").data = x.to_vec(),
    }
    let out = (loss.reference)(&a).unwrap();
    out.iter().zip(g).map(|(o, g)| o * g).sum()
}

/// Whether `value` of operand `which` is a gaussian_nll var below eps: PyTorch clamps it
/// without recording the clamp, so its gradient is not the derivative of the loss there (which
/// is 0) and finite differences cannot check it. `gaussian_nll`'s golden values check it against
/// PyTorch instead (`GOLDEN_OPERANDS`).
fn clamped_by_pytorch(loss: &Loss, args: &Args, which: Option<Operand>, value: f64) -> bool {
    let eps = args.options.eps.unwrap_or(1e-6) as f64;
    loss.name == "gaussian_nll" && which == Some(Operand::Var) && value < eps + 1e-5
}

#[test]
fn every_reference_gradient_matches_finite_differences() {
    let mut failures = Vec::new();
    let (mut checked, mut unclamped_skips) = (0, 0);
    for (loss, reduction, variant, shape, seed) in cases() {
        let args = loss.sample(seed, shape, variant, reduction);
        let out = (loss.reference)(&args).unwrap();
        let g = Rng::new(seed ^ 0x5eed).values(out.len(), 1.0);
        let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        let mut grads = vec![(None, args.input.data.clone(), (loss.reference_backward)(&args, &g).unwrap())];
        let others = (loss.reference_backward_operands)(&args, &g).unwrap();
        for (&which, grad) in loss.operands.iter().zip(others) {
            grads.push((Some(which), args.operand(which).unwrap().data.clone(), grad));
        }
        for (which, x, grad) in grads {
            let h = 1e-6;
            // A spread of elements, at most 16 per case and operand.
            let step = x.len().div_ceil(16).max(1);
            for i in (0..x.len()).step_by(step) {
                if clamped_by_pytorch(loss, &args, which, x[i]) {
                    unclamped_skips += 1;
                    continue;
                }
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let fd = (objective(loss, &args, which, &up, &g) - objective(loss, &args, which, &down, &g))
                    / (2.0 * h);
                if (fd - grad[i]).abs() > 1e-6 + 1e-5 * grad[i].abs() {
                    failures.push(format!(
                        "{} reduction={} {} shape {shape:?}: {} element {i}: analytic {}, finite difference {fd}",
                        loss.name,
                        reduction.name(),
                        variant.name,
                        which.map_or("input", |w| w.name()),
                        grad[i]
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} derivatives differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let line = format!(
        "catalogue: {checked} reference derivatives match finite differences; {unclamped_skips} gaussian_nll \
         var elements below eps are left to the PyTorch golden values\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

#[test]
fn the_catalogue_is_whole() {
    let mut names = std::collections::BTreeSet::new();
    for loss in LOSSES {
        assert!(names.insert(loss.name), "{} twice", loss.name);
        assert_eq!(catalogue::find(&loss.cli_name()).map(|l| l.name), Some(loss.name));
        assert!(!loss.reductions.is_empty() && !loss.variants.is_empty() && !loss.test_shapes.is_empty());
        let follows = ["torch.nn.functional.", "liger_kernel.transformers.", "torchvision.ops."];
        assert!(follows.iter().any(|f| loss.pytorch.starts_with(f)), "{}", loss.pytorch);
        let mut bench = std::collections::BTreeSet::new();
        for b in loss.bench {
            assert!(bench.insert(b.name), "{}: bench shape {} twice", loss.name, b.name);
        }
        assert!(loss.bench.iter().any(|b| b.quick), "{}: no quick bench shape", loss.name);
    }
    assert!(catalogue::find("no-such-loss").is_none());
}

/// One call of a loss with PyTorch's (or torchvision's) result, and its input gradient for an
/// upstream gradient of ones where given.
struct Golden {
    name: &'static str,
    reduction: LossReduction,
    options: fn(&mut Options),
    x: &'static [f32],
    y: &'static [f32],
    want: &'static [f64],
    grad: Option<&'static [f64]>,
}

const NO_OPTIONS: fn(&mut Options) = |_| {};

/// PyTorch's own values. Produced with torch 2.15 (CPU), e.g. for soft_margin:
/// ```python
/// import torch, torch.nn.functional as F
/// torch.set_printoptions(precision=10)
/// x = torch.tensor([0., 3., 1e-3, 20., -20., -50.], requires_grad=True)
/// y = torch.tensor([-1., -1., 1., -1., -1., 1.])
/// print(F.soft_margin_loss(x, y, reduction='none'))
/// loss = F.soft_margin_loss(x, y, reduction='sum'); print(loss)
/// loss.backward(); print(x.grad)
/// print(F.soft_margin_loss(x, y))
/// ```
/// and for the others in float64 on the same float32 inputs, so that the values are the
/// functions' own, not float32's rounding of them (torchvision's `sigmoid_focal_loss` written
/// out as torchvision defines it where torchvision was not installed; torchvision 0.29's own
/// `sigmoid_focal_loss` for targets outside [0, 1]):
/// ```python
/// def focal(x, t, alpha=0.25, gamma=2.0, reduction="none"):
///     p = torch.sigmoid(x)
///     ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
///     p_t = p * t + (1 - p) * (1 - t)
///     loss = ce * ((1 - p_t) ** gamma)
///     if alpha >= 0:
///         loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
///     return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
/// def show(name, f, x, y, grad):
///     x = torch.tensor(x).double().requires_grad_(); y = torch.tensor(y).double()
///     l = f(x, y)
///     print(name, "loss", ["%.10g" % v for v in l.detach().reshape(-1).tolist()])
///     if grad:
///         l.sum().backward(); print(name, "grad", ["%.10g" % v for v in x.grad.tolist()])
/// xf = [-3.0, -0.5, 0.0, 0.25, 2.0, 12.0]; yf = [1.0, 0.0, 1.0, 0.3, 0.0, 0.0]
/// show("focal none", lambda x, y: focal(x, y), xf, yf, True)
/// show("focal sum a-1 g1.5", lambda x, y: focal(x, y, -1, 1.5, "sum"), xf, yf, True)
/// show("focal mean g0 a0.6", lambda x, y: focal(x, y, 0.6, 0.0, "mean"), xf, yf, False)
/// from torchvision.ops import sigmoid_focal_loss
/// xw = [-1.2654215, 0.7, -2.0, 1.5, 0.3, 3.83]; yw = [-1.2654215, 1.548, -0.5, 2.0, 1.3, 3.83]
/// show("focal wide", lambda x, y: sigmoid_focal_loss(x, y), xw, yw, True)
/// show("focal wide a1 g3", lambda x, y: sigmoid_focal_loss(x, y, 1.0, 3.0), xw, yw, True)
/// show("focal wide g-1", lambda x, y: sigmoid_focal_loss(x, y, gamma=-1.0), xw, yw, True)
/// show("focal wide a-1 g-0.5", lambda x, y: sigmoid_focal_loss(x, y, -1, -0.5), xw, yw, True)
/// show("focal wide sum g1.5", lambda x, y: sigmoid_focal_loss(x, y, gamma=1.5, reduction="sum"),
///      xw, yw, True)
/// xp = [-1.0, 0.0, 0.5, 2.0, 3.0, 0.1]; yp = [0.0, 1.0, 2.0, 3.0, 0.5, 7.0]
/// show("poisson mean", lambda x, y: F.poisson_nll_loss(x, y), xp, yp, True)
/// show("poisson sum full", lambda x, y: F.poisson_nll_loss(x, y, full=True, reduction="sum"), xp, yp, False)
/// xq = [0.2, 0.5, 1.0, 2.0, 3.0, 0.1]
/// show("poisson none nolog eps0.5", lambda x, y: F.poisson_nll_loss(x, y, log_input=False, eps=0.5,
///      reduction="none"), xq, yp, True)
/// show("poisson none nolog, x + eps < 0", lambda x, y: F.poisson_nll_loss(x, y, log_input=False,
///      reduction="none"), [-0.5, 0.0, 2.0], [1.0, 0.0, 3.0], True)
/// xh = [-1.0, 0.5, 1.5, 2.0, 0.3, -0.2]; yh = [1.0, -1.0, -1.0, -1.0, 1.0, 0.5]
/// show("hinge none", lambda x, y: F.hinge_embedding_loss(x, y, reduction="none"), xh, yh, True)
/// show("hinge mean m0.5", lambda x, y: F.hinge_embedding_loss(x, y, margin=0.5), xh, yh, False)
/// ```
/// The issue's inputs with targets outside [0, 1] (x = t = −1.2654215 first).
#[allow(clippy::excessive_precision)]
const WIDE_X: [f32; 6] = [-1.2654215, 0.7, -2.0, 1.5, 0.3, 3.83];
#[allow(clippy::excessive_precision)]
const WIDE_Y: [f32; 6] = [-1.2654215, 1.548, -0.5, 2.0, 1.3, 3.83];

const GOLDEN: &[Golden] = &[
    Golden {
        name: "soft_margin",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        x: &[0.0, 3.0, 1e-3, 20.0, -20.0, -50.0],
        y: &[-1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        want: &[6.9314718246e-01, 3.0485873222, 6.9264727831e-01, 2.0e+01, 2.0611536922e-09, 5.0e+01],
        grad: None,
    },
    Golden {
        name: "soft_margin",
        reduction: LossReduction::Sum,
        options: NO_OPTIONS,
        x: &[0.0, 3.0, 1e-3, 20.0, -20.0, -50.0],
        y: &[-1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        want: &[74.4343795776],
        grad: Some(&[5.0e-01, 9.5257413387e-01, -4.9974998832e-01, 1.0, 2.0611536922e-09, -1.0]),
    },
    Golden {
        name: "soft_margin",
        reduction: LossReduction::Mean,
        options: NO_OPTIONS,
        x: &[0.0, 3.0, 1e-3, 20.0, -20.0, -50.0],
        y: &[-1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        want: &[12.4057302475],
        grad: None,
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        x: &[-3.0, -0.5, 0.0, 0.25, 2.0, 12.0],
        y: &[1.0, 0.0, 1.0, 0.3, 0.0, 0.0],
        want: &[0.6915701103, 0.05068011789, 0.04332169878, 0.1241253938, 1.237558635, 8.999894013],
        grad: Some(&[-0.2816874702, 0.103452748, -0.07457169878, 0.08990219183, 0.8075352978, 0.7500967695]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::Sum,
        options: |o| {
            o.alpha = -1.0;
            o.gamma = 1.5;
        },
        x: &[-3.0, -0.5, 0.0, 0.25, 2.0, 12.0],
        y: &[1.0, 0.0, 1.0, 0.3, 0.0, 0.0],
        want: &[17.23298563],
        grad: Some(&[-1.087248249, 0.190263458, -0.3605750972, 0.1800388121, 1.042470351, 1.000095234]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::Mean,
        options: |o| {
            o.alpha = 0.6;
            o.gamma = 0.0;
        },
        x: &[-3.0, -0.5, 0.0, 0.25, 2.0, 12.0],
        y: &[1.0, 0.0, 1.0, 0.3, 0.0, 0.0],
        want: &[1.405146218],
        grad: None,
    },
    // Targets outside [0, 1]: 1 − p_t < 0, raised to γ by PyTorch's pow rules.
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        x: &WIDE_X,
        y: &WIDE_Y,
        want: &[-0.4463387232, -1.022387509e-05, -0.05974562793, 0.06653909757, 0.006736807071, 91.08886216],
        grad: Some(&[1.597496659, 0.0005236910988, 0.1382911487, 0.1921119816, -0.02436218349, 33.39466805]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::None,
        options: |o| {
            o.alpha = 1.0;
            o.gamma = 3.0;
        },
        x: &WIDE_X,
        y: &WIDE_Y,
        want: &[-0.1995363612, 9.725321883e-05, -0.007814553556, 0.2409904671, 0.03335793563, 805.0927665],
        grad: Some(&[0.9616907814, -0.005287988811, 0.02436098586, 0.9339664479, -0.1548865023, 336.6373999]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::None,
        options: |o| o.gamma = -1.0,
        x: &WIDE_X,
        y: &WIDE_Y,
        want: &[3.829161972, -0.00318735112, 3.337505709, -0.7170971503, 0.1219126132, -4.687506652],
        grad: Some(&[0.5453830004, 0.1331332806, 0.3120500115, 0.05577600963, -0.06529851645, -0.9940360398]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::None,
        options: |o| {
            o.alpha = -1.0;
            o.gamma = -0.5;
        },
        x: &WIDE_X,
        y: &WIDE_Y,
        want: &[f64::NAN, 0.05100152193, f64::NAN, f64::NAN, 0.7524011463, f64::NAN],
        grad: Some(&[f64::NAN, -2.210649424, f64::NAN, f64::NAN, -0.7893148744, f64::NAN]),
    },
    Golden {
        name: "sigmoid_focal",
        reduction: LossReduction::Sum,
        options: |o| o.gamma = 1.5,
        x: &WIDE_X,
        y: &WIDE_Y,
        want: &[f64::NAN],
        grad: Some(&[f64::NAN, 0.001321730644, f64::NAN, f64::NAN, -0.03386975861, f64::NAN]),
    },
    Golden {
        name: "poisson_nll",
        reduction: LossReduction::Mean,
        options: NO_OPTIONS,
        x: &[-1.0, 0.0, 0.5, 2.0, 3.0, 0.1],
        y: &[0.0, 1.0, 2.0, 3.0, 0.5, 7.0],
        want: &[3.732727441],
        grad: Some(&[0.0613132402, 0.0, -0.05854645488, 0.7315093498, 3.264256154, -0.9824715134]),
    },
    Golden {
        name: "poisson_nll",
        reduction: LossReduction::Sum,
        options: |o| o.full = true,
        x: &[-1.0, 0.0, 0.5, 2.0, 3.0, 0.1],
        y: &[0.0, 1.0, 2.0, 3.0, 0.5, 7.0],
        want: &[33.32551732],
        grad: None,
    },
    Golden {
        name: "poisson_nll",
        reduction: LossReduction::None,
        options: |o| {
            o.log_input = false;
            o.eps = Some(0.5);
        },
        x: &[0.2, 0.5, 1.0, 2.0, 3.0, 0.1],
        y: &[0.0, 1.0, 2.0, 3.0, 0.5, 7.0],
        want: &[0.200000003, 0.5, 0.1890697838, -0.7488721956, 2.373618516, 3.67577935],
        grad: Some(&[1.0, 0.0, -0.3333333333, -0.2, 0.8571428571, -10.66666664]),
    },
    Golden {
        name: "poisson_nll",
        reduction: LossReduction::None,
        options: |o| o.log_input = false,
        x: &[-0.5, 0.0, 2.0],
        y: &[1.0, 0.0, 3.0],
        want: &[f64::NAN, 0.0, -0.07944155668],
        grad: Some(&[3.00000004, 1.0, -0.4999999925]),
    },
    Golden {
        name: "hinge_embedding",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        x: &[-1.0, 0.5, 1.5, 2.0, 0.3, -0.2],
        y: &[1.0, -1.0, -1.0, -1.0, 1.0, 0.5],
        want: &[-1.0, 0.5, 0.0, 0.0, 0.3000000119, 1.0],
        grad: Some(&[1.0, -1.0, 0.0, 0.0, 1.0, 0.0]),
    },
    Golden {
        name: "hinge_embedding",
        reduction: LossReduction::Mean,
        options: |o| o.margin = Some(0.5),
        x: &[-1.0, 0.5, 1.5, 2.0, 0.3, -0.2],
        y: &[1.0, -1.0, -1.0, -1.0, 1.0, 0.5],
        want: &[-0.03333333135],
        grad: None,
    },
];

#[test]
fn pytorch_golden_values() {
    for dev in devices() {
        for g in GOLDEN {
            let loss = catalogue::find(g.name).unwrap();
            let mut args = Args::new(Array::from_f32(g.x, &[g.x.len()]));
            args.target = Some(Target::Values(Array::from_f32(g.y, &[g.y.len()])));
            args.options.reduction = g.reduction;
            (g.options)(&mut args.options);
            let inputs = args.upload(dev).unwrap();
            let out = (loss.forward)(&inputs).unwrap();
            let what = format!("{} {} on {}", g.name, g.reduction.name(), label(dev));
            assert!(
                miss(&out.to_vec().unwrap(), g.want, (1e-6, 1e-6)).is_none(),
                "{what}: {:?}",
                out.to_vec()
            );
            if let Some(grad) = g.grad {
                let ones = catalogue::ones(dev, out.shape()).unwrap();
                let got = (loss.backward)(&inputs, &out, &ones).unwrap().to_vec().unwrap();
                // About 100 ulp (ARCHITECTURE.md's element tolerance): torchvision's 1 − p_t cancels
                // for targets outside [0, 1].
                assert!(miss(&got, grad, (1e-7, 1e-5)).is_none(), "{what} gradient: {got:?}");
            }
        }
    }
}

/// A call of a loss with an operand besides input and target (gaussian_nll's var,
/// margin_ranking's input2): PyTorch's loss and its gradients in the input and the operand for
/// an upstream gradient of ones on every output.
struct GoldenOperand {
    name: &'static str,
    reduction: LossReduction,
    options: fn(&mut Options),
    shape: &'static [usize],
    x: &'static [f32],
    y: &'static [f32],
    operand: (Operand, &'static [f32], &'static [usize]),
    want: &'static [f64],
    grad_input: &'static [f64],
    grad_operand: &'static [f64],
}

/// PyTorch's own values, from torch 2.15 (CPU) in float64 on these float32 inputs:
/// ```python
/// import torch, torch.nn.functional as F
/// def show(name, f, args, grads):
///     ts = [torch.tensor(a).double().requires_grad_() for a in args]
///     l = f(*ts)
///     print(name, "loss", ["%.10g" % v for v in l.detach().reshape(-1).tolist()])
///     l.sum().backward()
///     for k in grads:
///         print(name, "grad", k, ["%.10g" % v for v in ts[k].grad.reshape(-1).tolist()])
/// xg = [0.5, -1.0, 2.0, 0.0, 1.5, -0.25]; yg = [0.0, -1.0, 1.0, 0.5, -0.5, 0.25]
/// vg = [1.0, 0.5, 2e-7, 0.25, 3.0, 0.0]
/// show("gauss none", lambda x, y, v: F.gaussian_nll_loss(x, y, v, reduction="none"), [xg, yg, vg], [0, 2])
/// show("gauss mean full eps0.5", lambda x, y, v: F.gaussian_nll_loss(x, y, v, full=True, eps=0.5),
///      [xg, yg, vg], [0, 2])
/// show("gauss sum var per row", lambda x, y, v: F.gaussian_nll_loss(x.reshape(2, 3), y.reshape(2, 3), v,
///      reduction="sum"), [xg, yg, [0.5, 2.0]], [0, 2])
/// x1 = [1.0, -0.5, 2.0, 0.0, 0.3, -2.0]; x2 = [0.5, 0.5, 2.5, 0.0, 1.0, -1.0]
/// t = [1.0, -1.0, 1.0, -1.0, -1.0, 1.0]
/// show("rank none", lambda a, b, c: F.margin_ranking_loss(a, b, c, reduction="none"), [x1, x2, t], [0, 1])
/// show("rank mean m0.5", lambda a, b, c: F.margin_ranking_loss(a, b, c, margin=0.5), [x1, x2, t], [0, 1])
/// ```
/// The gaussian_nll cases hold vars below eps (2e-7 and 0), whose gradient PyTorch passes
/// through its clamp; margin_ranking's element 3 sits on the hinge (gradient 0 there).
const GOLDEN_OPERANDS: &[GoldenOperand] = &[
    GoldenOperand {
        name: "gaussian_nll",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[6],
        x: &[0.5, -1.0, 2.0, 0.0, 1.5, -0.25],
        y: &[0.0, -1.0, 1.0, 0.5, -0.5, 0.25],
        operand: (Operand::Var, &[1.0, 0.5, 2e-7, 0.25, 3.0, 0.0], &[6]),
        want: &[0.125, -0.3465735903, 499993.0922, -0.1931471806, 1.215972811, 124993.0922],
        grad_input: &[0.5, 0.0, 1000000.0, -2.0, 0.6666666667, -500000.0],
        grad_operand: &[0.375, 1.0, -4.999995e+11, 0.0, -0.05555555556, -1.249995e+11],
    },
    GoldenOperand {
        name: "gaussian_nll",
        reduction: LossReduction::Mean,
        options: |o| {
            o.full = true;
            o.eps = Some(0.5);
        },
        shape: &[6],
        x: &[0.5, -1.0, 2.0, 0.0, 1.5, -0.25],
        y: &[0.0, -1.0, 1.0, 0.5, -0.5, 0.25],
        operand: (Operand::Var, &[1.0, 0.5, 2e-7, 0.25, 3.0, 0.0], &[6]),
        want: &[1.161384942],
        grad_input: &[0.08333333333, 0.0, 0.3333333333, -0.1666666667, 0.1111111111, -0.1666666667],
        grad_operand: &[0.0625, 0.1666666667, -0.1666666667, 0.08333333333, -0.009259259259, 0.08333333333],
    },
    GoldenOperand {
        name: "gaussian_nll",
        reduction: LossReduction::Sum,
        options: NO_OPTIONS,
        shape: &[2, 3],
        x: &[0.5, -1.0, 2.0, 0.0, 1.5, -0.25],
        y: &[0.0, -1.0, 1.0, 0.5, -0.5, 0.25],
        operand: (Operand::Var, &[0.5, 2.0], &[2]),
        want: &[2.375],
        grad_input: &[1.0, 0.0, 2.0, -0.25, 1.0, -0.25],
        grad_operand: &[0.5, 0.1875],
    },
    GoldenOperand {
        name: "margin_ranking",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[6],
        x: &[1.0, -0.5, 2.0, 0.0, 0.3, -2.0],
        y: &[1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        operand: (Operand::Input2, &[0.5, 0.5, 2.5, 0.0, 1.0, -1.0], &[6]),
        want: &[0.0, 0.0, 0.5, 0.0, 0.0, 1.0],
        grad_input: &[0.0, 0.0, -1.0, 0.0, 0.0, -1.0],
        grad_operand: &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
    },
    GoldenOperand {
        name: "margin_ranking",
        reduction: LossReduction::Mean,
        options: |o| o.margin = Some(0.5),
        shape: &[6],
        x: &[1.0, -0.5, 2.0, 0.0, 0.3, -2.0],
        y: &[1.0, -1.0, 1.0, -1.0, -1.0, 1.0],
        operand: (Operand::Input2, &[0.5, 0.5, 2.5, 0.0, 1.0, -1.0], &[6]),
        want: &[0.5],
        grad_input: &[0.0, 0.0, -0.1666666667, 0.1666666667, 0.0, -0.1666666667],
        grad_operand: &[0.0, 0.0, 0.1666666667, -0.1666666667, 0.0, 0.1666666667],
    },
];

#[test]
fn pytorch_golden_values_with_operands() {
    for dev in devices() {
        for g in GOLDEN_OPERANDS {
            let loss = catalogue::find(g.name).unwrap();
            let mut args = Args::new(Array::from_f32(g.x, g.shape));
            args.target = Some(Target::Values(Array::from_f32(g.y, g.shape)));
            let (which, value, shape) = g.operand;
            *args.operand_mut(which) = Some(Array::from_f32(value, shape));
            args.options.reduction = g.reduction;
            (g.options)(&mut args.options);
            let inputs = args.upload(dev).unwrap();
            let what = format!("{} {} on {}", g.name, g.reduction.name(), label(dev));
            let out = (loss.forward)(&inputs).unwrap();
            let got = out.to_vec().unwrap();
            assert!(miss(&got, g.want, (1e-6, 1e-6)).is_none(), "{what}: {got:?}");
            let ones = catalogue::ones(dev, out.shape()).unwrap();
            let got = (loss.backward)(&inputs, &out, &ones).unwrap().to_vec().unwrap();
            assert!(miss(&got, g.grad_input, (1e-7, 1e-6)).is_none(), "{what} input gradient: {got:?}");
            let grads = (loss.backward_operands)(&inputs, &ones).unwrap();
            let got = grads[0].to_vec().unwrap();
            assert!(
                miss(&got, g.grad_operand, (1e-7, 1e-6)).is_none(),
                "{what} {} gradient: {got:?}",
                which.name()
            );
        }
    }
}

/// A call of a class-margin loss (class ids or float labels per row, class weights) with
/// PyTorch's loss and input gradient for an upstream gradient of ones.
struct GoldenRows {
    name: &'static str,
    reduction: LossReduction,
    options: fn(&mut Options),
    shape: &'static [usize],
    x: &'static [f32],
    target: RowTarget,
    weight: Option<&'static [f32]>,
    want: &'static [f64],
    grad: &'static [f64],
}

/// A row loss's target: class ids of a shape, or float labels of the input's shape.
enum RowTarget {
    Ids(&'static [i64], &'static [usize]),
    Labels(&'static [f32]),
}

const XM: &[f32] = &[0.1, 0.2, 0.4, 0.8, 1.5, -0.5, 0.5, 0.5, 0.0, 0.0, 1.0, -1.0];
const YL: &[f32] = &[1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.3, 1.0, 1.0, 0.0, 0.0];
const WM: &[f32] = &[0.5, 1.0, 2.0, 1.5];

/// PyTorch's own values, from torch 2.15 (CPU) in float64 on these float32 inputs:
/// ```python
/// import torch, torch.nn.functional as F
/// def show(name, f, x, grad=True):
///     x = torch.tensor(x).double().requires_grad_()
///     l = f(x)
///     print(name, "loss", ["%.10g" % v for v in l.detach().reshape(-1).tolist()])
///     if grad:
///         l.sum().backward(); print(name, "grad", ["%.10g" % v for v in x.grad.reshape(-1).tolist()])
/// xm = [[0.1, 0.2, 0.4, 0.8], [1.5, -0.5, 0.5, 0.5], [0.0, 0.0, 1.0, -1.0]]
/// tm = torch.tensor([3, 0, 1]); wm = torch.tensor([0.5, 1.0, 2.0, 1.5]).double()
/// show("mm none", lambda x: F.multi_margin_loss(x, tm, reduction="none"), xm)
/// show("mm mean p2 m0.5 w", lambda x: F.multi_margin_loss(x, tm, p=2, margin=0.5, weight=wm), xm)
/// show("mm sum unbatched", lambda x: F.multi_margin_loss(x, torch.tensor(2), reduction="sum"),
///      [0.3, -0.2, 0.1, 0.9])
/// yl = [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.3], [1.0, 1.0, 0.0, 0.0]]
/// show("ml none", lambda x: F.multilabel_soft_margin_loss(x, torch.tensor(yl).double(),
///      reduction="none"), xm)
/// show("ml mean w", lambda x: F.multilabel_soft_margin_loss(x, torch.tensor(yl).double(), weight=wm), xm)
/// ```
/// and for multilabel_margin (targets before the first −1 count; row 1 repeats class 1):
/// ```python
/// x = [[0.1, 0.2, 0.4, 0.8], [0.5, -0.3, 0.9, 0.0]]; y = torch.tensor([[3, 0, -1, 1], [1, 1, -1, 0]])
/// show("mlm none", lambda x: F.multilabel_margin_loss(x, y, reduction="none"), x)
/// show("mlm mean", lambda x: F.multilabel_margin_loss(x, y), x)
/// ```
/// Rows 1 and 2 of `xm` put multi_margin's hinge at 0 exactly for some classes (gradient 0).
const GOLDEN_ROWS: &[GoldenRows] = &[
    GoldenRows {
        name: "multilabel_margin",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[2, 4],
        x: &[0.1, 0.2, 0.4, 0.8, 0.5, -0.3, 0.9, 0.0],
        target: RowTarget::Ids(&[3, 0, -1, 1, 1, 1, -1, 0], &[2, 4]),
        weight: None,
        want: &[0.85, 2.65],
        grad: &[-0.5, 0.5, 0.5, -0.5, 0.5, -1.5, 0.5, 0.5],
    },
    GoldenRows {
        name: "multilabel_margin",
        reduction: LossReduction::Mean,
        options: NO_OPTIONS,
        shape: &[2, 4],
        x: &[0.1, 0.2, 0.4, 0.8, 0.5, -0.3, 0.9, 0.0],
        target: RowTarget::Ids(&[3, 0, -1, 1, 1, 1, -1, 0], &[2, 4]),
        weight: None,
        want: &[1.75],
        grad: &[-0.25, 0.25, 0.25, -0.25, 0.25, -0.75, 0.25, 0.25],
    },
    GoldenRows {
        name: "multi_margin",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[3, 4],
        x: XM,
        target: RowTarget::Ids(&[3, 0, 1], &[3]),
        weight: None,
        want: &[0.3249999937, 0.0, 0.75],
        grad: &[0.25, 0.25, 0.25, -0.75, 0.0, 0.0, 0.0, 0.0, 0.25, -0.5, 0.25, 0.0],
    },
    GoldenRows {
        name: "multi_margin",
        reduction: LossReduction::Mean,
        options: |o| {
            o.p = Some(2.0);
            o.margin = Some(0.5);
        },
        shape: &[3, 4],
        x: XM,
        target: RowTarget::Ids(&[3, 0, 1], &[3]),
        weight: Some(WM),
        want: &[0.2095833332],
        grad: &[
            0.0,
            0.0,
            0.02499999851,
            -0.02499999851,
            0.0,
            0.0,
            0.0,
            0.0,
            0.08333333333,
            -0.3333333333,
            0.25,
            0.0,
        ],
    },
    GoldenRows {
        name: "multi_margin",
        reduction: LossReduction::Sum,
        options: NO_OPTIONS,
        shape: &[4],
        x: &[0.3, -0.2, 0.1, 0.9],
        target: RowTarget::Ids(&[2], &[]),
        weight: None,
        want: &[0.9249999952],
        grad: &[0.25, 0.25, -0.75, 0.25],
    },
    GoldenRows {
        name: "multilabel_soft_margin",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[3, 4],
        x: XM,
        target: RowTarget::Labels(YL),
        weight: None,
        want: &[0.7816628636, 0.8684110561, 0.753204434],
        grad: &[
            -0.118755203,
            0.1374584995,
            -0.1003280846,
            0.1724936209,
            0.204393619,
            0.0943851672,
            -0.0943851672,
            0.08061482982,
            -0.125,
            -0.125,
            0.1827646447,
            0.06723535534,
        ],
    },
    GoldenRows {
        name: "multilabel_soft_margin",
        reduction: LossReduction::Mean,
        options: NO_OPTIONS,
        shape: &[3, 4],
        x: XM,
        target: RowTarget::Labels(YL),
        weight: Some(WM),
        want: &[0.962350704],
        grad: &[
            -0.01979253384,
            0.04581949984,
            -0.06688538974,
            0.08624681046,
            0.03406560317,
            0.0314617224,
            -0.0629234448,
            0.04030741491,
            -0.02083333333,
            -0.04166666667,
            0.1218430964,
            0.03361767767,
        ],
    },
];

#[test]
fn pytorch_golden_values_of_row_losses() {
    for dev in devices() {
        for g in GOLDEN_ROWS {
            let loss = catalogue::find(g.name).unwrap();
            let mut args = Args::new(Array::from_f32(g.x, g.shape));
            args.target = Some(match g.target {
                RowTarget::Ids(ids, shape) => Target::Ids { data: ids.to_vec(), shape: shape.to_vec() },
                RowTarget::Labels(y) => Target::Values(Array::from_f32(y, g.shape)),
            });
            args.weight = g.weight.map(|w| Array::from_f32(w, &[w.len()]));
            args.options.reduction = g.reduction;
            (g.options)(&mut args.options);
            let inputs = args.upload(dev).unwrap();
            let what = format!("{} {} on {}", g.name, g.reduction.name(), label(dev));
            let out = (loss.forward)(&inputs).unwrap();
            let got = out.to_vec().unwrap();
            assert!(miss(&got, g.want, (1e-6, 1e-6)).is_none(), "{what}: {got:?}");
            let ones = catalogue::ones(dev, out.shape()).unwrap();
            let got = (loss.backward)(&inputs, &out, &ones).unwrap().to_vec().unwrap();
            assert!(miss(&got, g.grad, (1e-7, 1e-6)).is_none(), "{what} gradient: {got:?}");
        }
    }
}

/// A call of an embedding loss: its inputs of one shape (input, input2 and for triplet_margin
/// input3), cosine_embedding's target per row, PyTorch's loss and each input's gradient for an
/// upstream gradient of ones.
struct GoldenEmbedding {
    name: &'static str,
    reduction: LossReduction,
    options: fn(&mut Options),
    shape: &'static [usize],
    inputs: &'static [&'static [f32]],
    target: Option<(&'static [f32], &'static [usize])>,
    want: &'static [f64],
    grads: &'static [&'static [f64]],
}

const C1: &[f32] = &[1.0, 0.0, 2.0, 0.5, 0.5, 0.0, 1.0, -1.0, 0.5];
const C2: &[f32] = &[0.0, 1.0, 1.0, 1.0, 1.0, 0.0, -1.0, 2.0, 0.5];
const CT: (&[f32], &[usize]) = (&[1.0, -1.0, -1.0], &[3]);
const TIA: &[f32] = &[0.0, 1.0, -1.0, 0.5, 0.5, 0.2];
const TIP: &[f32] = &[1.0, 0.0, 0.0, 0.0, 0.0, 0.2];
const TIN: &[f32] = &[0.0, 0.0, 1.0, 0.5, 0.5, 0.5];
const TA: &[f32] = &[0.0, 1.0, 1.0, 0.5, 0.3, -0.2];
const TP: &[f32] = &[2.0, 1.0, 0.0, 0.5, 0.1, 0.4];
const TN: &[f32] = &[1.0, 1.0, 1.5, 0.0, -0.5, 0.2];

/// PyTorch's own values, from torch 2.15 (CPU) in float64 on these float32 inputs:
/// ```python
/// import torch, torch.nn.functional as F
/// def show(name, f, args, grads):
///     ts = [torch.tensor(a).double().requires_grad_() for a in args]
///     l = f(*ts)
///     print(name, "loss", ["%.10g" % v for v in l.detach().reshape(-1).tolist()])
///     l.sum().backward()
///     for k in grads:
///         print(name, "grad", k, ["%.10g" % v for v in ts[k].grad.reshape(-1).tolist()])
/// c1 = [[1.0, 0.0, 2.0], [0.5, 0.5, 0.0], [1.0, -1.0, 0.5]]
/// c2 = [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [-1.0, 2.0, 0.5]]
/// ct = torch.tensor([1.0, -1.0, -1.0]).double()
/// show("cos none", lambda a, b: F.cosine_embedding_loss(a, b, ct, reduction="none"), [c1, c2], [0, 1])
/// show("cos mean m0.5", lambda a, b: F.cosine_embedding_loss(a, b, ct, margin=0.5), [c1, c2], [0, 1])
/// ta = [[0.0, 1.0], [1.0, 0.5], [0.3, -0.2]]; tp = [[2.0, 1.0], [0.0, 0.5], [0.1, 0.4]]
/// tn = [[1.0, 1.0], [1.5, 0.0], [-0.5, 0.2]]
/// show("tri none", lambda a, p, n: F.triplet_margin_loss(a, p, n, reduction="none"), [ta, tp, tn], [0, 1, 2])
/// show("tri sum swap eps0 p1", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=1, eps=0.0, swap=True,
///      reduction="sum"), [ta, tp, tn], [0, 1, 2])
/// show("tri mean p3 m0.5", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=3, margin=0.5), [ta, tp, tn],
///      [0, 1, 2])
/// ```
/// and for the max norm and the count norm (PyTorch's p = ∞ shares the gradient between the two
/// elements at the max of row 1's a − p; its p = 0 passes no gradient, zeros here):
/// ```python
/// a = [[0.0, 1.0, -1.0], [0.5, 0.5, 0.2]]; p = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.2]]
/// n = [[0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]
/// show("tri none inf", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=float("inf"), eps=0.0,
///      reduction="none"), [a, p, n], [0, 1, 2])
/// print(F.triplet_margin_loss(*[torch.tensor(v) for v in (a, p, n)], p=0.0, eps=0.0, reduction="none"))
/// ```
/// The swapped p = 1 case ties d(a, n) and d(p, n) in row 0 (PyTorch splits the gradient) and
/// has a difference of 0 exactly (gradient 0 there).
const GOLDEN_EMBEDDING: &[GoldenEmbedding] = &[
    GoldenEmbedding {
        name: "triplet_margin",
        reduction: LossReduction::None,
        options: |o| {
            o.p = Some(f32::INFINITY);
            o.eps = Some(0.0);
        },
        shape: &[2, 3],
        inputs: &[TIA, TIP, TIN],
        target: None,
        want: &[0.0, 1.2],
        grads: &[
            &[0.0, 0.0, 0.0, 0.5, 0.5, 1.0],
            &[0.0, 0.0, 0.0, -0.5, -0.5, 0.0],
            &[0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        ],
    },
    GoldenEmbedding {
        name: "triplet_margin",
        reduction: LossReduction::None,
        options: |o| {
            o.p = Some(0.0);
            o.eps = Some(0.0);
        },
        shape: &[2, 3],
        inputs: &[TIA, TIP, TIN],
        target: None,
        want: &[2.0, 2.0],
        grads: &[&[0.0; 6], &[0.0; 6], &[0.0; 6]],
    },
    GoldenEmbedding {
        name: "cosine_embedding",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[3, 3],
        inputs: &[C1, C2],
        target: Some(CT),
        want: &[0.367544468, 1.0, 0.0],
        grads: &[
            &[
                0.1264911064,
                -0.316227766,
                -0.0632455532,
                1.999733712e-12,
                1.999733712e-12,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            &[-0.316227766, 0.316227766, -0.316227766, 2.499112028e-13, 2.499112028e-13, 0.0, 0.0, 0.0, 0.0],
        ],
    },
    GoldenEmbedding {
        name: "cosine_embedding",
        reduction: LossReduction::Mean,
        options: |o| o.margin = Some(0.5),
        shape: &[3, 3],
        inputs: &[C1, C2],
        target: Some(CT),
        want: &[0.2891814893],
        grads: &[
            &[
                0.04216370214,
                -0.1054092553,
                -0.02108185107,
                6.66577904e-13,
                6.66577904e-13,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            &[-0.1054092553, 0.1054092553, -0.1054092553, 8.3322238e-14, 8.3322238e-14, 0.0, 0.0, 0.0, 0.0],
        ],
    },
    GoldenEmbedding {
        name: "triplet_margin",
        reduction: LossReduction::None,
        options: NO_OPTIONS,
        shape: &[3, 2],
        inputs: &[TA, TP, TN],
        target: None,
        want: &[2.0, 1.292894219, 0.7380272598],
        grads: &[
            &[-3.749223154e-13, -5.0000075e-07, 1.707105367, -0.7071071954, -0.5781981878, -0.5014704082],
            &[1.0, -5.0000025e-07, -1.0, -9.99999e-07, -0.316229674, 0.9486826621],
            &[-1.0, 1.000001e-06, -0.707105367, 0.7071081954, 0.8944278618, -0.4472122539],
        ],
    },
    GoldenEmbedding {
        name: "triplet_margin",
        reduction: LossReduction::Sum,
        options: |o| {
            o.p = Some(1.0);
            o.eps = Some(0.0);
            o.swap = true;
        },
        shape: &[3, 2],
        inputs: &[TA, TP, TN],
        target: None,
        want: &[4.000000015],
        grads: &[
            &[-0.5, 0.0, 2.0, -1.0, 1.0, -1.0],
            &[0.5, 0.0, -1.0, 0.0, -2.0, 0.0],
            &[0.0, 0.0, -1.0, 1.0, 1.0, 1.0],
        ],
    },
    GoldenEmbedding {
        name: "triplet_margin",
        reduction: LossReduction::Mean,
        options: |o| {
            o.p = Some(3.0);
            o.margin = Some(0.5);
        },
        shape: &[3, 2],
        inputs: &[TA, TP, TN],
        target: None,
        want: &[0.8817743922],
        grads: &[
            &[0.0, -2.500005833e-13, 0.543319335, -0.2099876816, -0.2720104871, -0.2483090346],
            &[0.3333333333, -8.333341667e-14, -0.3333333333, -3.333326667e-13, -0.0361503361, 0.3253486626],
            &[-0.3333333333, 3.33334e-13, -0.2099860017, 0.2099876816, 0.3081608232, -0.07703962799],
        ],
    },
];

#[test]
fn pytorch_golden_values_of_embedding_losses() {
    for dev in devices() {
        for g in GOLDEN_EMBEDDING {
            let loss = catalogue::find(g.name).unwrap();
            let mut args = Args::new(Array::from_f32(g.inputs[0], g.shape));
            for (&which, data) in loss.operands.iter().zip(&g.inputs[1..]) {
                *args.operand_mut(which) = Some(Array::from_f32(data, g.shape));
            }
            args.target = g.target.map(|(y, shape)| Target::Values(Array::from_f32(y, shape)));
            args.options.reduction = g.reduction;
            (g.options)(&mut args.options);
            let inputs = args.upload(dev).unwrap();
            let what = format!("{} {} on {}", g.name, g.reduction.name(), label(dev));
            let out = (loss.forward)(&inputs).unwrap();
            let got = out.to_vec().unwrap();
            assert!(miss(&got, g.want, (1e-6, 1e-6)).is_none(), "{what}: {got:?}");
            let ones = catalogue::ones(dev, out.shape()).unwrap();
            let mut grads = vec![(loss.backward)(&inputs, &out, &ones).unwrap()];
            grads.extend((loss.backward_operands)(&inputs, &ones).unwrap());
            assert_eq!(grads.len(), g.grads.len(), "{what}");
            for (k, (grad, want)) in grads.iter().zip(g.grads).enumerate() {
                let got = grad.to_vec().unwrap();
                assert!(miss(&got, want, (1e-7, 1e-6)).is_none(), "{what} gradient {k}: {got:?}");
            }
        }
    }
}

#[test]
fn soft_margin_stays_finite_where_pytorch_overflows() {
    // PyTorch float32 gives inf (and a NaN gradient) at y·x = −100; the stable softplus gives
    // the exact 100 and gradient −y.
    let loss = catalogue::find("soft_margin").unwrap();
    for dev in devices() {
        let mut args = Args::new(Array::from_f32(&[-100.0, 100.0], &[2]));
        args.target = Some(Target::Values(Array::from_f32(&[1.0, -1.0], &[2])));
        args.options.reduction = LossReduction::None;
        let inputs = args.upload(dev).unwrap();
        let out = (loss.forward)(&inputs).unwrap();
        assert_eq!(out.to_vec().unwrap(), [100.0, 100.0], "{}", label(dev));
        let ones = catalogue::ones(dev, &[2]).unwrap();
        let grad = (loss.backward)(&inputs, &out, &ones).unwrap().to_vec().unwrap();
        assert_eq!(grad, [-1.0, 1.0], "{}", label(dev));
    }
}

/// `1e19·randn(3, 8)` as float32 (`torch.manual_seed(0)`), the input of PyTorch's values below.
#[allow(clippy::excessive_precision)]
const HUGE: [f32; 24] = [
    -1.1258399e+19,
    -1.1523602e+19,
    -2.5057859e+18,
    -4.3387881e+18,
    8.4871033e+18,
    6.9200914e+18,
    -3.1601278e+18,
    -2.1152194e+19,
    4.680964e+18,
    -1.5771245e+18,
    1.4436601e+19,
    2.6604941e+18,
    1.6645534e+18,
    8.7438184e+18,
    -1.4347384e+18,
    -1.1160933e+18,
    9.3182654e+18,
    1.2590092e+19,
    2.0049806e+19,
    5.3736903e+17,
    6.1805665e+18,
    -4.1280221e+18,
    -8.4106482e+18,
    -2.3160419e+19,
];

/// Each row reversed: the other input.
fn reversed_rows(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols).flat_map(|r| r.iter().rev().copied()).collect()
}

/// cosine_embedding where |x|² overflows float32 (PyTorch's float32 gives NaN, NaN, 0 here): the
/// float64 answer, from torch 2.15 in float64 on these float32 inputs:
/// ```python
/// torch.manual_seed(0); x1 = (torch.randn(3, 8) * 1e19).float(); x2 = x1.flip(1)
/// a, b = x1.double().requires_grad_(), x2.double().requires_grad_()
/// l = F.cosine_embedding_loss(a, b, torch.tensor([1., -1., 1.]).double(), reduction="none")
/// l.sum().backward()  # l, a.grad (b.grad is a.grad with each row reversed)
/// ```
#[test]
fn cosine_embedding_where_squares_overflow_float32() {
    let loss = catalogue::find("cosine_embedding").unwrap();
    #[allow(clippy::excessive_precision)]
    let want_grad = [
        1.786027174e-20,
        -3.170271635e-21,
        -9.514806449e-21,
        -1.242018962e-20,
        1.006859953e-20,
        7.012432233e-21,
        1.14941601e-20,
        5.12591183e-22,
        -1.496167138e-20,
        -5.752420803e-22,
        -8.348278858e-21,
        -1.373575595e-21,
        4.16216511e-21,
        2.329393545e-20,
        -1.366667103e-21,
        1.72601343e-20,
        1.332323325e-20,
        5.343277241e-22,
        -6.222312596e-21,
        -4.969185791e-21,
        -3.299670544e-21,
        -1.337521698e-20,
        -5.678649249e-21,
        3.71455693e-21,
    ];
    let want_grad2: Vec<f64> = want_grad.chunks(8).flat_map(|r| r.iter().rev().copied()).collect();
    for dev in devices() {
        let mut args = Args::new(Array::from_f32(&HUGE, &[3, 8]));
        args.input2 = Some(Array::from_f32(&reversed_rows(&HUGE, 8), &[3, 8]));
        args.target = Some(Target::Values(Array::from_f32(&[1.0, -1.0, 1.0], &[3])));
        args.options.reduction = LossReduction::None;
        let inputs = args.upload(dev).unwrap();
        let what = format!("cosine_embedding at 1e19 on {}", label(dev));
        let out = (loss.forward)(&inputs).unwrap();
        let got = out.to_vec().unwrap();
        assert!(
            miss(&got, &[0.4886317187, 0.7921175068, 1.612439898], (1e-6, 1e-6)).is_none(),
            "{what}: {got:?}"
        );
        let ones = catalogue::ones(dev, out.shape()).unwrap();
        let d1 = (loss.backward)(&inputs, &out, &ones).unwrap().to_vec().unwrap();
        let d2 = (loss.backward_operands)(&inputs, &ones).unwrap().remove(0).to_vec().unwrap();
        // Gradients of order 1e-20: relative.
        assert!(miss(&d1, &want_grad, (1e-26, 1e-5)).is_none(), "{what}: d1 {d1:?}");
        assert!(miss(&d2, &want_grad2, (1e-26, 1e-5)).is_none(), "{what}: d2 {d2:?}");
    }
}

/// The embedding losses at every magnitude a finite float32 takes, tiny to huge, against their
/// f64 references, loss and gradients relative to their size: squares and p-th powers of the
/// values (or of triplet's differences) would overflow or underflow float32 unscaled.
#[test]
fn embedding_losses_at_extreme_magnitudes() {
    use wgpu_loss::reference::embedding_rows as er;
    let cols = 8;
    let base: Vec<f32> = HUGE.iter().map(|v| v / 1e19).collect();
    let second = reversed_rows(&base, cols);
    let third: Vec<f32> = base.iter().zip(&second).map(|(a, b)| 0.5 * a - b).collect();
    let none = wgpu_loss::Reduction::None;
    for dev in devices() {
        for scale in [1e-30f32, 1e-20, 1e-3, 1e19, 1e30, 3e37] {
            let x: Vec<f32> = base.iter().map(|v| v * scale).collect();
            let x2: Vec<f32> = second.iter().map(|v| v * scale).collect();
            let (x64, x2_64) = (f64s(&x), f64s(&x2));
            let what = format!("at {scale:e} on {}", label(dev));
            // cosine: a row of each target kind (its loss and gradient scale-free, ~1/scale).
            let (c1, c2) = (dev.tensor(&x, &[3, cols]).unwrap(), dev.tensor(&x2, &[3, cols]).unwrap());
            let t = dev.tensor(&[1.0, -1.0, 0.5], &[3]).unwrap();
            let ones = dev.tensor(&[1.0; 3], &[3]).unwrap();
            let cos = wgpu_loss::CosineEmbedding::default().reduction(none);
            let got = cos.forward(&c1, &c2, &t).unwrap().to_vec().unwrap();
            let want = er::cosine_embedding(&x64, &x2_64, cols, &[1.0, -1.0, 0.5], 0.0, none);
            assert!(miss(&got, &want, (1e-6, 1e-5)).is_none(), "cosine {what}: {got:?} {want:?}");
            let (d1, d2) = cos.backward(&c1, &c2, &t, &ones).unwrap();
            let (w1, w2) =
                er::cosine_embedding_backward(&x64, &x2_64, cols, &[1.0, -1.0, 0.5], 0.0, &[1.0; 3], none);
            let tiny = 1e-6 / scale as f64;
            assert!(miss(&d1.to_vec().unwrap(), &w1, (tiny, 1e-5)).is_none(), "cosine {what}: d1");
            assert!(miss(&d2.to_vec().unwrap(), &w2, (tiny, 1e-5)).is_none(), "cosine {what}: d2");
            // triplet: each norm, with a margin of the distances' size (the differences stay
            // below float32's largest; past it a distance is inf, as float32 computes it).
            let scale3 = scale.min(1e36);
            let x3: Vec<f32> = third.iter().map(|v| v * scale3).collect();
            let (a, p): (Vec<f32>, Vec<f32>) =
                (base.iter().map(|v| v * scale3).collect(), second.iter().map(|v| v * scale3).collect());
            let (at, pt, nt) = (
                dev.tensor(&a, &[3, cols]).unwrap(),
                dev.tensor(&p, &[3, cols]).unwrap(),
                dev.tensor(&x3, &[3, cols]).unwrap(),
            );
            let (a64, p64, n64) = (f64s(&a), f64s(&p), f64s(&x3));
            for (norm, swap) in
                [(2.0f32, false), (1.0, true), (3.0, false), (f32::INFINITY, true), (0.0, false)]
            {
                let margin = scale3 * 2.0;
                let l = wgpu_loss::TripletMargin::default()
                    .margin(margin)
                    .p(norm)
                    .eps(0.0)
                    .swap(swap)
                    .reduction(none);
                let o = er::Triplet { margin: margin as f64, p: norm as f64, eps: 0.0, swap };
                let what = format!("triplet p={norm} swap={swap} {what}");
                let got = l.forward(&at, &pt, &nt).unwrap().to_vec().unwrap();
                let want = er::triplet_margin(&a64, &p64, &n64, cols, o, none);
                // The loss is margin + d(a, p) − d(a, n): a few ulp of the distances' size (the
                // count norm's distances are counts, whatever the scale).
                let size = if norm == 0.0 { cols as f64 } else { scale3 as f64 };
                assert!(miss(&got, &want, (1e-6 * size, 1e-5)).is_none(), "{what}: {got:?} {want:?}");
                let grads = l.backward(&at, &pt, &nt, &ones).unwrap();
                let wants = er::triplet_margin_backward(&a64, &p64, &n64, cols, o, &[1.0; 3], none);
                for (k, (got, want)) in
                    [(grads.0, wants.0), (grads.1, wants.1), (grads.2, wants.2)].into_iter().enumerate()
                {
                    let got = got.to_vec().unwrap();
                    assert!(
                        miss(&got, &want, (1e-6, 1e-5)).is_none(),
                        "{what}: gradient {k}: {got:?} {want:?}"
                    );
                }
            }
        }
    }
}

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;
const NAN64: f64 = f64::NAN;

/// triplet_margin where distances pass float32's largest, or rows hold infinities and NaN:
/// PyTorch's values, from torch 2.15 in float64 on these float32 inputs (eps = 0):
/// ```python
/// def show(name, A, P, N, **kw):
///     a, p, n = [torch.tensor(v, dtype=torch.float32).double().requires_grad_() for v in (A, P, N)]
///     l = F.triplet_margin_loss(a, p, n, reduction="none", eps=0.0, **kw); l.sum().backward()
///     print(name, l.tolist(), a.grad.tolist(), p.grad.tolist(), n.grad.tolist())
/// show("huge p1", [[3e38, 1.0]], [[-3e38, 1.0]], [[-2e38, 1.0]], p=1)
/// show("swap inf", [[1.0, 2.0]], [[inf, 2.0]], [[0.0, 1.0]], swap=True)
/// show("a p inf", [[inf, 2.0]], [[inf, 2.0]], [[0.0, 1.0]])
/// show("nan a p2", [[nan, 1.0], [1.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [0.5, 1.0]])
/// show("nan n p2", [[1.0, 1.0]], [[0.0, 1.0]], [[nan, 1.0]])
/// show("nan a p1", [[nan, 1.0, 3.0]], [[1.0, 1.0, 1.0]], [[0.0, 1.0, 0.0]], p=1)
/// show("nan a pinf", [[nan, 1.0]], [[1.0, 1.0]], [[0.0, 1.0]], p=inf)
/// show("nan n swap p3", [[1.0, 2.0]], [[0.0, 1.0]], [[nan, 1.0]], p=3, swap=True)
/// print(F.triplet_margin_loss(*[torch.tensor(v) for v in ([[nan, 1.0]], [[1.0, 1.0]], [[0.0, 3.0]])],
///       p=0, eps=0.0, reduction="none"))  # 0: the count norm counts NaN as non-zero
/// ```
#[test]
fn triplet_margin_past_float32_and_with_infinities_and_nan() {
    let loss = catalogue::find("triplet_margin").unwrap();
    type Case = (
        &'static str,
        fn(&mut Options),
        [usize; 2],
        [&'static [f32]; 3],
        &'static [f64],
        Option<[&'static [f64]; 3]>,
    );
    let cases: [Case; 9] = [
        (
            "huge p1",
            |o| o.p = Some(1.0),
            [1, 2],
            [&[3e38, 1.0], &[-3e38, 1.0], &[-2e38, 1.0]],
            &[1.0000000694406173e38],
            Some([&[0.0, 0.0], &[-1.0, 0.0], &[1.0, 0.0]]),
        ),
        (
            "swap inf",
            |o| o.swap = true,
            [1, 2],
            [&[1.0, 2.0], &[INF, 2.0], &[0.0, 1.0]],
            &[f64::INFINITY],
            Some([&[NAN64, -0.7071067811865475], &[NAN64, 0.0], &[NAN64, 0.7071067811865475]]),
        ),
        (
            "a p inf",
            |_| {},
            [1, 2],
            [&[INF, 2.0], &[INF, 2.0], &[0.0, 1.0]],
            &[NAN64],
            Some([&[NAN64, NAN64], &[NAN64, NAN64], &[NAN64, 0.0]]),
        ),
        (
            "nan a p2",
            |_| {},
            [2, 2],
            [&[NAN, 1.0, 1.0, 2.0], &[1.0, 1.0, 1.0, 1.0], &[0.0, 1.0, 0.5, 1.0]],
            &[NAN64, 0.8819660112501051],
            Some([
                &[NAN64, NAN64, -0.4472135954999579, 0.10557280900008414],
                &[NAN64, NAN64, 0.0, -1.0],
                &[NAN64, NAN64, 0.4472135954999579, 0.8944271909999159],
            ]),
        ),
        (
            "nan n p2",
            |_| {},
            [1, 2],
            [&[1.0, 1.0], &[0.0, 1.0], &[NAN, 1.0]],
            &[NAN64],
            Some([&[NAN64, NAN64], &[0.0, 0.0], &[NAN64, NAN64]]),
        ),
        (
            "nan a p1",
            |o| o.p = Some(1.0),
            [1, 3],
            [&[NAN, 1.0, 3.0], &[1.0, 1.0, 1.0], &[0.0, 1.0, 0.0]],
            &[NAN64],
            Some([&[0.0; 3], &[0.0; 3], &[0.0; 3]]),
        ),
        (
            "nan a pinf",
            |o| o.p = Some(f32::INFINITY),
            [1, 2],
            [&[NAN, 1.0], &[1.0, 1.0], &[0.0, 1.0]],
            &[NAN64],
            Some([&[0.0; 2], &[0.0; 2], &[0.0; 2]]),
        ),
        (
            "nan n swap p3",
            |o| {
                o.p = Some(3.0);
                o.swap = true
            },
            [1, 2],
            [&[1.0, 2.0], &[0.0, 1.0], &[NAN, 1.0]],
            &[NAN64],
            Some([&[NAN64, NAN64], &[NAN64, NAN64], &[NAN64, NAN64]]),
        ),
        ("nan a p0", |o| o.p = Some(0.0), [1, 2], [&[NAN, 1.0], &[1.0, 1.0], &[0.0, 3.0]], &[0.0], None),
    ];
    for dev in devices() {
        for (name, options, shape, [a, p, n], want, grads) in &cases {
            let mut args = Args::new(Array::from_f32(a, shape));
            args.input2 = Some(Array::from_f32(p, shape));
            args.input3 = Some(Array::from_f32(n, shape));
            args.options.reduction = LossReduction::None;
            args.options.eps = Some(0.0);
            options(&mut args.options);
            let inputs = args.upload(dev).unwrap();
            let what = format!("triplet_margin {name} on {}", label(dev));
            let out = (loss.forward)(&inputs).unwrap();
            let got = out.to_vec().unwrap();
            assert!(miss(&got, want, (1e-6, 1e-6)).is_none(), "{what}: {got:?}");
            let Some(grads) = grads else { continue };
            let ones = catalogue::ones(dev, out.shape()).unwrap();
            let mut got = vec![(loss.backward)(&inputs, &out, &ones).unwrap()];
            got.extend((loss.backward_operands)(&inputs, &ones).unwrap());
            for (k, (g, w)) in got.iter().zip(grads).enumerate() {
                let g = g.to_vec().unwrap();
                assert!(miss(&g, w, (1e-7, 1e-6)).is_none(), "{what} gradient {k}: {g:?}");
            }
        }
    }
}
