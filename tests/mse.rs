//! mse, sum and mean on every adapter against the f64 reference.

mod common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::{Reduction, reference};

#[test]
fn mse_matches_reference() {
    let mut rng = Rng::new(30);
    let shapes: [&[usize]; 5] = [&[1], &[3, 7], &[4097], &[2, 3, 1000], &[70_000]];
    for dev in devices().iter().chain(small_binding_devices()) {
        for shape in shapes {
            let n: usize = shape.iter().product();
            let x = rng.values(n, 3.0);
            let y = rng.values(n, 3.0);
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                let got = wgpu_loss::mse(
                    &dev.tensor(&x, shape).unwrap(),
                    &dev.tensor(&y, shape).unwrap(),
                    reduction,
                )
                .unwrap()
                .to_vec()
                .unwrap();
                let want = reference::mse::mse(&x, &y, reduction);
                assert_close(
                    &format!("{} {shape:?} {reduction:?}", common::label(dev)),
                    &got,
                    &want,
                    Tol::ELEMENT.sum(n),
                );
            }
        }
    }
}

#[test]
fn sum_and_mean_match_reference_and_empty_follows_pytorch() {
    let mut rng = Rng::new(31);
    for dev in devices().iter().chain(small_binding_devices()) {
        for n in [1usize, 5, 4095, 4096, 4097, 100_003] {
            let x = rng.values(n, 2.0);
            let t = dev.tensor(&x, &[n]).unwrap();
            let tol = Tol::ELEMENT.sum(n);
            assert_close(
                "sum",
                &[wgpu_loss::sum(&t).unwrap().item().unwrap()],
                &[reference::reduce::sum(&x)],
                Tol { abs: 1e-5 * (n as f64).sqrt(), ..tol },
            );
            assert_close(
                "mean",
                &[wgpu_loss::mean(&t).unwrap().item().unwrap()],
                &[reference::reduce::mean(&x)],
                tol,
            );
        }
        // torch.tensor([]).mean() -> nan, .sum() -> 0
        let empty = dev.tensor(&[], &[0]).unwrap();
        assert!(wgpu_loss::mean(&empty).unwrap().item().unwrap().is_nan());
        assert_eq!(wgpu_loss::sum(&empty).unwrap().item().unwrap(), 0.0);
        assert!(wgpu_loss::mse(&empty, &empty, Reduction::Mean).unwrap().item().unwrap().is_nan());
    }
}
