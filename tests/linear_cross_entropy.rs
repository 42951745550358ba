//! The fused linear + cross-entropy on every adapter: against the f64 reference of the
//! composition for every option, against the unfused GPU composition, with W sharded, with tiny
//! scratch budgets, and bitwise reproducible.

use crate::common;

use common::{
    Rng, Tol, adversarial_devices, adversarial_small_binding_devices, assert_close, devices,
    small_binding_devices,
};
use wgpu_loss::catalogue::Tolerance;
use wgpu_loss::reference::linear_cross_entropy::{self as lce_ref, Options};
use wgpu_loss::{
    CrossEntropy, DType, Device, Error, Linear, LinearCrossEntropy, Reduction, Tensor, TokenGrads,
    cross_entropy, linear,
};

/// Inputs of one case: x (n, h) and W (v, h) with entries ≤ 1, so logits stay ≤ h.
struct Case {
    n: usize,
    h: usize,
    v: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    cw: Vec<f32>,
    t: Vec<i64>,
    /// Token weights in [0, 2), every fifth row's 0.
    tw: Vec<f32>,
    /// The element types x and W (and b) are uploaded as; the host values are exact in them.
    xd: DType,
    wd: DType,
}

impl Case {
    fn new(rng: &mut Rng, n: usize, h: usize, v: usize, ignored_every: usize) -> Case {
        let x = rng.values(n * h, 1.0);
        let w = rng.values(v * h, 1.0);
        let b = rng.values(v, 1.0);
        let cw: Vec<f32> = (0..v).map(|_| 0.25 + rng.unit()).collect();
        let mut t = rng.classes(n, v);
        if ignored_every > 0 {
            for (i, t) in t.iter_mut().enumerate() {
                if i % ignored_every == 1 {
                    *t = -100;
                }
            }
        }
        let tw = (0..n).map(|i| if i % 5 == 2 { 0.0 } else { 2.0 * rng.unit().abs() }).collect();
        Case { n, h, v, x, w, b, cw, t, tw, xd: DType::F32, wd: DType::F32 }
    }

    /// The same case with x in `xd` and W and b in `wd`, the host values rounded to them (what
    /// the reference then computes from).
    fn with_dtypes(mut self, xd: DType, wd: DType) -> Case {
        let round = |v: &mut Vec<f32>, d: DType| v.iter_mut().for_each(|x| *x = d.round(*x));
        round(&mut self.x, xd);
        round(&mut self.w, wd);
        round(&mut self.b, wd);
        Case { xd, wd, ..self }
    }

    fn upload(&self, dev: &Device) -> (Tensor, Tensor, Tensor, wgpu_loss::Indices, Tensor) {
        (
            dev.tensor_as(&self.x, &[self.n, self.h], self.xd).unwrap(),
            dev.tensor_as(&self.w, &[self.v, self.h], self.wd).unwrap(),
            dev.tensor_as(&self.b, &[self.v], self.wd).unwrap(),
            dev.indices(&self.t, &[self.n]).unwrap(),
            dev.tensor(&self.cw, &[self.v]).unwrap(),
        )
    }

    fn token_weights(&self, dev: &Device) -> Tensor {
        dev.tensor(&self.tw, &[self.n]).unwrap()
    }
}

/// Every option on at once: class weights, label smoothing, softcap, temperature, z-loss, bias;
/// mean.
const EVERY_OPTION: Opts = Opts {
    weight: true,
    smoothing: 0.1,
    softcap: Some(4.0),
    temperature: 0.7,
    token_weight: true,
    z_loss: 1e-3,
    reduction: Reduction::Mean,
    bias: true,
};

/// The options under test, for the GPU and for the reference.
#[derive(Clone, Copy, Debug)]
struct Opts {
    weight: bool,
    smoothing: f32,
    softcap: Option<f32>,
    temperature: f32,
    token_weight: bool,
    z_loss: f32,
    reduction: Reduction,
    bias: bool,
}

fn gpu_opts(o: Opts, cw: &Tensor) -> LinearCrossEntropy {
    let mut l =
        LinearCrossEntropy::default().reduction(o.reduction).label_smoothing(o.smoothing).z_loss(o.z_loss);
    l = l.temperature(o.temperature);
    if o.weight {
        l = l.weight(cw.clone());
    }
    if let Some(s) = o.softcap {
        l = l.softcap(s);
    }
    l
}

fn ref_opts<'a>(o: Opts, cw: &'a [f32], tw: &'a [f32]) -> Options<'a, f32> {
    Options {
        weight: o.weight.then_some(cw),
        token_weight: o.token_weight.then_some(tw),
        reduction: o.reduction,
        label_smoothing: o.smoothing as f64,
        softcap: o.softcap.map(|s| s as f64),
        z_loss: o.z_loss as f64,
        temperature: o.temperature as f64,
        ..Options::default()
    }
}

/// Tolerances: logits are dot products of h terms ≤ 1 (abs error ~ h·ε); the loss, lse and the
/// gradients sum over V classes or N rows on top.
fn tol_loss(c: &Case) -> Tol {
    Tol::scaled(c.h as f64).sum(c.v)
}

fn tol_grad(c: &Case) -> Tol {
    Tol { abs: 2e-6 * ((c.v.max(c.n)) as f64).sqrt() * (c.h as f64).sqrt(), rel: 2e-4 }
}

/// A gradient returned in `dtype`: the f32 tolerance with its rounding, as the catalogue argues
/// it (`Tolerance::for_dtype`).
fn rounded(t: Tol, dtype: DType) -> Tol {
    let (abs, rel) =
        Tolerance { forward: (t.abs, t.rel), backward: (t.abs, t.rel) }.for_dtype(dtype).backward;
    Tol { abs, rel }
}

