//! Multi-label margin loss, as PyTorch's `F.multilabel_margin_loss`
//! (`shaders/multilabel_margin.wgsl`): a mask of each row's targets, then one thread per
//! (row, listed target) for the loss's partial sums, added per row by `sum_dim` in a fixed
//! order, and one thread per (row, class) for the gradient. No thread loops more than three
//! times over its row, so a row may hold up to a third of a software adapter's loop budget of
//! classes (20 000); a longer one is an error before anything runs.

use super::convert::f32_operand;
use super::reduce::reduce_items;
use super::sum_dim::sum_dim;
use super::{Outputs, Reduction, check_u32, item_grad, reduction_and_outputs};
use crate::error::{Error, NO_IGNORE_INDEX, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::kernels::KernelId;
use crate::kernels::multilabel_margin::{DX, G, MASK, PART, Params, STATUS, TARGETS, X};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// Multi-label margin loss, as PyTorch's `F.multilabel_margin_loss(input, target, reduction)`:
/// for each row `x` of C classes whose targets are the class ids `y_0, y_1, …` before the first
/// −1 (the set T), `Σ_j Σ_{i ∉ T} max(0, 1 − x[y_j] + x[i]) / C`. The input is `(N, C)` or
/// `(C)`; the target (int64 or int32) has its shape. A target outside `[−1, C)` is an
/// [`Error::TargetOutOfRange`] when the result is read. A repeated target counts twice, and the
/// gradient is 0 where a hinge is 0 exactly, as PyTorch's.
///
/// ```
/// use wgpu_loss::{Device, MultilabelMargin};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[0.1, 0.2, 0.4, 0.8], &[1, 4])?;
/// let y = dev.indices(&[3i64, 0, -1, 1], &[1, 4])?;
/// // PyTorch's example: 0.85
/// assert!((MultilabelMargin::default().forward(&x, &y)?.item()? - 0.85).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MultilabelMargin {
    /// How the rows' losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradient: the input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

const OP: &str = "multilabel_margin";

/// A validated call: rows of `cols` classes, and the shape of `none`'s output.
struct Job<'a> {
    target: &'a Indices,
    rows: usize,
    cols: usize,
    out_shape: Vec<usize>,
}

impl MultilabelMargin {
    fn job<'a>(&self, input: &'a Tensor, target: &'a Indices) -> Result<Job<'a>> {
        same_device(OP, input.device(), &[target.device()])?;
        let (rows, cols, out_shape) = match input.shape[..] {
            [c] => (1, c, vec![]),
            [n, c] => (n, c, vec![n]),
            _ => return Err(Error::shape(OP, format!("input must be (N, C) or (C), got {:?}", input.shape))),
        };
        if target.shape != input.shape {
            return Err(Error::shape(
                OP,
                format!("target {:?} must have the input's shape {:?}", target.shape, input.shape),
            ));
        }
        check_u32(OP, input.numel())?;
        Ok(Job { target, rows, cols, out_shape })
    }

    /// The loss: a 0-d tensor when reduced, one value per row for `None` (`()` for a `(C)`
    /// input).
    pub fn forward(&self, input: &Tensor, target: &Indices) -> Result<Tensor> {
        let job = self.job(input, target)?;
        let dev = input.device();
        dev.op(OP, || {
            let x = f32_operand(input)?;
            let check = ValueCheck::new(OP, target, job.cols, NO_IGNORE_INDEX)?;
            let n = job.rows * job.cols;
            let part = Tensor::empty(dev, vec![job.rows, job.cols])?;
            if n > 0 {
                let mask = job.mark(dev, &check.status)?;
                let per_element =
                    [(X, x.storage.buffer()), (MASK, mask.buffer()), (PART, part.storage.buffer())];
                job.run(dev, "partial", false, &per_element, &[(TARGETS, target.storage.buffer())], 0.0)?;
            }
            let loss = sum_dim(OP, &part, (job.rows, job.cols, 1), job.out_shape.clone())?;
            let mut checks = input.checks.clone();
            checks.push(check);
            reduce_items(dev, loss.storage, job.rows, job.out_shape.clone(), self.reduction, checks)
        })
    }

