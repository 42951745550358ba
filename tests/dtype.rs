//! Half-precision tensors: upload, read-back, and the kernels' conversions of every special value
//! (±0, subnormals, ±inf, NaN, the largest finite values, rounding ties) on every adapter and
//! input path, against the `half` crate's conversions.

use crate::common;

use common::{devices, label, small_binding_devices};
use wgpu_loss::{DType, Device, Error, Tensor, bf16, f16};

/// f32 values around every edge of both half types.
fn specials() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        1.0e-40,            // f32 subnormal
        -1.0e-45,           // the smallest f32 subnormal
        65504.0,            // f16 max
        65519.0,            // rounds down to f16 max
        65520.0,            // the tie: rounds to f16 infinity
        -70000.0,           // f16 overflow
        6.1035156e-5,       // f16 smallest normal, 2^-14
        6.0e-5,             // f16 subnormal
        5.9604645e-8,       // 2^-24, the smallest f16 subnormal
        2.9802322e-8,       // 2^-25: the tie to zero
        3.0e-8,             // just above the tie: rounds to 2^-24
        1.0e-9,             // underflows f16
        3.3895314e38,       // bf16 max
        3.3961775e38,       // rounds to bf16 infinity
        1.0 + 1.0 / 256.0,  // a bf16 tie (to even: 1)
        1.0 + 3.0 / 256.0,  // a bf16 tie (to even: 1 + 4/256)
        1.0 + 1.0 / 2048.0, // an f16 tie (to even: 1)
        1.0 + 3.0 / 2048.0, // an f16 tie (to even: 1 + 4/2048)
        0.1,
        -std::f32::consts::PI,
        1.0e-39, // bf16 subnormal
    ];
    // Every exponent of both types, with mantissa bits on.
    for e in -150..130 {
        v.push(1.618034 * 2f32.powi(e));
        v.push(-1.0000001 * 2f32.powi(e));
    }
    v
}

/// Equal as bits, or both NaN.
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn check_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(g, w),
            "{what}: element {i}: got {g:e} ({:#x}), want {w:e} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