fn upstream(dev: &Device, c: &Case, o: Opts, rng: &mut Rng) -> (Vec<f32>, Tensor) {
    match o.reduction {
        Reduction::None => {
            let g = rng.values(c.n, 1.0);
            let t = dev.tensor(&g, &[c.n]).unwrap();
            (g, t)
        }
        _ => (vec![0.75], dev.tensor(&[0.75], &[]).unwrap()),
    }
}

/// Forward, backward (with and without the saved lse) and forward_backward against the
/// reference.
fn check_case(dev: &Device, what: &str, c: &Case, o: Opts, l: &LinearCrossEntropy, rng: &mut Rng) {
    let (x, w, b, t, cw) = c.upload(dev);
    let mut l =
        LinearCrossEntropy { max_scratch_bytes: l.max_scratch_bytes, kernel: l.kernel, ..gpu_opts(o, &cw) };
    if o.token_weight {
        l = l.token_weight(c.token_weights(dev));
    }
    let bias = o.bias.then_some(&b);
    let rb = o.bias.then_some(c.b.as_slice());
    let ro = ref_opts(o, &c.cw, &c.tw);
    let what =
        format!("{} {what} {o:?} n={} h={} v={} x {} W {}", common::label(dev), c.n, c.h, c.v, c.xd, c.wd);
    // Everything is recorded before anything is read, as in a training step (under an
    // adversarial pool, each upload and scratch buffer then reuses one whose work has not run).
    let out = l.forward(&x, &w, bias, &t).unwrap();
    let (g, g_t) = upstream(dev, c, o, rng);
    let (fused, fused_grads) = l.forward_backward(&x, &w, bias, &t, &g_t).unwrap();
    let grads = [
        ("backward", l.backward(&x, &w, bias, &t, &g_t, None).unwrap()),
        ("backward given the forward", l.backward(&x, &w, bias, &t, &g_t, Some(&out)).unwrap()),
        ("forward_backward", fused_grads),
    ];
    let (want_loss, want_lse) = lce_ref::linear_cross_entropy(&c.x, &c.w, rb, &c.t, c.h, &ro).unwrap();
    assert_close(&format!("{what}: loss"), &out.loss.to_vec().unwrap(), &want_loss, tol_loss(c));
    assert_close(&format!("{what}: lse"), &out.lse.to_vec().unwrap(), &want_lse, tol_loss(c));
    assert_close(&format!("{what}: fused loss"), &fused.loss.to_vec().unwrap(), &want_loss, tol_loss(c));
    assert_close(&format!("{what}: fused lse"), &fused.lse.to_vec().unwrap(), &want_lse, tol_loss(c));
    let (dx, dw, db) = lce_ref::linear_cross_entropy_backward(&c.x, &c.w, rb, &c.t, c.h, &ro, &g).unwrap();
    for (how, gr) in grads {
        assert_eq!((gr.input.dtype(), gr.weight.dtype(), gr.bias.dtype()), (c.xd, c.wd, c.wd), "{what}");
        let (tx, tw) = (rounded(tol_grad(c), c.xd), rounded(tol_grad(c), c.wd));
        assert_close(&format!("{what} {how}: dX"), &gr.input.to_vec().unwrap(), &dx, tx);
        assert_close(&format!("{what} {how}: dW"), &gr.weight.to_vec().unwrap(), &dw, tw);
        assert_close(&format!("{what} {how}: db"), &gr.bias.to_vec().unwrap(), &db, tw);
    }
}

#[test]
fn every_option_matches_the_reference() {
    let mut rng = Rng::new(50);
    // Ragged everywhere: n, h, v are not multiples of any block.
    let c = Case::new(&mut rng, 37, 19, 203, 5);
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(50);
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (weight, smoothing, softcap, temperature, token_weight, z_loss) in [
                (false, 0.0, None, 1.0, false, 0.0),
                (true, 0.0, None, 1.0, false, 0.0),
                (false, 0.1, None, 1.0, false, 0.0),
                (true, 0.2, None, 1.0, false, 0.0),
                (false, 0.0, Some(2.0), 1.0, false, 0.0),
                (false, 0.0, None, 1.0, false, 1e-2),
                (true, 0.1, Some(3.0), 1.0, false, 1e-3),
                (false, 0.0, None, 2.0, false, 0.0),
                (false, 0.0, None, 1.0, true, 0.0),
                (true, 0.1, Some(3.0), 0.5, true, 1e-3),
            ] {
                let o = Opts {
                    weight,
                    smoothing,
                    softcap,
                    temperature,
                    token_weight,
                    z_loss,
                    reduction,
                    bias: true,
                };
                check_case(dev, "options", &c, o, &LinearCrossEntropy::default(), &mut rng);
            }
        }
        let o = Opts {
            weight: false,
            smoothing: 0.0,
            softcap: None,
            temperature: 1.0,
            token_weight: false,
            z_loss: 0.0,
            reduction: Reduction::Mean,
            bias: false,
        };
        check_case(dev, "no bias", &c, o, &LinearCrossEntropy::default(), &mut rng);
    });
}

#[test]
fn equals_the_unfused_composition() {
    let mut rng = Rng::new(51);
    let c = Case::new(&mut rng, 45, 33, 150, 4);
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(51);
        let (x, w, b, t, cw) = c.upload(dev);
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (weight, smoothing) in [(false, 0.0), (true, 0.0), (true, 0.15)] {
                let what = format!("{} {reduction:?} weight={weight} eps={smoothing}", common::label(dev));
                let mut ce = CrossEntropy::default().reduction(reduction).label_smoothing(smoothing);
                let mut fused = LinearCrossEntropy::default().reduction(reduction).label_smoothing(smoothing);
                if weight {
                    ce = ce.weight(cw.clone());
                    fused = fused.weight(cw.clone());
                }
                let logits = linear(&x, &w, Some(&b)).unwrap();
                let want = ce.forward(&logits, &t).unwrap().to_vec().unwrap();
                let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                let (g, g_t) = upstream(
                    dev,
                    &c,
                    Opts {
                        weight,
                        smoothing,
                        softcap: None,
                        temperature: 1.0,
                        token_weight: false,
                        z_loss: 0.0,
                        reduction,
                        bias: true,
                    },
                    &mut rng,
                );
                let dlogits = ce.backward(&logits, &t, &g_t).unwrap();
                let unfused = Linear::default().backward(&x, &w, &dlogits).unwrap();
                let (out, grads) = fused.forward_backward(&x, &w, Some(&b), &t, &g_t).unwrap();
                assert_close(&format!("{what}: loss"), &out.loss.to_vec().unwrap(), &want, tol_loss(&c));
                for (name, got, want) in [
                    ("dX", &grads.input, &unfused.input),
                    ("dW", &grads.weight, &unfused.weight),
                    ("db", &grads.bias, &unfused.bias),
                ] {
                    let want: Vec<f64> = want.to_vec().unwrap().iter().map(|&v| v as f64).collect();
                    assert_close(&format!("{what}: {name}"), &got.to_vec().unwrap(), &want, tol_grad(&c));
                }
                drop(g);
            }
        }
    });
}

