//! Faults, each followed by valid operations: a destroyed wrapped buffer, a lost device, a
//! 1 ms timeout, buffers that cannot be wrapped. The documented errors come back, nothing
//! panics or hangs, and the device (or a fresh one) keeps giving right answers.

use crate::common;

use common::{Tol, assert_close, one_per_adapter};
use wgpu_loss::reference::cross_entropy as ce_ref;
use wgpu_loss::{
    CrossEntropy, Device, DeviceOptions, Error, Indices, Linear, LinearCrossEntropy, LogSoftmax, Mse,
    Reduction, Tensor,
};

const LOGITS: [f32; 6] = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
const TARGETS: [i64; 2] = [2, 0];

/// The loss of LOGITS against TARGETS (PyTorch: 1.40760596).
fn want() -> Vec<f64> {
    ce_ref::cross_entropy(&LOGITS, 3, &TARGETS, None, -100, Reduction::Mean).unwrap()
}

fn inputs(dev: &Device) -> (Tensor, Indices) {
    (dev.tensor(&LOGITS, &[2, 3]).unwrap(), dev.indices(&TARGETS, &[2]).unwrap())
}

/// A new device on the adapter `like` runs on, with `options`.
fn fresh(like: &Device, options: DeviceOptions) -> Device {
    let backends = wgpu::Backends::from(like.info().backend);
    Device::select(Some(backends), Some(&like.info().name), options).unwrap()
}

/// Asserts that `dev` computes the loss of LOGITS right.
fn answers(dev: &Device, what: &str) {
    let (x, t) = inputs(dev);
    let loss = CrossEntropy::default().forward(&x, &t).unwrap().item().unwrap();
    assert_close(what, &[loss], &want(), Tol::ELEMENT);
}

fn wrapped(dev: &Device, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    dev.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("app"),
        size: 24,
        usage,
        mapped_at_creation: false,
    })
}

#[test]
fn a_destroyed_wrapped_buffer_fails_only_its_own_operation() {
    for dev in one_per_adapter() {
        let what = common::label(dev);
        let (x, t) = inputs(dev);
        // Recorded before the failure and read after it: its work must survive.
        let before = CrossEntropy::default().forward(&x, &t).unwrap();
        let buffer = wrapped(dev, wgpu_loss::INPUT_USAGES | wgpu::BufferUsages::COPY_DST);
        let gone = Tensor::from_buffer(dev, buffer.clone(), &[2, 3]).unwrap();
        buffer.destroy();
        let err = CrossEntropy::default().forward(&gone, &t).unwrap_err();
        let Error::Wgpu(message) = &err else { panic!("{what}: {err:?}") };
        assert!(message.starts_with("cross_entropy: ") && message.contains("destroyed"), "{what}: {message}");
        assert!(!message.starts_with("cross_entropy: cross_entropy"), "{what}: {message}");
        assert_close(&format!("{what}: recorded before"), &[before.item().unwrap()], &want(), Tol::ELEMENT);
        for attempt in 0..3 {
            answers(dev, &format!("{what}: valid op #{attempt} after"));
        }
    }
}

#[test]
fn buffers_that_cannot_serve_as_inputs_are_refused_when_wrapped() {
    for dev in one_per_adapter() {
        let what = common::label(dev);
        // Without COPY_SRC a tensor could be bound but not read back or staged.
        let err = Tensor::from_buffer(dev, wrapped(dev, wgpu::BufferUsages::STORAGE), &[6]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { message, .. } if message.contains("COPY_SRC")),
            "{what}: {err}"
        );
        // A buffer of another device.
        let other = fresh(dev, DeviceOptions::default());
        let foreign = wrapped(&other, wgpu_loss::INPUT_USAGES);
        let err = Tensor::from_buffer(dev, foreign, &[6]).unwrap_err();
        assert!(matches!(err, Error::DeviceMismatch { .. }), "{what}: {err:?}");
        // A destroyed one.
        let buffer = wrapped(dev, wgpu_loss::INPUT_USAGES);
        buffer.destroy();
        let err = Indices::from_buffer(dev, buffer, &[6]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{what}: {err:?}");
        // Mixing tensors of two devices in one operation.
        let (x, t) = inputs(dev);
        let t_other = other.indices(&TARGETS, &[2]).unwrap();
        assert!(matches!(CrossEntropy::default().forward(&x, &t_other), Err(Error::DeviceMismatch { .. })));
        assert_close(
            &what,
            &[CrossEntropy::default().forward(&x, &t).unwrap().item().unwrap()],
            &want(),
            Tol::ELEMENT,
        );
    }
}

