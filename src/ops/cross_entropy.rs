//! `cross_entropy` with class-id targets: log-softmax and NLL fused into one pass over the
//! logits (`shaders/cross_entropy.wgsl`); the log-probabilities are never written.

use bytemuck::{Pod, Zeroable};

use super::{Reduction, RowStrategy, check_u32};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernels::{Bind, KernelId, dispatch, input as input_at, row_chunks};
use crate::ops::reduce::{Finish, reduce};
use crate::tensor::{Indices, Storage, TargetCheck, Tensor, same_device};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) ignore_index: i32,
    pub(crate) has_weight: u32,
    pub(crate) row_base: u32,
    pub(crate) _pad: [u32; 3],
}
const _: () = assert!(size_of::<Params>() == 32);

/// Cross-entropy between `(N, C)` logits and `(N)` class ids, as PyTorch's
/// `F.cross_entropy(logits, targets, weight, ignore_index, reduction)`.
///
/// Per row `l = w[t] · (logsumexp(x) − x[t])`; rows whose target is `ignore_index` give 0 and
/// are left out of the mean, whose denominator is Σ w[t] over the counted rows (the row count
/// without weights). A mean over no counted row is NaN, a sum 0. A target that is neither a
/// class nor `ignore_index` makes reading the result fail with
/// [`Error::TargetOutOfRange`]; the kernel never reads out of bounds.
///
/// ```
/// use wgpu_loss::{CrossEntropy, Device};
/// let dev = Device::new()?;
/// let logits = dev.tensor(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3])?;
/// let targets = dev.indices(&[2i64, 0], &[2])?;
/// let loss = CrossEntropy::default().forward(&logits, &targets)?.item()?;
/// assert!((loss - 1.40760596).abs() < 1e-5);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CrossEntropy {
    /// Per-class weights, shape `(C)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            strategy: RowStrategy::Auto,
        }
    }
}

impl CrossEntropy {
    /// Sets per-class weights `(C)`.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the ignored target value.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the row strategy.
    pub fn strategy(mut self, strategy: RowStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The loss: a 0-d tensor for mean and sum, `(N)` for [`Reduction::None`].
    pub fn forward(&self, logits: &Tensor, targets: &Indices) -> Result<Tensor> {
        let rows = logits.shape.first().copied().unwrap_or(0);
        let cols = logits.shape.get(1).copied().unwrap_or(0);
        let plan = self.strategy.plan("cross_entropy", logits.device(), rows, cols)?;
        class_loss(
            "cross_entropy",
            KernelId::CrossEntropy,
            &plan.constants(),
            |n| plan.groups(n),
            logits,
            targets,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
        )
    }
}

/// `F.cross_entropy(logits, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn cross_entropy(logits: &Tensor, targets: &Indices) -> Result<Tensor> {
    CrossEntropy::default().forward(logits, targets)
}

/// The host side shared by `cross_entropy` and `nll`, whose kernels have the same bindings:
/// validate, run the per-row kernel chunk by chunk, reduce.
#[allow(clippy::too_many_arguments)]
pub(crate) fn class_loss(
    op: &'static str,
    kernel: KernelId,
    constants: &[(&'static str, f64)],
    groups: impl Fn(usize) -> u64,
    input: &Tensor,
    targets: &Indices,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    let dev: &Device = input.device();
    let mut devices = vec![targets.device()];
    devices.extend(weight.map(|w| w.device()));
    same_device(op, dev, &devices)?;
    let &[rows, cols] = input.shape.as_slice() else {
        return Err(Error::shape(op, format!("expected (N, C) input, got {:?}", input.shape)));
    };
    if targets.shape != [rows] {
        return Err(Error::shape(
            op,
            format!("input {:?} needs targets ({rows}), got {:?}", input.shape, targets.shape),
        ));
    }
    if let Some(w) = weight
        && w.shape != [cols]
    {
        return Err(Error::shape(op, format!("weight must be ({cols}), got {:?}", w.shape)));
    }
    let ignore = i32::try_from(ignore_index)
        .map_err(|_| Error::invalid(op, format!("ignore_index {ignore_index} does not fit in i32")))?;
    if cols == 0 && rows > 0 {
        return Err(Error::Empty { op, what: "no classes" });
    }
    check_u32(op, rows)?;
    check_u32(op, cols)?;

    let path = dev.input_path(kernel, &[(input.storage.buffer(), input.numel())])?;
    let pipe = dev.pipeline_for(kernel, path, op, constants)?;
    let check = TargetCheck::new(op, targets, cols, ignore_index)?;
    let loss = Storage::alloc(dev, rows as u64 * 4)?;
    let wsum = Storage::alloc(dev, rows as u64 * 4)?;
    let row_bytes = cols as u64 * 4;
    for chunk in row_chunks(dev, "one row", rows, &[row_bytes, 4, 4, 4], 1)? {
        let n = chunk.len() as u64;
        let r0 = chunk.start as u64;
        let params = Params {
            rows: n as u32,
            cols: cols as u32,
            ignore_index: ignore,
            has_weight: weight.is_some() as u32,
            row_base: chunk.start as u32,
            _pad: [0; 3],
        };
        let weight_buf = weight.map_or(&dev.inner.dummy, |w| w.storage.buffer());
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&params),
            &[
                input_at(dev, path, 1, input.storage.buffer(), r0 * row_bytes, n * cols as u64).bind(),
                Bind::range(2, targets.storage.buffer(), r0 * 4, n * 4),
                Bind::all(3, weight_buf),
                Bind::range(4, loss.buffer(), r0 * 4, n * 4),
                Bind::range(5, wsum.buffer(), r0 * 4, n * 4),
                Bind::range(6, check.status.buffer(), 0, 4),
            ],
            groups(chunk.len()),
        )?;
    }
    let mut checks = input.checks.clone();
    checks.extend(weight.iter().flat_map(|w| w.checks.iter().cloned()));
    checks.push(check);
    match reduction {
        Reduction::None => Ok(Tensor { storage: loss, shape: vec![rows], checks }),
        Reduction::Sum => reduce(dev, &loss, None, rows, Finish::Sum, 0.0, checks),
        Reduction::Mean => reduce(dev, &loss, Some(&wsum), rows, Finish::MeanWeights, 0.0, checks),
    }
}