#[test]
fn all_ignored_rows_and_empty_inputs() {
    let mut rng = Rng::new(52);
    let mut c = Case::new(&mut rng, 6, 8, 10, 0);
    c.t = vec![-100; 6];
    common::on_each(devices(), |dev| {
        let (x, w, b, t, _) = c.upload(dev);
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let mean = LinearCrossEntropy::default().z_loss(1e-2);
        let (out, grads) = mean.forward_backward(&x, &w, Some(&b), &t, &one).unwrap();
        assert!(out.loss.item().unwrap().is_nan(), "all ignored: mean is NaN");
        assert!(mean.forward(&x, &w, Some(&b), &t).unwrap().loss.item().unwrap().is_nan());
        for g in [&grads.input, &grads.weight, &grads.bias] {
            assert!(g.to_vec().unwrap().iter().all(|&v| v == 0.0), "all ignored: zero gradients");
        }
        let sum = LinearCrossEntropy::default().reduction(Reduction::Sum);
        assert_eq!(sum.forward(&x, &w, Some(&b), &t).unwrap().loss.item().unwrap(), 0.0);
        // No rows at all.
        let x0 = dev.tensor(&[], &[0, 8]).unwrap();
        let t0 = dev.indices::<i64>(&[], &[0]).unwrap();
        assert!(
            LinearCrossEntropy::default().forward(&x0, &w, None, &t0).unwrap().loss.item().unwrap().is_nan()
        );
        let (out, grads) = sum.forward_backward(&x0, &w, None, &t0, &one).unwrap();
        assert_eq!(out.loss.item().unwrap(), 0.0);
        assert!(grads.weight.to_vec().unwrap().iter().all(|&v| v == 0.0));
    });
}

/// x and W in f16 and bf16, each its own type: the GEMMs decode them as they load; loss and lse
/// as in f32 from the rounded values, dX in x's type and dW, db in W's. On small bindings, W's
/// shards, tiles and pieces start on blocks of 128 half rows (aligned whatever H, odd included).
#[test]
fn half_precision_matches_the_reference_on_its_rounded_inputs() {
    let o = EVERY_OPTION;
    let pairs = [
        (DType::BF16, DType::BF16),
        (DType::F16, DType::F16),
        (DType::BF16, DType::F32),
        (DType::F32, DType::F16),
    ];
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(59);
        for (xd, wd) in pairs {
            let c = Case::new(&mut rng, 37, 24, 150, 5).with_dtypes(xd, wd);
            check_case(dev, "half", &c, o, &LinearCrossEntropy::default(), &mut rng);
            let per_row = Opts { reduction: Reduction::None, ..o };
            check_case(dev, "half, per row", &c, per_row, &LinearCrossEntropy::default(), &mut rng);
        }
    });
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(59);
        for h in [40, 41] {
            let c = Case::new(&mut rng, 70, h, 1000, 6).with_dtypes(DType::BF16, DType::BF16);
            // Tiles of 128-column blocks, and whole rows where they fit.
            for budget in [32 << 10, 1 << 20] {
                let l = LinearCrossEntropy::default().max_scratch_bytes(budget);
                check_case(dev, &format!("bf16 shards, scratch {budget} B"), &c, o, &l, &mut rng);
            }
        }
    });
}

#[test]
fn sharded_weight_and_small_scratch_budgets() {
    let mut rng = Rng::new(53);
    // 64 KiB bindings: W rows of 40 floats give shards of 384 rows, so V = 1000 takes three;
    // budgets from one 64-column tile to whole rows.
    let c = Case::new(&mut rng, 70, 40, 1000, 6);
    let o = EVERY_OPTION;
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(53);
        for budget in [1 << 10, 8 << 10, 64 << 10] {
            let l = LinearCrossEntropy::default().max_scratch_bytes(budget);
            check_case(dev, &format!("scratch {budget} B"), &c, o, &l, &mut rng);
        }
        let per_row = Opts { reduction: Reduction::None, ..o };
        check_case(
            dev,
            "per-row grads",
            &c,
            per_row,
            &LinearCrossEntropy::default().max_scratch_bytes(8 << 10),
            &mut rng,
        );
        // Whole rows of logits spanning three shards of W (rows of 200 floats: 64 per shard).
        let wide = Case::new(&mut rng, 70, 200, 150, 6);
        check_case(dev, "whole rows over shards", &wide, o, &LinearCrossEntropy::default(), &mut rng);
    });
}

