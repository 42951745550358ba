//! Losses on an application's own wgpu device and buffers.

use crate::common;

use common::{Tol, assert_close, devices};
use wgpu::util::DeviceExt;
use wgpu_loss::{CrossEntropy, Device, DeviceOptions, Indices, Reduction, Tensor, reference};

#[test]
fn adopted_device_and_wrapped_buffers() {
    for dev in devices() {
        // The "application" owns this device and these buffers.
        let app = Device::from_wgpu(
            dev.info().clone(),
            dev.wgpu_device().clone(),
            dev.wgpu_queue().clone(),
            DeviceOptions::default(),
        );
        let logits = [0.5f32, -1.0, 2.0, 0.0, 3.0, 1.0];
        let targets = [2i32, 0];
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let lb = app.wgpu_device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("app logits"),
            contents: bytemuck::cast_slice(&logits),
            usage,
        });
        let tb = app.wgpu_device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("app targets"),
            contents: bytemuck::cast_slice(&targets),
            usage,
        });
        let x = Tensor::from_buffer(&app, lb, &[2, 3]).unwrap();
        let t = Indices::from_buffer(&app, tb, &[2]).unwrap();
        let got = CrossEntropy::default().reduction(Reduction::Sum).forward(&x, &t).unwrap().item().unwrap();
        let want =
            reference::cross_entropy::cross_entropy(&logits, 3, &[2, 0], None, -100, Reduction::Sum).unwrap();
        assert_close(&app.name(), &[got], &want, Tol::ELEMENT);
        // The output buffer is a plain wgpu buffer the application can bind.
        let y = wgpu_loss::log_softmax(&x).unwrap();
        assert!(y.buffer().usage().contains(wgpu::BufferUsages::STORAGE));
    }
}
