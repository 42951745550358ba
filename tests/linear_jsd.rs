//! linear_jsd (two LM heads, the distillation loss fused) on every adapter: against the f64
//! reference and against the unfused composition (two `linear`, `jsd`, `linear`'s backward)
//! for every option, in f32 and bf16, across chunks of rows and shards of W; errors.

use crate::common;

use common::{Rng, Tol, assert_close, devices, label, small_binding_devices};
use wgpu_loss::reference::divergence::Rows;
use wgpu_loss::reference::linear_jsd::{Head, linear_jsd, linear_jsd_backward};
use wgpu_loss::{
    DType, Device, Error, Indices, Jsd, Linear, LinearHead, LinearJsd, LinearKernel, Outputs, Reduction,
    Tensor,
};

/// Host data of one call: a student (h_s features) and a teacher (h_t) over v classes.
struct Data {
    n: usize,
    v: usize,
    hs: usize,
    ht: usize,
    xs: Vec<f32>,
    ws: Vec<f32>,
    bs: Vec<f32>,
    xt: Vec<f32>,
    wt: Vec<f32>,
    bt: Vec<f32>,
    labels: Vec<i64>,
}

impl Data {
    fn new(rng: &mut Rng, n: usize, hs: usize, ht: usize, v: usize, dtype: DType) -> Data {
        let mut vals = |len: usize, scale: f32| -> Vec<f32> {
            rng.values(len, scale).into_iter().map(|x| dtype.round(x)).collect()
        };
        let (xs, ws, bs) = (vals(n * hs, 1.0), vals(v * hs, 1.5 / (hs as f32).sqrt()), vals(v, 0.5));
        let (xt, wt, bt) = (vals(n * ht, 1.0), vals(v * ht, 1.5 / (ht as f32).sqrt()), vals(v, 0.5));
        let mut labels = rng.classes(n, v);
        for l in labels.iter_mut().step_by(3) {
            *l = -100;
        }
        Data { n, v, hs, ht, xs, ws, bs, xt, wt, bt, labels }
    }

    fn heads(&self, bias: bool) -> (Head<'_, f32>, Head<'_, f32>) {
        (
            Head { x: &self.xs, w: &self.ws, bias: bias.then_some(&self.bs[..]), h: self.hs },
            Head { x: &self.xt, w: &self.wt, bias: bias.then_some(&self.bt[..]), h: self.ht },
        )
    }
}

/// The operands on a device in `dtype`.
struct Uploaded {
    xs: Tensor,
    ws: Tensor,
    bs: Tensor,
    xt: Tensor,
    wt: Tensor,
    bt: Tensor,
    labels: Indices,
}

impl Uploaded {
    fn new(dev: &Device, d: &Data, dtype: DType) -> Uploaded {
        let t = |v: &[f32], s: &[usize]| dev.tensor(v, s).unwrap().to_dtype(dtype).unwrap();
        Uploaded {
            xs: t(&d.xs, &[d.n, d.hs]),
            ws: t(&d.ws, &[d.v, d.hs]),
            bs: t(&d.bs, &[d.v]),
            xt: t(&d.xt, &[d.n, d.ht]),
            wt: t(&d.wt, &[d.v, d.ht]),
            bt: t(&d.bt, &[d.v]),
            labels: dev.indices(&d.labels, &[d.n]).unwrap(),
        }
    }

    fn heads(&self, bias: bool) -> (LinearHead<'_>, LinearHead<'_>) {
        (
            LinearHead { x: &self.xs, weight: &self.ws, bias: bias.then_some(&self.bs) },
            LinearHead { x: &self.xt, weight: &self.wt, bias: bias.then_some(&self.bt) },
        )
    }
}

/// The upstream gradient for `reduction` over `n` rows.
fn upstream(rng: &mut Rng, n: usize, reduction: Reduction) -> (Vec<f32>, Vec<usize>) {
    match reduction {
        Reduction::None => (rng.values(n, 1.0), vec![n]),
        _ => (vec![0.75], vec![]),
    }
}

