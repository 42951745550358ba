//! Every bad input returns its typed error; nothing panics and the device stays usable.

use crate::common;

use common::{devices, small_binding_devices};
use wgpu_loss::{
    BceWithLogits, CrossEntropy, Device, DeviceOptions, Error, Nll, Reduction, RowStrategy, Tensor,
};

#[test]
fn out_of_range_targets_are_detected_not_read() {
    for dev in devices() {
        let x = dev.tensor(&[0.0; 12], &[4, 3]).unwrap();
        let logp = wgpu_loss::log_softmax(&x).unwrap();
        for (bad, position) in [(3i64, 2usize), (-4, 1)] {
            let mut t = vec![0i64, 1, 2, -100];
            t[position] = bad;
            let targets = dev.indices(&t, &[4]).unwrap();
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                for (op, result) in [
                    ("cross_entropy", CrossEntropy::default().reduction(reduction).forward(&x, &targets)),
                    ("nll", Nll::default().reduction(reduction).forward(&logp, &targets)),
                ] {
                    let err = result.unwrap().to_vec().unwrap_err();
                    match err {
                        Error::TargetOutOfRange {
                            op: o,
                            position: p,
                            value,
                            classes: 3,
                            ignore_index: -100,
                        } => {
                            assert_eq!((o, p, value), (op, position, bad), "{}", common::label(dev));
                        }
                        other => {
                            panic!("{}: {op}: expected TargetOutOfRange, got {other}", common::label(dev))
                        }
                    }
                }
            }
        }
        // The device is still fine afterwards.
        let ok = dev.indices(&[0i64, 1, 2, -100], &[4]).unwrap();
        assert!(wgpu_loss::cross_entropy(&x, &ok).unwrap().item().unwrap().is_finite());
    }
}

#[test]
fn shape_and_option_errors() {
    let dev = &devices()[0];
    let x = dev.tensor(&[0.0; 6], &[2, 3]).unwrap();
    let t2 = dev.indices(&[0i64, 1], &[2]).unwrap();
    let t3 = dev.indices(&[0i64, 1, 2], &[3]).unwrap();
    let is_shape = |r: Result<Tensor, Error>| matches!(r, Err(Error::Shape { .. }));
    let is_invalid = |r: Result<Tensor, Error>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(is_shape(wgpu_loss::cross_entropy(&x, &t3)));
    assert!(is_shape(wgpu_loss::cross_entropy(&dev.tensor(&[0.0; 6], &[6]).unwrap(), &t2)));
    assert!(is_shape(CrossEntropy::default().weight(dev.tensor(&[1.0; 2], &[2]).unwrap()).forward(&x, &t2)));
    assert!(is_invalid(CrossEntropy::default().ignore_index(1 << 40).forward(&x, &t2)));
    assert!(is_invalid(CrossEntropy::default().strategy(RowStrategy::Segment(3)).forward(&x, &t2)));
    assert!(is_invalid(
        wgpu_loss::LogSoftmax { strategy: RowStrategy::Segment(256), dim: -1, ..Default::default() }
            .forward(&x)
    ));
    assert!(is_shape(wgpu_loss::log_softmax(&dev.tensor(&[1.0], &[]).unwrap())));
    assert!(matches!(
        wgpu_loss::cross_entropy(&dev.tensor(&[], &[2, 0]).unwrap(), &t2),
        Err(Error::Empty { .. })
    ));
    let y = dev.tensor(&[0.0; 6], &[3, 2]).unwrap();
    assert!(is_shape(wgpu_loss::mse(&x, &y, Reduction::Mean)));
    assert!(is_shape(wgpu_loss::bce_with_logits(&x, &y, Reduction::Mean)));
    let same = dev.tensor(&[0.0; 6], &[2, 3]).unwrap();
    assert!(is_shape(
        BceWithLogits::default().pos_weight(dev.tensor(&[1.0; 2], &[2]).unwrap()).forward(&x, &same)
    ));
    assert!(is_shape(
        BceWithLogits::default().weight(dev.tensor(&[1.0; 2], &[2]).unwrap()).forward(&x, &same)
    ));
    assert!(is_shape(wgpu_loss::linear(&x, &dev.tensor(&[0.0; 8], &[2, 4]).unwrap(), None)));
    assert!(is_shape(wgpu_loss::linear(
        &x,
        &dev.tensor(&[0.0; 6], &[2, 3]).unwrap(),
        Some(&dev.tensor(&[0.0; 3], &[3]).unwrap())
    )));
    assert!(matches!(x.item(), Err(Error::Shape { .. })));
    assert!(matches!(dev.tensor(&[0.0; 5], &[2, 3]), Err(Error::Shape { .. })));
    assert!(matches!(dev.indices(&[1i64 << 33], &[1]), Err(Error::InvalidArgument { .. })));
}

#[test]
fn tensors_from_two_devices_do_not_mix() {
    let a = &devices()[0];
    let b = &small_binding_devices()[0];
    let x = a.tensor(&[0.0; 6], &[2, 3]).unwrap();
    let t = b.indices(&[0i64, 1], &[2]).unwrap();
    assert!(matches!(wgpu_loss::cross_entropy(&x, &t), Err(Error::DeviceMismatch { .. })));
    let y = b.tensor(&[0.0; 6], &[2, 3]).unwrap();
    assert!(matches!(wgpu_loss::mse(&x, &y, Reduction::Sum), Err(Error::DeviceMismatch { .. })));
}

#[test]
fn a_row_wider_than_the_binding_limit_is_a_limit_error() {
    for dev in small_binding_devices() {
        let x = dev.tensor(&vec![0.0; 20_000], &[1, 20_000]).unwrap();
        let t = dev.indices(&[0i64], &[1]).unwrap();
        assert!(
            matches!(wgpu_loss::cross_entropy(&x, &t), Err(Error::Limit { .. })),
            "{}",
            common::label(dev)
        );
        assert!(matches!(wgpu_loss::log_softmax(&x), Err(Error::Limit { .. })));
    }
}

#[test]
fn wrapped_buffers_are_checked() {
    let dev = &devices()[0];
    let no_storage = dev.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    assert!(matches!(Tensor::from_buffer(dev, no_storage, &[4]), Err(Error::InvalidArgument { .. })));
    let small = dev.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu_loss::INPUT_USAGES,
        mapped_at_creation: false,
    });
    assert!(matches!(Tensor::from_buffer(dev, small, &[5]), Err(Error::Shape { .. })));
}

#[test]
fn no_matching_adapter_says_how_to_get_one() {
    let err = Device::select(None, Some("no adapter has this name"), DeviceOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoAdapter { .. }));
    assert!(err.to_string().contains("apt-get install mesa-vulkan-drivers"), "{err}");
}

#[test]
fn every_segment_width_runs_on_every_adapter() {
    // Segment(128) is wider than the 64-thread workgroups used on software adapters.
    for dev in devices() {
        let x = dev.tensor(&[0.5; 3 * 200], &[3, 200]).unwrap();
        let t = dev.indices(&[0i64, 1, 2], &[3]).unwrap();
        for p in 1..=7 {
            let s = RowStrategy::Segment(1 << p);
            let l = CrossEntropy::default().strategy(s).forward(&x, &t).unwrap().item().unwrap();
            assert!((l as f64 - 200f64.ln()).abs() < 1e-5, "{} {s:?}: {l}", common::label(dev));
        }
    }
}
