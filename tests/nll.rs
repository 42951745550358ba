//! nll on every adapter: PyTorch's values, the f64 reference for every shape, weight and
//! reduction, and log_softmax followed by nll against the fused cross_entropy.

use crate::common;

use common::classes::{class_count, ids, target_shape, upstream};
use common::{Rng, Tol, assert_close, devices};
use wgpu_loss::reference::nll as nll_ref;
use wgpu_loss::{CrossEntropy, Nll, Reduction};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

#[test]
fn pytorch_golden_values() {
    // lp = torch.tensor([[-0.5, -1.2, -2.0], [-1.0, -0.3, -3.0], [-0.1, -2.5, -4.0]],
    //                   requires_grad=True)
    // t = torch.tensor([2, 1, -100]); w = torch.tensor([1., 2., 3.])
    // l = F.nll_loss(lp, t, weight=w); l.backward()  # 1.3199999332, grad rows 0: -0.6 at 2,
    //                                                 # 1: -0.4 at 1, 2: zeros
    // F.nll_loss(lp, t, reduction='none')  # [2.0, 0.3000000119, 0.0]; 'sum': 2.2999999523
    let lp = [-0.5f32, -1.2, -2.0, -1.0, -0.3, -3.0, -0.1, -2.5, -4.0];
    for dev in devices() {
        let (x, t) = (dev.tensor(&lp, &[3, 3]).unwrap(), dev.indices(&[2i64, 1, -100], &[3]).unwrap());
        let w = dev.tensor(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let weighted = Nll::default().weight(w);
        let what = common::label(dev);
        assert!((weighted.forward(&x, &t).unwrap().item().unwrap() - 1.32).abs() < 1e-6, "{what}");
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let dx = weighted.backward(&x, &t, &one).unwrap().to_vec().unwrap();
        let want = [0.0, 0.0, -0.6000000238, 0.0, -0.4000000060, 0.0, 0.0, 0.0, 0.0];
        assert_close(&format!("{what} gradient"), &dx, &want, Tol::ELEMENT);
        let none = Nll::default().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec().unwrap();
        assert_close(&format!("{what} none"), &none, &[2.0, 0.3000000119, 0.0], Tol::ELEMENT);
        let sum = Nll::default().reduction(Reduction::Sum).forward(&x, &t).unwrap().item().unwrap();
        assert!((sum - 2.3).abs() < 1e-6, "{what}");
    }
}

#[test]
fn nll_k_dim_forward_backward_and_log_softmax_composition() {
    let mut rng = Rng::new(43);
    for dev in devices() {
        for shape in [&[6usize, 4][..], &[3, 5, 4], &[5]] {
            let n: usize = shape.iter().product();
            let c = class_count(shape);
            let x = rng.values(n, 3.0);
            let ts = target_shape(shape);
            let t = ids(&mut rng, n / c, c);
            let w: Vec<f32> = (0..c).map(|i| 1.0 + i as f32 * 0.25).collect();
            for weighted in [false, true] {
                for reduction in REDUCTIONS {
                    let weight = weighted.then_some(w.as_slice());
                    let mut nll = Nll::default().reduction(reduction);
                    let mut ce = CrossEntropy::default().reduction(reduction);
                    if weighted {
                        nll = nll.weight(dev.tensor(&w, &[c]).unwrap());
                        ce = ce.weight(dev.tensor(&w, &[c]).unwrap());
                    }
                    let what = format!("{} {shape:?} weighted={weighted} {reduction:?}", common::label(dev));
                    let (xt, tt) = (dev.tensor(&x, shape).unwrap(), dev.indices(&t, &ts).unwrap());
                    let dim = if shape.len() == 1 { 0 } else { 1 };
                    let logp = wgpu_loss::LogSoftmax::default().dim(dim).forward(&xt).unwrap();
                    let via_nll = nll.forward(&logp, &tt).unwrap().to_vec().unwrap();
                    let fused: Vec<f64> =
                        ce.forward(&xt, &tt).unwrap().to_vec().unwrap().iter().map(|&v| v as f64).collect();
                    assert_close(
                        &format!("{what} log_softmax + nll vs cross_entropy"),
                        &via_nll,
                        &fused,
                        Tol::scaled(3.0).sum(n),
                    );
                    let lp = logp.to_vec().unwrap();
                    let want = nll_ref::nll_nd(&lp, shape, &t, weight, -100, reduction).unwrap();
                    assert_close(&format!("{what} nll"), &via_nll, &want, Tol::ELEMENT.sum(n));
                    let (g, gt) = upstream(dev, &mut rng, reduction, &ts);
                    let dx = nll.backward(&logp, &tt, &gt).unwrap().to_vec().unwrap();
                    let want = nll_ref::nll_backward(&lp, shape, &t, weight, -100, reduction, &g).unwrap();
                    assert_close(&format!("{what} nll backward"), &dx, &want, Tol::ELEMENT);
                }
            }
        }
    }
}