/// Fused against the reference and (with `unfused`) against the unfused composition on `dev`.
#[allow(clippy::too_many_arguments)]
fn check(
    dev: &Device,
    d: &Data,
    o: &LinearJsd,
    labels: bool,
    bias: bool,
    dtype: DType,
    rng: &mut Rng,
    unfused: bool,
) {
    let what = format!(
        "linear_jsd {dtype} n={} hs={} ht={} v={} β={} T={} {:?} labels={labels} bias={bias} scratch={} on {}",
        d.n,
        d.hs,
        d.ht,
        d.v,
        o.beta,
        o.temperature,
        o.reduction,
        o.max_scratch_bytes,
        label(dev)
    );
    let up = Uploaded::new(dev, d, dtype);
    let (s, t) = up.heads(bias);
    let l = labels.then_some(&up.labels);
    let (g, g_shape) = upstream(rng, d.n, o.reduction);
    let gt = dev.tensor(&g, &g_shape).unwrap();
    let (loss, grads) = o.forward_backward(s, t, l, &gt).unwrap();
    assert_eq!(grads.input.dtype(), dtype, "{what}: dX in x's type");
    let rows = Rows { labels: labels.then_some(&d.labels[..]), ignore_index: -100, reduction: o.reduction };
    let (hs, ht) = d.heads(bias);
    let (beta, temp) = (o.beta as f64, o.temperature as f64);
    let want = linear_jsd(hs, ht, beta, temp, rows);
    let loss_v = loss.to_vec().unwrap();
    assert_close(&format!("{what}: loss"), &loss_v, &want, Tol { abs: 1e-5, rel: 1e-4 });
    let forward_only = o.forward(s, t, l).unwrap().to_vec().unwrap();
    assert_eq!(forward_only, loss_v, "{what}: forward alone gives forward_backward's loss");
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    let (dx, dw, db) = linear_jsd_backward(hs, ht, beta, temp, rows, &g64);
    let half = if dtype == DType::F32 { 0.0 } else { 2f64.powi(-7) };
    let tol = Tol { abs: 1e-6 + half * 1e-3, rel: 2e-4 + half };
    assert_close(&format!("{what}: dX"), &grads.input.to_vec().unwrap(), &dx, tol);
    assert_close(&format!("{what}: dW"), &grads.weight.to_vec().unwrap(), &dw, tol);
    if bias {
        assert_close(&format!("{what}: db"), &grads.bias.to_vec().unwrap(), &db, tol);
    }
    if !unfused {
        return;
    }
    // The unfused composition on the same device, gradients in f32.
    let lin = Linear { outputs: Outputs::F32, ..Linear::default() };
    let zs = lin.forward(s.x, s.weight, s.bias).unwrap();
    let zt = lin.forward(t.x, t.weight, t.bias).unwrap();
    let jsd = Jsd { beta: o.beta, temperature: o.temperature, reduction: o.reduction, ..Jsd::default() };
    let unfused = jsd.forward(&zs, &zt, l).unwrap().to_vec().unwrap();
    assert_close(
        &format!("{what}: fused vs unfused loss"),
        &loss_v,
        &f64s(&unfused),
        Tol { abs: 1e-6, rel: 1e-5 },
    );
    let dz = jsd.backward(&zs, &zt, l, &gt).unwrap();
    let un = lin.backward(s.x, s.weight, &dz).unwrap();
    let fused32 = LinearJsd { outputs: Outputs::F32, ..o.clone() }.backward(s, t, l, &gt).unwrap();
    let close = Tol { abs: 1e-6, rel: 1e-4 };
    let pairs = [("dX", &fused32.input, &un.input), ("dW", &fused32.weight, &un.weight)];
    for (name, a, b) in pairs {
        let b = f64s(&b.to_vec().unwrap());
        assert_close(&format!("{what}: fused vs unfused {name}"), &a.to_vec().unwrap(), &b, close);
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn fused_equals_reference_and_unfused_for_every_option() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(101);
        let d = Data::new(&mut rng, 37, 24, 40, 300, DType::F32);
        let options = [
            (0.5, 1.0, Reduction::Mean, true, true),
            (0.0, 1.0, Reduction::Sum, false, true),
            (1.0, 2.0, Reduction::None, true, false),
            (0.3, 0.7, Reduction::Mean, false, false),
            (0.0, 3.0, Reduction::None, true, true),
            (1.0, 1.0, Reduction::Mean, true, true),
        ];
        for (beta, temperature, reduction, labels, bias) in options {
            // A scratch of 8 rows (three buffers of 8 × 300 floats): five chunks.
            let o = LinearJsd {
                beta,
                temperature,
                reduction,
                max_scratch_bytes: 8 * 300 * 12,
                ..LinearJsd::default()
            };
            check(dev, &d, &o, labels, bias, DType::F32, &mut rng, true);
        }
        let o = LinearJsd::default();
        check(dev, &d, &o, true, true, DType::F32, &mut rng, true);
    });
}

