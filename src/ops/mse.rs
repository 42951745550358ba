//! `mse`: mean squared error `(x − y)²` per element (`shaders/mse.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{EwInput, Reduction, elementwise};
use crate::error::{Error, Result};
use crate::kernels::KernelId;
use crate::tensor::{Tensor, same_device};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) part_base: u32,
    pub(crate) _pad: [u32; 2],
}
const _: () = assert!(size_of::<Params>() == 16);

/// Squared error as PyTorch's `F.mse_loss(input, target, reduction)`. Shapes must be equal (no
/// broadcasting). The mean and sum are fused with the elementwise pass: the per-element values
/// are never written.
///
/// ```
/// use wgpu_loss::{Device, Reduction};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0], &[2])?;
/// let y = dev.tensor(&[0.0, 4.0], &[2])?;
/// assert_eq!(wgpu_loss::mse(&x, &y, Reduction::Mean)?.item()?, 2.5);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn mse(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let dev = input.device();
    same_device("mse", dev, &[target.device()])?;
    if input.shape != target.shape {
        return Err(Error::shape(
            "mse",
            format!("input {:?} and target {:?} differ", input.shape, target.shape),
        ));
    }
    super::check_u32("mse", input.numel())?;
    let mut checks = input.checks.clone();
    checks.extend(target.checks.iter().cloned());
    elementwise(
        dev,
        KernelId::Mse,
        &[],
        &input.shape,
        &[
            EwInput { slot: 1, buffer: input.storage.buffer(), per_element: true },
            EwInput { slot: 2, buffer: target.storage.buffer(), per_element: true },
        ],
        3,
        reduction,
        |n, _, part_base| bytemuck::bytes_of(&Params { n, part_base, _pad: [0; 2] }).to_vec(),
        checks,
    )
}