/// Every option, the tiled and sharded paths and the per-token outputs under an adversarial pool
/// (each buffer handed out is the one released last, nothing submitted before a read): no
/// upload or reuse may be ordered wrongly against recorded work.
#[test]
fn every_path_under_an_adversarial_pool() {
    let mut rng = Rng::new(59);
    let c = Case::new(&mut rng, 37, 19, 203, 5);
    let plain = Opts { reduction: Reduction::Sum, ..EVERY_OPTION };
    common::on_each(adversarial_devices(), |dev| {
        let mut rng = Rng::new(59);
        for o in [EVERY_OPTION, plain, Opts { reduction: Reduction::None, ..EVERY_OPTION }] {
            check_case(dev, "adversarial pool", &c, o, &LinearCrossEntropy::default(), &mut rng);
            check_tokens(dev, &c, o, &mut rng);
        }
    });
    let c = Case::new(&mut rng, 70, 40, 1000, 6);
    common::on_each(adversarial_small_binding_devices(), |dev| {
        let mut rng = Rng::new(59);
        for budget in [1 << 10, 64 << 10] {
            let l = LinearCrossEntropy::default().max_scratch_bytes(budget);
            check_case(dev, &format!("adversarial pool, scratch {budget} B"), &c, EVERY_OPTION, &l, &mut rng);
        }
        check_tokens(dev, &c, EVERY_OPTION, &mut rng);
    });
}

#[test]
fn leading_dims_flatten_and_results_repeat_bitwise() {
    let mut rng = Rng::new(54);
    let c = Case::new(&mut rng, 12, 16, 77, 5);
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(54);
        let (x, w, b, _, _) = c.upload(dev);
        let x3 = dev.tensor(&c.x, &[3, 4, 16]).unwrap();
        let t3 = dev.indices(&c.t, &[3, 4]).unwrap();
        let l = LinearCrossEntropy::default().reduction(Reduction::None).label_smoothing(0.1);
        let out = l.forward(&x3, &w, Some(&b), &t3).unwrap();
        assert_eq!(out.loss.shape(), [3, 4]);
        assert_eq!(out.lse.shape(), [3, 4]);
        let g = dev.tensor(&rng.values(12, 1.0), &[3, 4]).unwrap();
        let run = || {
            let (o, gr) = l.forward_backward(&x3, &w, Some(&b), &t3, &g).unwrap();
            [o.loss, gr.input, gr.weight, gr.bias].map(|t| t.to_vec().unwrap())
        };
        let first = run();
        assert_eq!(first[1].len(), 12 * 16);
        let bits = |v: &[Vec<f32>; 4]| {
            v.iter().map(|t| t.iter().map(|f| f.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&first), bits(&run()), "{}: two runs differ", common::label(dev));
        let flat = l.forward(&x, &w, Some(&b), &dev.indices(&c.t, &[12]).unwrap()).unwrap();
        assert_eq!(flat.loss.to_vec().unwrap(), out.loss.to_vec().unwrap());
    });
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dev = &devices()[0];
    let x = dev.tensor(&[1.0; 6], &[2, 3]).unwrap();
    let w = dev.tensor(&[1.0; 12], &[4, 3]).unwrap();
    let t = dev.indices(&[1i64, 3], &[2]).unwrap();
    let l = LinearCrossEntropy::default();
    let shape = |r: wgpu_loss::Result<_>| assert!(matches!(r, Err(Error::Shape { .. })));
    shape(l.forward(&x, &dev.tensor(&[1.0; 8], &[4, 2]).unwrap(), None, &t).map(|_| ()));
    shape(l.forward(&x, &w, Some(&dev.tensor(&[1.0; 3], &[3]).unwrap()), &t).map(|_| ()));
    shape(l.forward(&x, &w, None, &dev.indices(&[1i64, 3, 0], &[3]).unwrap()).map(|_| ()));
    shape(l.clone().weight(dev.tensor(&[1.0; 3], &[3]).unwrap()).forward(&x, &w, None, &t).map(|_| ()));
    let three = dev.tensor(&[1.0; 3], &[3]).unwrap();
    shape(l.clone().token_weight(three).forward(&x, &w, None, &t).map(|_| ()));
    let two = dev.tensor(&[1.0, 1.0], &[2]).unwrap();
    shape(l.backward(&x, &w, None, &t, &two, None).map(|_| ()));
    shape(
        l.clone()
            .reduction(Reduction::None)
            .backward(&x, &w, None, &t, &dev.tensor(&[1.0], &[]).unwrap(), None)
            .map(|_| ()),
    );
    // The forward output of other rows (3 of them) is not this call's.
    let x3 = dev.tensor(&[1.0; 9], &[3, 3]).unwrap();
    let other = l.forward(&x3, &w, None, &dev.indices(&[0i64, 1, 2], &[3]).unwrap()).unwrap();
    let one = dev.tensor(&[1.0], &[]).unwrap();
    shape(l.backward(&x, &w, None, &t, &one, Some(&other)).map(|_| ()));
    // W's rows past the binding limit (64 KiB here: 64 rows of 300 floats do not fit) name
    // the operation.
    let small = &small_binding_devices()[0];
    let (xs, ws) =
        (small.tensor(&[0.1; 300], &[1, 300]).unwrap(), small.tensor(&[0.1; 64 * 300], &[64, 300]).unwrap());
    let err = l.forward(&xs, &ws, None, &small.indices(&[3i64], &[1]).unwrap()).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::Limit { what, .. } if what.starts_with("linear_cross_entropy")), "{err}");
    let invalid = |l: LinearCrossEntropy| {
        assert!(matches!(l.forward(&x, &w, None, &t), Err(Error::InvalidArgument { .. })))
    };
    invalid(l.clone().softcap(0.0));
    invalid(l.clone().softcap(f32::NAN));
    invalid(l.clone().label_smoothing(1.5));
    invalid(l.clone().z_loss(-1.0));
    invalid(l.clone().temperature(0.0));
    invalid(l.clone().temperature(f32::NAN));
    invalid(l.clone().max_scratch_bytes(0));
    // One rule for the scratch cap, forward and backward: below the smallest tile it is the
    // caller's option that is named, not the adapter.
    for cap in [1, 255] {
        let small = l.clone().max_scratch_bytes(cap);
        let errs = [
            small.forward(&x, &w, None, &t).map(|_| ()).unwrap_err(),
            small.backward(&x, &w, None, &t, &one, None).map(|_| ()).unwrap_err(),
            small.forward_backward(&x, &w, None, &t, &one).map(|_| ()).unwrap_err(),
        ];
        for err in errs {
            assert!(
                matches!(&err, Error::InvalidArgument { message, .. } if message.contains("max_scratch_bytes")),
                "{err}"
            );
        }
    }
    // The forward output of another call with the same rows (other x, other temperature) is
    // refused, not used; this call's is taken.
    let x_other = dev.tensor(&[0.5; 6], &[2, 3]).unwrap();
    let other_x = l.forward(&x_other, &w, None, &t).unwrap();
    let other_t = l.clone().temperature(2.0).forward(&x, &w, None, &t).unwrap();
    for other in [&other_x, &other_t] {
        let err = l.backward(&x, &w, None, &t, &one, Some(other)).map(|_| ()).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument { .. }), "{err}");
    }
    let own = l.forward(&x, &w, None, &t).unwrap();
    assert!(l.backward(&x, &w, None, &t, &one, Some(&own)).is_ok());
    let bad = dev.indices(&[1i64, 4], &[2]).unwrap();
    let err = l.forward(&x, &w, None, &bad).unwrap().loss.item().unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { position: 1, value: 4, classes: 4, .. }), "{err}");
    // Every result of such a call fails to read, the per-token argmax too.
    let tokens = l.clone().token_outputs(true).forward(&x, &w, None, &bad).unwrap().tokens.unwrap();
    let err = tokens.argmax.to_vec().unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { .. }), "{err}");
    let err = l.forward_backward(&x, &w, None, &bad, &one).unwrap().1.weight.to_vec().unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { .. }), "{err}");
    // The fused loss equals the unfused one on the valid targets.
    let fused = l.forward(&x, &w, None, &t).unwrap().loss.item().unwrap();
    let unfused = cross_entropy(&linear(&x, &w, None).unwrap(), &t).unwrap().item().unwrap();
    assert!((fused - unfused).abs() < 1e-6);
}