    /// The gradient in `input`, given the upstream gradient `grad_output` (one value for a
    /// reduced loss, one per row for `None`).
    pub fn backward(&self, input: &Tensor, target: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        let job = self.job(input, target)?;
        let dev = input.device();
        dev.op(OP, || {
            same_device(OP, dev, &[grad_output.device()])?;
            let (per_row, scale) = item_grad(OP, grad_output, self.reduction, &job.out_shape, job.rows)?;
            let x = f32_operand(input)?;
            let g = f32_operand(grad_output)?;
            let check = ValueCheck::new(OP, target, job.cols, NO_IGNORE_INDEX)?;
            let dx = Tensor::empty(dev, input.shape.clone())?;
            if job.rows * job.cols > 0 {
                let mask = job.mark(dev, &check.status)?;
                let per_element = [
                    (X, x.storage.buffer()),
                    (MASK, mask.buffer()),
                    (DX, dx.storage.buffer()),
                    (TARGETS, target.storage.buffer()),
                ];
                let g_bind = [(G, g.storage.buffer())];
                let (rows, whole): (&Binds<'_>, &Binds<'_>) =
                    if per_row { (&g_bind, &[]) } else { (&[], &g_bind) };
                job.run_with_rows(dev, "backward", per_row, &per_element, rows, whole, scale)?;
            }
            let mut checks = input.checks.clone();
            checks.extend(grad_output.checks.iter().cloned());
            checks.push(check);
            self.outputs.apply(Tensor { checks, ..dx }, input.dtype)
        })
    }
}

reduction_and_outputs!(MultilabelMargin);

type Binds<'b> = [(crate::gpu::spec::Binding, &'b wgpu::Buffer)];

impl Job<'_> {
    /// The target mask, one u32 per element.
    fn mark(&self, dev: &Device, status: &Storage) -> Result<std::sync::Arc<Storage>> {
        let mask = Storage::alloc(dev, (self.rows * self.cols * 4) as u64)?;
        let pipe = KernelId::MultilabelMargin.pipeline(dev, "mark", &[("WG", 64.0), ("G_PER_ROW", 0.0)])?;
        let row = self.cols as u64 * 4;
        for chunk in row_chunks(dev, "a row of classes", self.rows, &[row, row], 1)? {
            let (first, len) = (chunk.start as u64, chunk.len() as u64);
            let params = self.params(first, len, 0.0);
            let binds = [
                Bind::range(TARGETS, self.target.storage.buffer(), first * row, len * row),
                Bind::range(MASK, mask.buffer(), first * row, len * row),
                Bind::all(STATUS, status.buffer()),
            ];
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, len.div_ceil(64), &[self.cols as u64])?;
        }
        Ok(mask)
    }

    fn params(&self, first: u64, len: u64, scale: f32) -> Params {
        Params { rows: len as u32, cols: self.cols as u32, row_base: first as u32, scale }
    }

    /// Dispatches `entry` over row chunks, one thread per element: `per_element` buffers (and
    /// the targets) hold `cols` values a row.
    fn run(
        &self,
        dev: &Device,
        entry: &'static str,
        per_row: bool,
        per_element: &Binds<'_>,
        targets: &Binds<'_>,
        scale: f32,
    ) -> Result<()> {
        let mut all = per_element.to_vec();
        all.extend_from_slice(targets);
        self.run_with_rows(dev, entry, per_row, &all, &[], &[], scale)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_with_rows(
        &self,
        dev: &Device,
        entry: &'static str,
        per_row: bool,
        per_element: &Binds<'_>,
        rows: &Binds<'_>,
        whole: &Binds<'_>,
        scale: f32,
    ) -> Result<()> {
        let constants = [("WG", 64.0), ("G_PER_ROW", per_row as u8 as f64)];
        let pipe = KernelId::MultilabelMargin.pipeline(dev, entry, &constants)?;
        let row = self.cols as u64 * 4;
        let row_bytes: Vec<u64> = per_element.iter().map(|_| row).chain(rows.iter().map(|_| 4)).collect();
        for chunk in row_chunks(dev, "a row of classes", self.rows, &row_bytes, 1)? {
            let (first, len) = (chunk.start as u64, chunk.len() as u64);
            let mut binds: Vec<Bind<'_>> =
                per_element.iter().map(|&(b, buf)| Bind::range(b, buf, first * row, len * row)).collect();
            binds.extend(rows.iter().map(|&(b, buf)| Bind::range(b, buf, first * 4, len * 4)));
            binds.extend(whole.iter().map(|&(b, buf)| Bind::all(b, buf)));
            let params = self.params(first, len, scale);
            let threads = len * self.cols as u64;
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &binds,
                threads.div_ceil(64),
                &[self.cols as u64],
            )?;
        }
        Ok(())
    }
}
