//! `bce_with_logits`: binary cross-entropy on logits (`shaders/bce_with_logits.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{EwInput, Reduction, elementwise, rows_cols};
use crate::error::{Error, Result};
use crate::kernels::KernelId;
use crate::tensor::{Tensor, same_device};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) cols: u32,
    pub(crate) col_offset: u32,
    pub(crate) _pad3: u32,
    pub(crate) part_base: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 32);

const WEIGHT_FULL: u32 = 1;
const WEIGHT_COLS: u32 = 2;
const POS_WEIGHT: u32 = 4;

/// Binary cross-entropy on logits, as PyTorch's
/// `F.binary_cross_entropy_with_logits(x, y, weight, pos_weight=pos_weight, reduction)`:
///
/// `l = w · [(1 − y)·x + (1 + (p − 1)·y)·softplus(−x)]`, which is `max(x,0) − x·y + log(1 + e^−|x|)`
/// without `pos_weight`. Finite and accurate for every finite `x` (|x| = 1e4 included): softplus
/// uses a series for `log(1 + z)`, not `log(1 + z)` itself.
///
/// `weight` has the input's shape or one value per last-dim column `(C)`; `pos_weight` is `(C)`.
#[derive(Clone, Debug, Default)]
pub struct BceWithLogits {
    /// Elementwise weight (input's shape) or per-column weight `(C)`.
    pub weight: Option<Tensor>,
    /// Weight of positive examples per column `(C)`.
    pub pos_weight: Option<Tensor>,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
}

impl BceWithLogits {
    /// Sets the weight.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the positive weight per column.
    pub fn pos_weight(mut self, pos_weight: Tensor) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The loss: a 0-d tensor for mean and sum, the input's shape for [`Reduction::None`].
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "bce_with_logits";
        let dev = input.device();
        let mut devices = vec![target.device()];
        devices.extend(self.weight.iter().chain(&self.pos_weight).map(|t| t.device()));
        same_device(OP, dev, &devices)?;
        if input.shape != target.shape {
            return Err(Error::shape(
                OP,
                format!("input {:?} and target {:?} differ", input.shape, target.shape),
            ));
        }
        super::check_u32(OP, input.numel())?;
        let (_, cols) = rows_cols(&input.shape);
        let mut flags = 0;
        let mut inputs = vec![
            EwInput { slot: 1, buffer: input.storage.buffer(), per_element: true },
            EwInput { slot: 2, buffer: target.storage.buffer(), per_element: true },
        ];
        match &self.weight {
            Some(w) if w.shape == input.shape => {
                flags |= WEIGHT_FULL;
                inputs.push(EwInput { slot: 3, buffer: w.storage.buffer(), per_element: true });
            }
            Some(w) if w.shape == [cols] => {
                flags |= WEIGHT_COLS;
                inputs.push(EwInput { slot: 3, buffer: w.storage.buffer(), per_element: false });
            }
            Some(w) => {
                return Err(Error::shape(
                    OP,
                    format!("weight must be {:?} or ({cols}), got {:?}", input.shape, w.shape),
                ));
            }
            None => inputs.push(EwInput { slot: 3, buffer: &dev.inner.dummy, per_element: false }),
        }
        match &self.pos_weight {
            Some(p) if p.shape == [cols] => {
                flags |= POS_WEIGHT;
                inputs.push(EwInput { slot: 4, buffer: p.storage.buffer(), per_element: false });
            }
            Some(p) => {
                return Err(Error::shape(OP, format!("pos_weight must be ({cols}), got {:?}", p.shape)));
            }
            None => inputs.push(EwInput { slot: 4, buffer: &dev.inner.dummy, per_element: false }),
        }
        let mut checks = input.checks.clone();
        checks.extend(target.checks.iter().cloned());
        let cols = cols.max(1);
        elementwise(
            dev,
            KernelId::BceWithLogits,
            &[("FLAGS", flags as f64)],
            &input.shape,
            &inputs,
            5,
            self.reduction,
            |n, first, part_base| {
                let params = Params {
                    n,
                    cols: cols as u32,
                    col_offset: (first % cols) as u32,
                    _pad3: 0,
                    part_base,
                    _pad: [0; 3],
                };
                bytemuck::bytes_of(&params).to_vec()
            },
            checks,
        )
    }
}

/// `F.binary_cross_entropy_with_logits(input, target, reduction=...)` without weights.
pub fn bce_with_logits(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    BceWithLogits::default().reduction(reduction).forward(input, target)
}