#[test]
fn extra_memory_stays_within_the_scratch_budget() {
    let mut rng = Rng::new(55);
    let c = Case::new(&mut rng, 256, 32, 4000, 0);
    let logits_bytes = (c.n * c.v * 4) as u64;
    let budget = 64 << 10;
    common::on_each(devices(), |shared| {
        // A handle of its own: other tests' buffers on the shared one would count in its peak.
        let dev = &shared.reconfigured(shared.options().clone());
        let (x, w, b, t, _) = c.upload(dev);
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let l = LinearCrossEntropy::default().max_scratch_bytes(budget);
        // The most memory held during the call beyond what is held after it (inputs, outputs).
        let extra = |f: &dyn Fn() -> Vec<Tensor>| {
            dev.synchronize().unwrap();
            dev.reset_peak_memory();
            let outputs = f();
            dev.synchronize().unwrap();
            let e = dev.peak_memory() - dev.memory_in_use();
            drop(outputs);
            e
        };
        let fwd = extra(&|| {
            let o = l.forward(&x, &w, Some(&b), &t).unwrap();
            vec![o.loss, o.lse]
        });
        let step = extra(&|| {
            let (o, g) = l.forward_backward(&x, &w, Some(&b), &t, &one).unwrap();
            vec![o.loss, o.lse, g.input, g.weight, g.bias]
        });
        let unfused = extra(&|| vec![cross_entropy(&linear(&x, &w, Some(&b)).unwrap(), &t).unwrap()]);
        // The scratch (or the partials), then 4-byte values per row and the reductions' partials.
        let bound = budget + 16 * c.n as u64 + (16 << 10);
        let what = common::label(dev);
        assert!(fwd <= bound && step <= bound, "{what}: fused extra {fwd} / {step} B over {bound} B");
        assert!(
            unfused >= logits_bytes,
            "{what}: unfused extra {unfused} B lacks the logits ({logits_bytes} B)"
        );
    });
}

#[test]
fn gradient_filter_skips_only_small_blocks() {
    let mut rng = Rng::new(56);
    let mut c = Case::new(&mut rng, 70, 40, 1000, 6);
    // Peaked rows (logits spread over tens of units), where most probabilities are tiny.
    c.w.iter_mut().for_each(|w| *w *= 8.0);
    let ro = Options::<f32>::default();
    let (_, dw_ref, _) =
        lce_ref::linear_cross_entropy_backward(&c.x, &c.w, Some(&c.b), &c.t, c.h, &ro, &[1.0]).unwrap();
    common::on_each(devices(), |dev| {
        let (x, w, b, t, _) = c.upload(dev);
        let one = dev.tensor(&[1.0], &[]).unwrap();
        for budget in [4 << 20, 8 << 10] {
            let what = format!("{} scratch {budget} B", common::label(dev));
            let l = LinearCrossEntropy::default().max_scratch_bytes(budget);
            let run = |l: &LinearCrossEntropy| {
                let (o, g) = l.forward_backward(&x, &w, Some(&b), &t, &one).unwrap();
                [o.loss, g.input, g.weight, g.bias].map(|t| t.to_vec().unwrap())
            };
            let exact = run(&l);
            assert_eq!(run(&l.clone().filter(0.0)), exact, "{what}: eps 0 keeps every block");
            let none = run(&l.clone().filter(1e30));
            assert_eq!(none[0], exact[0], "{what}: the filter leaves the loss alone");
            assert!(none[1..].iter().flatten().all(|&v| v == 0.0), "{what}: eps 1e30 skips every block");
            let cce = run(&l.clone().filter(wgpu_loss::CCE_FILTER_EPS));
            let scale = dw_ref.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("{what}: filtered dW"),
                &cce[2],
                &dw_ref,
                Tol { abs: 1e-5 * scale, rel: 1e-3 },
            );
        }
    });
}