#[test]
fn bf16_heads() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(102);
        let d = Data::new(&mut rng, 20, 32, 16, 256, DType::BF16);
        for (beta, reduction) in [(0.5, Reduction::Mean), (0.0, Reduction::None), (1.0, Reduction::Sum)] {
            let o = LinearJsd { beta, reduction, temperature: 2.0, ..LinearJsd::default() };
            check(dev, &d, &o, true, true, DType::BF16, &mut rng, true);
        }
    });
}

/// W bound in shards (64 KiB bindings: 64 rows of 256 f32 features each) and chunks of rows.
#[test]
fn shards_of_w_and_chunks_of_rows() {
    common::on_each(small_binding_devices(), |dev| {
        let mut rng = Rng::new(103);
        let d = Data::new(&mut rng, 19, 256, 128, 200, DType::F32);
        let o = LinearJsd { beta: 0.4, max_scratch_bytes: 64 << 10, ..LinearJsd::default() };
        // Unfused `linear` binds W whole, which these limits refuse: the reference alone.
        check(dev, &d, &o, true, true, DType::F32, &mut rng, false);
    });
}

#[test]
fn all_ignored_and_empty() {
    common::on_each(devices(), |dev| {
        let mut rng = Rng::new(104);
        let mut d = Data::new(&mut rng, 6, 8, 8, 16, DType::F32);
        d.labels = vec![-100; 6];
        let up = Uploaded::new(dev, &d, DType::F32);
        let (s, t) = up.heads(true);
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let (loss, grads) = LinearJsd::default().forward_backward(s, t, Some(&up.labels), &one).unwrap();
        assert!(loss.item().unwrap().is_nan(), "{}: the mean over no row is NaN", label(dev));
        assert!(grads.weight.to_vec().unwrap().iter().all(|&v| v == 0.0));
        assert!(grads.input.to_vec().unwrap().iter().all(|&v| v == 0.0));
        let sum = LinearJsd { reduction: Reduction::Sum, ..LinearJsd::default() };
        assert_eq!(sum.forward(s, t, Some(&up.labels)).unwrap().item().unwrap(), 0.0);
        let empty = dev.tensor(&[], &[0, 8]).unwrap();
        let e = LinearHead { x: &empty, ..s };
        let et = LinearHead { x: &empty, ..t };
        assert!(LinearJsd::default().forward(e, et, None).unwrap().item().unwrap().is_nan());
        let grads = LinearJsd::default().backward(e, et, None, &one).unwrap();
        assert_eq!(grads.input.shape(), &[0, 8]);
        assert!(grads.weight.to_vec().unwrap().iter().all(|&v| v == 0.0));
    });
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = &devices()[0];
    let mut rng = Rng::new(105);
    let d = Data::new(&mut rng, 4, 8, 6, 10, DType::F32);
    let up = Uploaded::new(dev, &d, DType::F32);
    let (s, t) = up.heads(true);
    let shape = |r: Result<Tensor, Error>| matches!(r, Err(Error::Shape { .. }));
    let other_v = dev.tensor(&[0.0; 11 * 6], &[11, 6]).unwrap();
    assert!(shape(LinearJsd::default().forward(s, LinearHead { weight: &other_v, bias: None, ..t }, None)));
    let other_n = dev.tensor(&[0.0; 5 * 6], &[5, 6]).unwrap();
    assert!(shape(LinearJsd::default().forward(s, LinearHead { x: &other_n, ..t }, None)));
    let wrong_h = dev.tensor(&[0.0; 10 * 7], &[10, 7]).unwrap();
    assert!(shape(LinearJsd::default().forward(LinearHead { weight: &wrong_h, ..s }, t, None)));
    let labels = dev.indices(&[1, 2], &[2]).unwrap();
    assert!(shape(LinearJsd::default().forward(s, t, Some(&labels))));
    let beta = LinearJsd { beta: 2.0, ..LinearJsd::default() }.forward(s, t, None);
    assert!(matches!(beta, Err(Error::InvalidArgument { .. })), "{beta:?}");
    // The texture-fed GEMMs would copy W's shards past the scratch cap: not offered here.
    let staged = LinearJsd { kernel: LinearKernel::Staged, ..LinearJsd::default() }.forward(s, t, None);
    assert!(matches!(staged, Err(Error::InvalidArgument { .. })), "{staged:?}");
    let per_row = dev.tensor(&[1.0; 4], &[4]).unwrap();
    assert!(matches!(LinearJsd::default().backward(s, t, None, &per_row), Err(Error::Shape { .. })));
    // A scratch cap below three buffers of aligned rows names the option, forward and backward.
    let small = LinearJsd { max_scratch_bytes: 1, ..LinearJsd::default() };
    let one = dev.tensor(&[1.0], &[]).unwrap();
    for err in [
        small.forward(s, t, None).map(|_| ()).unwrap_err(),
        small.backward(s, t, None, &one).map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::InvalidArgument { message, .. } if message.contains("max_scratch_bytes")),
            "{err}"
        );
    }
}

