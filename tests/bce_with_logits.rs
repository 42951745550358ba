//! bce_with_logits on every adapter against the f64 reference.

mod common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::reference::bce_with_logits::bce_with_logits as reference;
use wgpu_loss::{BceWithLogits, Device, Reduction};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

#[allow(clippy::too_many_arguments)]
fn check(
    dev: &Device,
    x: &[f32],
    y: &[f32],
    shape: &[usize],
    weight: Option<(&[f32], &[usize])>,
    pos_weight: Option<&[f32]>,
    reduction: Reduction,
    scale: f64,
) -> Vec<f32> {
    let cols = *shape.last().unwrap();
    let mut loss = BceWithLogits::default().reduction(reduction);
    if let Some((w, s)) = weight {
        loss = loss.weight(dev.tensor(w, s).unwrap());
    }
    if let Some(p) = pos_weight {
        loss = loss.pos_weight(dev.tensor(p, &[cols]).unwrap());
    }
    let got = loss
        .forward(&dev.tensor(x, shape).unwrap(), &dev.tensor(y, shape).unwrap())
        .unwrap()
        .to_vec()
        .unwrap();
    let want = reference(x, y, cols, weight.map(|w| w.0), pos_weight, reduction);
    let what = format!(
        "{} {shape:?} {reduction:?} weight={} pos_weight={}",
        common::label(dev),
        weight.is_some(),
        pos_weight.is_some()
    );
    assert_close(&what, &got, &want, Tol::scaled(scale).sum(x.len()));
    got
}

#[test]
fn pytorch_golden_values() {
    // F.binary_cross_entropy_with_logits(torch.tensor([100., -100., 0., 0.]),
    //     torch.tensor([0., 1., 0., 1.]), reduction='none') = [100., 100., 0.6931472, 0.6931472]
    // with pos_weight=torch.tensor([3.]) on x=0, y=1: 3 ln 2 = 2.0794415
    for dev in devices() {
        let got = check(
            dev,
            &[100.0, -100.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0, 1.0],
            &[4],
            None,
            None,
            Reduction::None,
            100.0,
        );
        assert_close(
            "extremes",
            &got,
            &[100.0, 100.0, std::f64::consts::LN_2, std::f64::consts::LN_2],
            Tol::scaled(100.0),
        );
        let got = check(dev, &[0.0], &[1.0], &[1], None, Some(&[3.0]), Reduction::None, 1.0);
        assert_close("pos_weight", &got, &[3.0 * std::f64::consts::LN_2], Tol::ELEMENT);
    }
}

#[test]
fn options_shapes_and_extremes() {
    let mut rng = Rng::new(20);
    let shapes: [&[usize]; 5] = [&[1], &[3, 7], &[5, 1000], &[4099], &[2, 3, 65]];
    for dev in devices() {
        for shape in shapes {
            let n: usize = shape.iter().product();
            let cols = *shape.last().unwrap();
            for scale in [3.0f32, 1e4] {
                let x = rng.values(n, scale);
                let y: Vec<f32> = rng.values(n, 0.5).iter().map(|v| v + 0.5).collect();
                let w_full: Vec<f32> = rng.values(n, 1.0).iter().map(|v| v + 1.5).collect();
                let w_cols: Vec<f32> = (0..cols).map(|i| 0.5 + (i % 4) as f32).collect();
                let pw: Vec<f32> = (0..cols).map(|i| 0.25 + (i % 3) as f32).collect();
                for reduction in REDUCTIONS {
                    for weight in
                        [None, Some((w_full.as_slice(), shape)), Some((w_cols.as_slice(), &[cols][..]))]
                    {
                        for pos_weight in [None, Some(pw.as_slice())] {
                            check(dev, &x, &y, shape, weight, pos_weight, reduction, scale as f64);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn more_workgroups_than_one_dimension_holds() {
    // 64 × 65 535 + 100 elements: the per-element pass needs a 2-D grid.
    let n = 64 * 65_535 + 100;
    let mut rng = Rng::new(21);
    let x = rng.values(n, 4.0);
    let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    for dev in devices() {
        check(dev, &x, &y, &[n], None, None, Reduction::None, 4.0);
        check(dev, &x, &y, &[n], None, None, Reduction::Mean, 4.0);
    }
}

#[test]
fn chunked_bindings() {
    // 50 000 elements of 4 bytes against 64 KiB bindings, with a per-column weight and
    // pos_weight whose column phase must carry across chunks.
    let (rows, cols) = (1000, 50);
    let mut rng = Rng::new(22);
    let x = rng.values(rows * cols, 5.0);
    let y: Vec<f32> = rng.values(rows * cols, 0.5).iter().map(|v| v + 0.5).collect();
    let w: Vec<f32> = (0..cols).map(|i| 1.0 + i as f32 / 10.0).collect();
    let pw: Vec<f32> = (0..cols).map(|i| 2.0 - i as f32 / 50.0).collect();
    for dev in small_binding_devices() {
        for reduction in REDUCTIONS {
            check(dev, &x, &y, &[rows, cols], Some((&w, &[cols])), Some(&pw), reduction, 5.0);
        }
    }
}