#[test]
fn logits_at_large_magnitude_lose_no_digits() {
    // Logits about ±1e4 (a bias of ±1e4) that f32 holds exactly: x in {−1, 0, 1}, W and b on a
    // grid of 1/8, so the GEMM is exact and the loss's only rounding is the kernel's own. The
    // loss is log Σ − (z[t] − max), and label smoothing's Σ w·(lse − z) is (lse − x0)·Σw −
    // Σ w·(z − x0) over the split-V partials, each partial moved to the row's x0: both exact to
    // 1e-6 relative of the f64 reference, where lse − z would round at the max's magnitude
    // (5e-4) first. The gradients come from the row's (max, log Σ) whether the tiles hold whole
    // rows (forward_backward) or read the forward's statistics (backward given the forward, and
    // backward alone, which runs the forward's partials again).
    let (n, h, v) = (6usize, 8usize, 200usize);
    let mut rng = Rng::new(90);
    let x: Vec<f32> = (0..n * h).map(|_| rng.below(3) as f32 - 1.0).collect();
    let w: Vec<f32> = (0..v * h).map(|_| (rng.below(33) as f32 - 16.0) / 8.0).collect();
    let cw: Vec<f32> = (0..v).map(|_| (1 + rng.below(4)) as f32 / 4.0).collect();
    let t: Vec<i64> = rng.classes(n, v);
    let g = vec![1.0f32; n];
    for centre in [1e4f32, -1e4] {
        let b: Vec<f32> = (0..v).map(|_| centre + (rng.below(33) as f32 - 16.0) / 8.0).collect();
        for (smoothing, weighted) in [(0.0f32, false), (0.1, false), (0.1, true)] {
            let o = Options {
                reduction: Reduction::None,
                label_smoothing: smoothing as f64,
                weight: weighted.then_some(cw.as_slice()),
                ..Options::default()
            };
            let (want, _) = lce_ref::linear_cross_entropy(&x, &w, Some(&b), &t, h, &o).unwrap();
            let (want_dx, want_dw, _) =
                lce_ref::linear_cross_entropy_backward(&x, &w, Some(&b), &t, h, &o, &g).unwrap();
            common::on_each(devices(), |dev| {
                let (xt, wt, bt) = (
                    dev.tensor(&x, &[n, h]).unwrap(),
                    dev.tensor(&w, &[v, h]).unwrap(),
                    dev.tensor(&b, &[v]).unwrap(),
                );
                let (tt, gt) = (dev.indices(&t, &[n]).unwrap(), dev.tensor(&g, &[n]).unwrap());
                let mut l =
                    LinearCrossEntropy::default().reduction(Reduction::None).label_smoothing(smoothing);
                if weighted {
                    l = l.weight(dev.tensor(&cw, &[v]).unwrap());
                }
                let what = format!(
                    "{} centre {centre} smoothing {smoothing} weighted {weighted}",
                    common::label(dev)
                );
                let exact = Tol { abs: 0.0, rel: 1e-6 };
                let out = l.forward(&xt, &wt, Some(&bt), &tt).unwrap();
                assert_close(&format!("{what} loss"), &out.loss.to_vec().unwrap(), &want, exact);
                let (one_pass, grads) = l.forward_backward(&xt, &wt, Some(&bt), &tt, &gt).unwrap();
                assert_close(
                    &format!("{what} one-pass loss"),
                    &one_pass.loss.to_vec().unwrap(),
                    &want,
                    exact,
                );
                let given = l.backward(&xt, &wt, Some(&bt), &tt, &gt, Some(&out)).unwrap();
                let alone = l.backward(&xt, &wt, Some(&bt), &tt, &gt, None).unwrap();
                for (how, gr) in [("one-pass", &grads), ("given the forward", &given), ("alone", &alone)] {
                    let tol = Tol { abs: 1e-6, rel: 1e-5 };
                    assert_close(&format!("{what} {how} dX"), &gr.input.to_vec().unwrap(), &want_dx, tol);
                    assert_close(&format!("{what} {how} dW"), &gr.weight.to_vec().unwrap(), &want_dw, tol);
                }
            });
        }
    }
}