/// The reference's gradients in x_s, W_s and b_s against central differences of its loss.
#[test]
fn reference_gradients_match_finite_differences() {
    let mut rng = Rng::new(106);
    let d = Data::new(&mut rng, 5, 4, 3, 7, DType::F32);
    let to64 = |v: &[f32]| f64s(v);
    let (xs, ws, bs) = (to64(&d.xs), to64(&d.ws), to64(&d.bs));
    let (xt, wt, bt) = (to64(&d.xt), to64(&d.wt), to64(&d.bt));
    let teacher = Head { x: &xt[..], w: &wt[..], bias: Some(&bt[..]), h: d.ht };
    for (beta, temperature, reduction) in
        [(0.5, 1.0, Reduction::Mean), (0.0, 2.0, Reduction::Sum), (1.0, 0.5, Reduction::None)]
    {
        let rows = Rows { labels: Some(&d.labels[..]), ignore_index: -100, reduction };
        let g: Vec<f64> = if reduction == Reduction::None {
            rng.values(5, 1.0).iter().map(|&v| v as f64).collect()
        } else {
            vec![1.0]
        };
        let objective = |xs: &[f64], ws: &[f64], bs: &[f64]| -> f64 {
            let student = Head { x: xs, w: ws, bias: Some(bs), h: d.hs };
            linear_jsd(student, teacher, beta, temperature, rows).iter().zip(&g).map(|(l, g)| l * g).sum()
        };
        let student = Head { x: &xs[..], w: &ws[..], bias: Some(&bs[..]), h: d.hs };
        let (dx, dw, db) = linear_jsd_backward(student, teacher, beta, temperature, rows, &g);
        let h = 1e-6;
        for (which, base, grad) in [(0, &xs, &dx), (1, &ws, &dw), (2, &bs, &db)] {
            for i in 0..base.len() {
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += h;
                down[i] -= h;
                let at = |v: &Vec<f64>| match which {
                    0 => objective(v, &ws, &bs),
                    1 => objective(&xs, v, &bs),
                    _ => objective(&xs, &ws, v),
                };
                let fd = (at(&up) - at(&down)) / (2.0 * h);
                assert!(
                    (fd - grad[i]).abs() < 1e-6 + 1e-5 * grad[i].abs(),
                    "β={beta} operand {which} element {i}: {} vs {fd}",
                    grad[i]
                );
            }
        }
    }
}