#[test]
fn a_lost_device_is_device_lost_everywhere_then_a_fresh_one_works() {
    for like in one_per_adapter() {
        let dev = fresh(like, DeviceOptions::default());
        let what = common::label(&dev);
        let (x, t) = inputs(&dev);
        // Work in flight (recorded, not read) when the device goes.
        let pending = CrossEntropy::default().forward(&x, &t).unwrap();
        let w = dev.tensor(&[0.5; 9], &[3, 3]).unwrap();
        dev.wgpu_device().destroy();
        let lost = |r: wgpu_loss::Result<()>, call: &str| {
            assert!(matches!(r, Err(Error::DeviceLost(_))), "{what}: {call} gave {r:?}");
        };
        let one = || dev.tensor(&[1.0], &[]);
        // wgpu reports a destroyed device lost once the work it had in flight has drained:
        // reading waits for that.
        lost(pending.item().map(drop), "reading work in flight");
        assert!(dev.is_lost(), "{what}");
        lost(x.to_vec().map(drop), "to_vec");
        lost(dev.tensor(&[1.0], &[1]).map(drop), "tensor");
        lost(dev.indices(&[1i64], &[1]).map(drop), "indices");
        lost(CrossEntropy::default().forward(&x, &t).map(drop), "cross_entropy");
        lost(CrossEntropy::default().backward(&x, &t, &pending).map(drop), "cross_entropy backward");
        lost(wgpu_loss::sum(&x).map(drop), "sum");
        lost(wgpu_loss::mean(&x).map(drop), "mean");
        lost(Mse::default().forward(&x, &x).map(drop), "mse");
        lost(one().and_then(|g| Mse::default().backward(&x, &x, &g)).map(drop), "mse backward");
        lost(LogSoftmax::default().forward(&x).map(drop), "log_softmax");
        lost(wgpu_loss::Accuracy::default().forward(&x, &t).map(drop), "accuracy");
        lost(wgpu_loss::linear(&x, &w, None).map(drop), "linear");
        lost(Linear::default().backward(&x, &w, &x).map(drop), "linear backward");
        lost(LinearCrossEntropy::default().forward(&x, &w, None, &t).map(drop), "linear_cross_entropy");
        lost(dev.flush(), "flush");
        lost(dev.synchronize(), "synchronize");
        lost(dev.gpu_time(|| Ok(())).map(drop), "gpu_time");
        lost(
            Tensor::from_buffer(&dev, wrapped(&dev, wgpu_loss::INPUT_USAGES), &[6]).map(drop),
            "from_buffer",
        );
        // Destroyed with nothing in flight: the very next call of each kind says so (the
        // reproduction of the old panics inside wgpu).
        let idle = fresh(like, DeviceOptions::default());
        let (x, t) = inputs(&idle);
        idle.synchronize().unwrap();
        idle.wgpu_device().destroy();
        for (call, r) in [
            ("cross_entropy", CrossEntropy::default().forward(&x, &t).map(drop)),
            ("sum", wgpu_loss::sum(&x).map(drop)),
            ("tensor", idle.tensor(&[1.0], &[1]).map(drop)),
        ] {
            assert!(matches!(r, Err(Error::DeviceLost(_))), "{what}: {call} right after destroy gave {r:?}");
        }
        assert!(idle.is_lost(), "{what}");
        // A new device on the same adapter.
        answers(&fresh(like, DeviceOptions::default()), &format!("{what}: fresh device"));
    }
}

#[test]
fn a_one_millisecond_timeout_then_valid_operations() {
    for like in one_per_adapter() {
        let dev = fresh(like, DeviceOptions::default().with_timeout(std::time::Duration::from_millis(1)));
        let what = common::label(&dev);
        // Work that takes well over 1 ms: 4 M log-softmax elements on a software adapter, a
        // chain of 1024³ GEMMs on a GPU.
        let software = dev.info().device_type == wgpu::DeviceType::Cpu;
        let slow = if software {
            let x = dev.tensor(&vec![0.25; 1 << 22], &[512, 8192]).unwrap();
            LogSoftmax::default().forward(&x).unwrap()
        } else {
            let a = dev.tensor(&vec![0.001; 1 << 20], &[1024, 1024]).unwrap();
            let mut y = a.clone();
            for _ in 0..32 {
                y = wgpu_loss::linear(&y, &a, None).unwrap();
            }
            y
        };
        let result = slow.to_vec().map(|v| v.len());
        // wgpu's GL backend runs the commands inside the submission itself, so by the time the
        // read waits they are done: there the read may succeed.
        let gl_done = dev.info().backend == wgpu::Backend::Gl && result.is_ok();
        assert!(matches!(result, Err(Error::Timeout(_))) || gl_done, "{what}: {result:?}");
        // The device survives: once its queue drains, it answers again.
        let mut drained = false;
        for _ in 0..20_000 {
            if dev.synchronize().is_ok() {
                drained = true;
                break;
            }
        }
        assert!(drained, "{what}: the device never drained");
        let (x, t) = inputs(&dev);
        let loss = (0..100).find_map(|_| CrossEntropy::default().forward(&x, &t).unwrap().item().ok());
        assert_close(
            &format!("{what}: surviving device"),
            &[loss.expect("a tiny op within 1 ms")],
            &want(),
            Tol::ELEMENT,
        );
        // And a fresh device with the default timeout.
        answers(&fresh(like, DeviceOptions::default()), &format!("{what}: fresh device"));
    }
}