#[test]
fn confident_rows_keep_their_digits() {
    // x = one-hot rows, W = I·g on class 2 and 0 elsewhere: logits [0, 0, g, 0], target 2, loss
    // log1p(3·e^−g) down to 3.2e-30 at g = 69 (PyTorch float32 gives 0 from g = 20 on), through
    // the split-V fold and through whole-row tiles: 1e-6 relative, or WGSL's bound on exp(−g),
    // (3 + 2g) ulp, where that is larger (see tests/cross_entropy.rs).
    let gaps = [10.0f32, 20.0, 40.0, 60.0, 69.0];
    let (n, h, v) = (gaps.len(), gaps.len(), 4usize);
    // Row r of x selects feature r; W[2][r] = gap r, so z[r] = [0, 0, gap_r, 0].
    let mut x = vec![0.0f32; n * h];
    let mut w = vec![0.0f32; v * h];
    for (r, &g) in gaps.iter().enumerate() {
        x[r * h + r] = 1.0;
        w[2 * h + r] = g;
    }
    let t = vec![2i64; n];
    let want: Vec<f64> = gaps.iter().map(|&g| (3.0 * (-(g as f64)).exp()).ln_1p()).collect();
    // d loss / d z of row r is [e, e, −3e, e] / (1 + 3e), e = e^−gap_r; the target's is
    // expm1(z[t] − lse) in the tiles (p[t] − 1 would keep only p's rounding near 1). With x one-hot,
    // dW[c][r] is row r's d z[c] and dX[r][k] = d z_r[2]·W[2][k].
    let dz = |r: usize| {
        let e = (-(gaps[r] as f64)).exp();
        [e, e, -3.0 * e, e].map(|d| d / (1.0 + 3.0 * e))
    };
    let mut want_dw = vec![0.0f64; v * h];
    let mut want_dx = vec![0.0f64; n * h];
    for r in 0..n {
        for c in 0..v {
            want_dw[c * h + r] = dz(r)[c];
        }
        for k in 0..h {
            want_dx[r * h + k] = dz(r)[2] * w[2 * h + k] as f64;
        }
    }
    common::on_each(devices(), |dev| {
        let (xt, wt) = (dev.tensor(&x, &[n, h]).unwrap(), dev.tensor(&w, &[v, h]).unwrap());
        let (tt, gt) = (dev.indices(&t, &[n]).unwrap(), dev.tensor(&vec![1.0; n], &[n]).unwrap());
        let l = LinearCrossEntropy::default().reduction(Reduction::None);
        let what = common::label(dev);
        let forward = l.forward(&xt, &wt, None, &tt).unwrap();
        let got = forward.loss.to_vec().unwrap();
        let (out, grads) = l.forward_backward(&xt, &wt, None, &tt, &gt).unwrap();
        let given = l.backward(&xt, &wt, None, &tt, &gt, Some(&forward)).unwrap();
        let one_pass = out.loss.to_vec().unwrap();
        for (r, &g) in gaps.iter().enumerate() {
            let tol = Tol { abs: 0.0, rel: 1e-6f64.max((3.0 + 2.0 * g as f64) * f32::EPSILON as f64) };
            assert_close(&format!("{what} loss g = {g}"), &got[r..r + 1], &want[r..r + 1], tol);
            assert_close(&format!("{what} one-pass loss g = {g}"), &one_pass[r..r + 1], &want[r..r + 1], tol);
            for (how, gr) in [("one-pass", &grads), ("given the forward", &given)] {
                let (dw, dx) = (gr.weight.to_vec().unwrap(), gr.input.to_vec().unwrap());
                let col: Vec<f32> = (0..v).map(|c| dw[c * h + r]).collect();
                let want_col: Vec<f64> = (0..v).map(|c| want_dw[c * h + r]).collect();
                assert_close(&format!("{what} {how} dW g = {g}"), &col, &want_col, tol);
                let row = r * h..(r + 1) * h;
                assert_close(&format!("{what} {how} dX g = {g}"), &dx[row.clone()], &want_dx[row], tol);
            }
        }
    });
}

/// Per-token outputs (logprob, entropy, argmax, correct, accuracy) against the reference, and
/// the backward with upstream gradients of logprob and entropy, for plain and every-option
/// heads, with and without the forward's output; W in shards on the 64 KiB devices.
#[test]
fn per_token_outputs_and_their_gradients() {
    let mut rng = Rng::new(57);
    let plain = Opts {
        weight: false,
        smoothing: 0.0,
        softcap: None,
        temperature: 1.0,
        token_weight: false,
        z_loss: 0.0,
        reduction: Reduction::Mean,
        bias: true,
    };
    let cases = [
        (devices(), Case::new(&mut rng, 37, 19, 203, 5)),
        (small_binding_devices(), Case::new(&mut rng, 9, 200, 130, 4)),
        (devices(), Case::new(&mut rng, 21, 24, 150, 4).with_dtypes(DType::BF16, DType::BF16)),
    ];
    for (devs, c) in &cases {
        for dev in *devs {
            for o in [plain, EVERY_OPTION, Opts { reduction: Reduction::None, temperature: 2.0, ..plain }] {
                check_tokens(dev, c, o, &mut rng);
            }
        }
    }
}

fn check_tokens(dev: &Device, c: &Case, o: Opts, rng: &mut Rng) {
    let (x, w, b, t, cw) = c.upload(dev);
    let mut l = gpu_opts(o, &cw).token_outputs(true);
    if o.token_weight {
        l = l.token_weight(c.token_weights(dev));
    }
    let what = format!("{} tokens {o:?} n={} h={} v={}", common::label(dev), c.n, c.h, c.v);
    let ro = ref_opts(o, &c.cw, &c.tw);
    let want = lce_ref::token_outputs(&c.x, &c.w, Some(&c.b), &c.t, c.h, &ro).unwrap();
    let out = l.forward(&x, &w, Some(&b), &t).unwrap();
    let want_loss = lce_ref::linear_cross_entropy(&c.x, &c.w, Some(&c.b), &c.t, c.h, &ro).unwrap().0;
    assert_close(&format!("{what}: loss"), &out.loss.to_vec().unwrap(), &want_loss, tol_loss(c));
    let tokens = out.tokens.as_ref().expect("asked for token outputs");
    assert_close(&format!("{what}: logprob"), &tokens.logprob.to_vec().unwrap(), &want.logprob, tol_loss(c));
    assert_close(&format!("{what}: entropy"), &tokens.entropy.to_vec().unwrap(), &want.entropy, tol_loss(c));
    let argmax: Vec<i64> = tokens.argmax.to_vec().unwrap().iter().map(|&a| a as i64).collect();
    assert_eq!(argmax, want.argmax, "{what}: argmax");
    let correct: Vec<f64> = tokens.correct.to_vec().unwrap().iter().map(|&v| v as f64).collect();
    assert_eq!(correct, want.correct, "{what}: correct");
    assert_close(
        &format!("{what}: accuracy"),
        &[tokens.accuracy.item().unwrap()],
        &[want.accuracy],
        Tol::ELEMENT,
    );
    // The loss, lse and statistics are those of a forward without token outputs.
    let plain_out = gpu_opts(o, &cw).forward(&x, &w, Some(&b), &t);
    let plain_out =
        if o.token_weight { l.clone().token_outputs(false).forward(&x, &w, Some(&b), &t) } else { plain_out };
    assert_eq!(plain_out.unwrap().lse.to_vec().unwrap(), out.lse.to_vec().unwrap(), "{what}: lse");
    // Gradients of loss·g + Σ g_lp·logprob + Σ g_h·entropy.
    let (g, g_t) = upstream(dev, c, o, rng);
    let (glp, gh) = (rng.values(c.n, 1.0), rng.values(c.n, 1.0));
    let (glp_t, gh_t) = (dev.tensor(&glp, &[c.n]).unwrap(), dev.tensor(&gh, &[c.n]).unwrap());
    let (dx, dw, db) = lce_ref::linear_cross_entropy_backward_tokens(
        &c.x,
        &c.w,
        Some(&c.b),
        &c.t,
        c.h,
        &ro,
        &g,
        Some(&glp),
        Some(&gh),
    )
    .unwrap();
    let both = TokenGrads { logprob: Some(&glp_t), entropy: Some(&gh_t) };
    for (how, forward) in [("given the forward", Some(&out)), ("forward again", None)] {
        let gr = l.backward_with_tokens(&x, &w, Some(&b), &t, &g_t, both, forward).unwrap();
        let (tx, tw) = (rounded(tol_grad(c), c.xd), rounded(tol_grad(c), c.wd));
        assert_close(&format!("{what} {how}: dX"), &gr.input.to_vec().unwrap(), &dx, tx);
        assert_close(&format!("{what} {how}: dW"), &gr.weight.to_vec().unwrap(), &dw, tw);
        assert_close(&format!("{what} {how}: db"), &gr.bias.to_vec().unwrap(), &db, tw);
    }
    // logprob's gradient alone.
    let (dx, ..) = lce_ref::linear_cross_entropy_backward_tokens(
        &c.x,
        &c.w,
        Some(&c.b),
        &c.t,
        c.h,
        &ro,
        &g,
        Some(&glp),
        None,
    )
    .unwrap();
    let only_lp = TokenGrads { logprob: Some(&glp_t), entropy: None };
    let gr = l.backward_with_tokens(&x, &w, Some(&b), &t, &g_t, only_lp, None).unwrap();
    assert_close(
        &format!("{what} logprob only: dX"),
        &gr.input.to_vec().unwrap(),
        &dx,
        rounded(tol_grad(c), c.xd),
    );
    // An entropy gradient needs a forward that computed the entropy.
    let no_tokens = l.clone().token_outputs(false).forward(&x, &w, Some(&b), &t).unwrap();
    let err = l.backward_with_tokens(&x, &w, Some(&b), &t, &g_t, both, Some(&no_tokens));
    assert!(matches!(err, Err(Error::InvalidArgument { .. })), "{what}: {err:?}");
}

