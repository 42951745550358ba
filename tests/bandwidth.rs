//! The bandwidth yardsticks on every adapter against their f64 references, also in chunks.

use crate::common;

use common::{Rng, Tol, assert_close, devices, small_binding_devices};
use wgpu_loss::ops::bandwidth;
use wgpu_loss::reference::bandwidth as reference;

#[test]
fn read_sum_and_copy_match_the_reference() {
    let mut rng = Rng::new(70);
    // One partial workgroup, whole workgroups, and more than the 64 KiB binding of the small
    // devices (which splits the input into chunks of whole workgroups).
    for n in [4usize, 1000, 16_384, 70_004] {
        let x = rng.values(n, 1.0);
        let (want_sum, want_copy) = (reference::read_sum(&x), reference::copy(&x));
        for dev in devices().iter().chain(small_binding_devices()) {
            let xt = dev.tensor(&x, &[n]).unwrap();
            let what = format!("{} n = {n}", common::label(dev));
            let sums = bandwidth::read_sum(&xt).unwrap().to_vec().unwrap();
            assert_close(&format!("{what} read_sum"), &sums, &want_sum, Tol::ELEMENT.sum(64));
            let copy = bandwidth::copy(&xt).unwrap().to_vec().unwrap();
            assert_close(&format!("{what} copy"), &copy, &want_copy, Tol { abs: 0.0, rel: 0.0 });
        }
    }
}

#[test]
fn sizes_that_are_not_vec4s_are_refused() {
    for dev in devices() {
        let x = dev.tensor(&[1.0, 2.0, 3.0], &[3]).unwrap();
        assert!(bandwidth::read_sum(&x).is_err(), "{}", common::label(dev));
        assert!(bandwidth::copy(&x).is_err(), "{}", common::label(dev));
    }
}