#[test]
fn half_tensors_round_trip_and_widen_exactly() {
    let v = specials();
    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let b: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
    common::on_each(devices(), |dev| {
        let what = label(dev);
        let th = dev.tensor_of(&h, &[v.len()]).unwrap();
        let tb = dev.tensor_of(&b, &[v.len()]).unwrap();
        assert_eq!((th.dtype(), tb.dtype()), (DType::F16, DType::BF16));
        // Read back in their own types, bit for bit, and widened on the host.
        let back: Vec<u16> = th.to_vec_of::<f16>().unwrap().iter().map(|x| x.to_bits()).collect();
        assert_eq!(back, h.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{what} f16");
        let back: Vec<u16> = tb.to_vec_of::<bf16>().unwrap().iter().map(|x| x.to_bits()).collect();
        assert_eq!(back, b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{what} bf16");
        let wide_h: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        let wide_b: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        check_same(&format!("{what} f16 to_vec"), &th.to_vec().unwrap(), &wide_h);
        // Widened by the kernel (decoding in the shader, on this device's input path).
        check_same(
            &format!("{what} f16 widen"),
            &th.to_dtype(DType::F32).unwrap().to_vec_of::<f32>().unwrap(),
            &wide_h,
        );
        check_same(
            &format!("{what} bf16 widen"),
            &tb.to_dtype(DType::F32).unwrap().to_vec_of::<f32>().unwrap(),
            &wide_b,
        );
        // Another type is an error, not a reinterpretation.
        assert!(matches!(th.to_vec_of::<bf16>(), Err(Error::InvalidArgument { .. })));
    });
}

#[test]
fn f32_rounds_to_halves_to_nearest_even_in_the_kernel() {
    let v = specials();
    let want_h: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    let want_b: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    common::on_each(devices(), |dev| {
        let what = label(dev);
        let x = dev.tensor(&v, &[v.len()]).unwrap();
        let h = x.to_dtype(DType::F16).unwrap();
        let b = x.to_dtype(DType::BF16).unwrap();
        assert_eq!((h.dtype(), b.dtype()), (DType::F16, DType::BF16));
        check_same(&format!("{what} f16"), &h.to_vec().unwrap(), &want_h);
        check_same(&format!("{what} bf16"), &b.to_vec().unwrap(), &want_b);
        // Half to half goes through f32, which holds both exactly: one rounding.
        let hb: Vec<f32> = want_h.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
        check_same(&format!("{what} f16 → bf16"), &h.to_dtype(DType::BF16).unwrap().to_vec().unwrap(), &hb);
    });
}

/// Odd lengths and chunks: the last word holds one half; chunks start on whole texels.
#[test]
fn conversions_in_chunks_and_odd_lengths() {
    let n = 50_001;
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1000.0).collect();
    let want: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    let check = |dev: &Device| {
        let x = dev.tensor(&v, &[n]).unwrap();
        let b = x.to_dtype(DType::BF16).unwrap();
        check_same(&format!("{} narrow", label(dev)), &b.to_vec().unwrap(), &want);
        let back: Tensor = b.to_dtype(DType::F32).unwrap();
        check_same(&format!("{} widen", label(dev)), &back.to_vec().unwrap(), &want);
        for len in [0usize, 1, 3] {
            let t = dev.tensor(&v[..len], &[len]).unwrap().to_dtype(DType::F16).unwrap();
            let want: Vec<f32> = v[..len].iter().map(|&x| f16::from_f32(x).to_f32()).collect();
            check_same(&format!("{} length {len}", label(dev)), &t.to_vec().unwrap(), &want);
        }
    };
    devices().iter().for_each(check);
    small_binding_devices().iter().for_each(check);
}

/// An application's buffer of bf16 values wrapped as a tensor: losses read it in place; a buffer
/// without the whole last word is refused.
#[test]
fn wrapped_half_buffers() {
    let x: Vec<bf16> = [0.5f32, -1.5, 2.0].iter().map(|&v| bf16::from_f32(v)).collect();
    let y: Vec<bf16> = [0.0f32, 0.0, 1.0].iter().map(|&v| bf16::from_f32(v)).collect();
    common::on_each(devices(), |dev| {
        let buffer = |data: &[bf16], size: u64| {
            let b = dev.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu_loss::INPUT_USAGES | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            if size.is_multiple_of(4) {
                let mut bytes: Vec<u8> = bytemuck::cast_slice(data).to_vec();
                bytes.resize(size as usize, 0);
                dev.wgpu_queue().write_buffer(&b, 0, &bytes);
            }
            b
        };
        let xt = Tensor::from_buffer_of(dev, buffer(&x, 8), &[3], DType::BF16).unwrap();
        let yt = Tensor::from_buffer_of(dev, buffer(&y, 8), &[3], DType::BF16).unwrap();
        assert_eq!(xt.to_vec_of::<bf16>().unwrap(), x);
        // mse: ((0.5)² + (1.5)² + (1)²) / 3
        let loss = wgpu_loss::mse(&xt, &yt, wgpu_loss::Reduction::Mean).unwrap().item().unwrap();
        assert!((loss - 3.5 / 3.0).abs() < 1e-6, "{} mse {loss}", label(dev));
        // Three halves are six bytes, but kernels bind whole words: eight are needed.
        let short = Tensor::from_buffer_of(dev, buffer(&x, 6), &[3], DType::BF16);
        assert!(matches!(short, Err(Error::Shape { .. })), "{}", label(dev));
    });
}

/// The same f32 values, both rounded to `dtype` and then bit-compared: `half` holds a result
/// stored by a kernel in `dtype`, `wide` the same computation with `Outputs::F32`.
fn check_rounded_once(what: &str, half: &Tensor, wide: &Tensor, dtype: DType) {
    assert_eq!(half.dtype(), dtype, "{what}: the output's type");
    let want: Vec<f32> = wide.to_vec().unwrap().into_iter().map(|v| dtype.round(v)).collect();
    check_same(what, &half.to_vec().unwrap(), &want);
}

#[test]
fn kernels_store_half_outputs_rounded_once() {
    // Where a thread owns whole words of halves (pointwise quads; rows of a multiple of 4
    // contiguous classes; nll's or-ed scatter) the kernels round and store half results
    // themselves; elsewhere they
    // write f32 and `convert` rounds. Either way a half output is the f32 result rounded once
    // to nearest even: bit for bit the `Outputs::F32` result rounded. Shapes cover quads and
    // strided rows, odd element counts (a padded last word) and several row chunks on the
    // 64 KiB-binding devices.
    use wgpu_loss::{CrossEntropy, LogSoftmax, Mse, Outputs, Reduction, Softmax};
    let mut rng = common::Rng::new(91);
    let all: Vec<&Device> = devices().iter().chain(small_binding_devices()).collect();
    for dtype in [DType::BF16, DType::F16] {
        for shape in [vec![6usize, 8], vec![5, 7], vec![3, 4, 2], vec![40, 1000], vec![9]] {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = rng.values(n, 3.0);
            let y: Vec<f32> = rng.values(n, 1.0).into_iter().map(f32::abs).collect();
            for dev in &all {
                let what = format!("{} {dtype} {shape:?}", label(dev));
                let (xt, yt) =
                    (dev.tensor_as(&x, &shape, dtype).unwrap(), dev.tensor_as(&y, &shape, dtype).unwrap());
                let g_all = dev.tensor(&rng.values(n, 1.0), &shape).unwrap();
                let one = dev.tensor(&[1.0], &[]).unwrap();
                // Pointwise, both gradients, per-element upstream.
                let mse = Mse::default().reduction(Reduction::None);
                let (dx, dy) = mse.backward_with_target(&xt, &yt, &g_all).unwrap();
                let (wx, wy) = mse.outputs(Outputs::F32).backward_with_target(&xt, &yt, &g_all).unwrap();
                check_rounded_once(&format!("{what} mse dx"), &dx, &wx, dtype);
                check_rounded_once(&format!("{what} mse dy"), &dy, &wy, dtype);
                // log_softmax and softmax over the last dim, forward and backward.
                let ls = LogSoftmax { dim: -1, ..Default::default() };
                let sm = Softmax { dim: -1, ..Default::default() };
                let wide = |o: Outputs| (LogSoftmax { outputs: o, ..ls }, Softmax { outputs: o, ..sm });
                let (ls32, sm32) = wide(Outputs::F32);
                check_rounded_once(
                    &format!("{what} log_softmax"),
                    &ls.forward(&xt).unwrap(),
                    &ls32.forward(&xt).unwrap(),
                    dtype,
                );
                check_rounded_once(
                    &format!("{what} softmax"),
                    &sm.forward(&xt).unwrap(),
                    &sm32.forward(&xt).unwrap(),
                    dtype,
                );
                let g = g_all.to_dtype(dtype).unwrap();
                check_rounded_once(
                    &format!("{what} log_softmax backward"),
                    &ls.backward(&xt, &g).unwrap(),
                    &ls32.backward(&xt, &g).unwrap(),
                    dtype,
                );
                check_rounded_once(
                    &format!("{what} softmax backward"),
                    &sm.backward(&yt, &g).unwrap(),
                    &sm32.backward(&yt, &g).unwrap(),
                    dtype,
                );
                // cross_entropy over the class dim 1: class ids, and probabilities with their
                // gradient.
                if shape.len() < 2 {
                    continue;
                }
                let rows: Vec<usize> = [&shape[..1], &shape[2..]].concat();
                let ids = rng.classes(rows.iter().product(), shape[1]);
                let tt = dev.indices(&ids, &rows).unwrap();
                let ce = CrossEntropy::default().label_smoothing(0.1);
                let ce32 = ce.clone().outputs(Outputs::F32);
                check_rounded_once(
                    &format!("{what} cross_entropy backward"),
                    &ce.backward(&xt, &tt, &one).unwrap(),
                    &ce32.backward(&xt, &tt, &one).unwrap(),
                    dtype,
                );
                // nll scatters one half per row into its word: rows of odd length share words.
                let nll = wgpu_loss::Nll::default();
                check_rounded_once(
                    &format!("{what} nll backward"),
                    &nll.backward(&xt, &tt, &one).unwrap(),
                    &nll.clone().outputs(Outputs::F32).backward(&xt, &tt, &one).unwrap(),
                    dtype,
                );
                let (dx, dy) = ce.backward_probs(&xt, &yt, &one).unwrap();
                let (wx, wy) = ce32.backward_probs(&xt, &yt, &one).unwrap();
                check_rounded_once(&format!("{what} cross_entropy probs dx"), &dx, &wx, dtype);
                check_rounded_once(&format!("{what} cross_entropy probs dy"), &dy, &wy, dtype);
            }
        }
    }
}