/// The reference's per-token gradients against central differences of its outputs.
#[test]
fn reference_token_gradients_match_finite_differences() {
    let mut rng = Rng::new(58);
    let c = Case::new(&mut rng, 5, 3, 7, 3);
    let x: Vec<f64> = c.x.iter().map(|&v| v as f64).collect();
    let (glp, gh): (Vec<f64>, Vec<f64>) = (0..5).map(|_| (rng.unit() as f64, rng.unit() as f64)).unzip();
    let cw: Vec<f64> = c.cw.iter().map(|&v| v as f64).collect();
    let (w, b): (Vec<f64>, Vec<f64>) =
        (c.w.iter().map(|&v| v as f64).collect(), c.b.iter().map(|&v| v as f64).collect());
    for (softcap, temperature) in [(None, 1.0), (Some(2.0), 0.7)] {
        let o = Options { weight: Some(&cw[..]), softcap, temperature, ..Options::default() };
        let objective = |x: &[f64]| -> f64 {
            let t = lce_ref::token_outputs(x, &w, Some(&b), &c.t, c.h, &o).unwrap();
            let loss = lce_ref::linear_cross_entropy(x, &w, Some(&b), &c.t, c.h, &o).unwrap().0[0];
            loss + t.logprob.iter().zip(&glp).map(|(a, g)| a * g).sum::<f64>()
                + t.entropy.iter().zip(&gh).map(|(a, g)| a * g).sum::<f64>()
        };
        let (dx, ..) = lce_ref::linear_cross_entropy_backward_tokens(
            &x,
            &w,
            Some(&b),
            &c.t,
            c.h,
            &o,
            &[1.0],
            Some(&glp),
            Some(&gh),
        )
        .unwrap();
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let fd = (objective(&up) - objective(&down)) / 2e-6;
            assert!(
                (fd - dx[i]).abs() < 1e-6 + 1e-5 * dx[i].abs(),
                "softcap {softcap:?} T {temperature}: x[{i}] {} vs {fd}",
                dx[i]
            );
        }
    }
}

/// Token weights that are all 0: a mean over no weight is NaN, a sum 0, every gradient 0; the
/// per-token outputs do not depend on the weights.
#[test]
fn zero_weight_batches() {
    let mut rng = Rng::new(60);
    let mut c = Case::new(&mut rng, 12, 8, 40, 0);
    c.tw = vec![0.0; c.n];
    common::on_each(devices(), |dev| {
        let (x, w, b, t, _) = c.upload(dev);
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let l = LinearCrossEntropy::default().token_weight(c.token_weights(dev)).token_outputs(true);
        let (out, grads) = l.forward_backward(&x, &w, Some(&b), &t, &one).unwrap();
        assert!(out.loss.item().unwrap().is_nan(), "{}: the mean over zero weight", common::label(dev));
        for g in [&grads.input, &grads.weight, &grads.bias] {
            assert!(g.to_vec().unwrap().iter().all(|&v| v == 0.0), "{}", common::label(dev));
        }
        let sum = l.clone().reduction(Reduction::Sum).forward(&x, &w, Some(&b), &t).unwrap();
        assert_eq!(sum.loss.item().unwrap(), 0.0);
        let unweighted =
            LinearCrossEntropy::default().token_outputs(true).forward(&x, &w, Some(&b), &t).unwrap();
        let (a, u) = (out.tokens.unwrap(), unweighted.tokens.unwrap());
        assert_eq!(a.logprob.to_vec().unwrap(), u.logprob.to_vec().unwrap());
        assert_eq!(a.entropy.to_vec().unwrap(), u.entropy.to_vec().unwrap());
    });
}
