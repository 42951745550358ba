//! Multi-label margin loss, as PyTorch's `F.multilabel_margin_loss`
//! (`shaders/multilabel_margin.wgsl`): every id checked and each row's targets counted, a mask
//! of each row's targets, then one thread per (row, listed target) for the loss's partial sums,
//! added per row by `sum_dim` in a fixed order, and one thread per (row, class) for the
//! gradient. Those threads loop over the row in pieces that fit the loop budget, each piece
//! adding to what the previous ones left, in order; no row is too long for a software adapter.

use super::budget;
use super::convert::f32_operand;
use super::reduce::reduce_items;
use super::sum_dim::sum_dim;
use super::{Outputs, Reduction, check_u32, item_grad, reduction_and_outputs};
use crate::error::{Error, NO_IGNORE_INDEX, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::kernels::KernelId;
use crate::kernels::multilabel_margin::{DX, G, MASK, PART, Params, STATUS, STOP, TARGETS, X};
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
            let part = Tensor::empty(dev, vec![job.rows, job.cols])?;
            if job.rows * job.cols > 0 {
                let (mask, stop) = job.mark(dev, &check.status)?;
                let binds = Binds {
                    per_element: vec![
                        (X, x.storage.buffer()),
                        (MASK, mask.buffer()),
                        (PART, part.storage.buffer()),
                        (TARGETS, target.storage.buffer()),
                    ],
                    per_row: vec![(STOP, stop.buffer())],
                    whole: vec![],
                };
                job.run_pieces(dev, "partial", false, &binds, 0.0)?;
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
                let (mask, stop) = job.mark(dev, &check.status)?;
                let mut binds = Binds {
                    per_element: vec![
                        (X, x.storage.buffer()),
                        (MASK, mask.buffer()),
                        (DX, dx.storage.buffer()),
                        (TARGETS, target.storage.buffer()),
                    ],
                    per_row: vec![(STOP, stop.buffer())],
                    whole: vec![],
                };
                if per_row {
                    binds.per_row.push((G, g.storage.buffer()));
                } else {
                    binds.whole.push((G, g.storage.buffer()));
                }
                job.run_pieces(dev, "backward", per_row, &binds, scale)?;
            }
            let mut checks = input.checks.clone();
            checks.extend(grad_output.checks.iter().cloned());
            checks.push(check);
            self.outputs.apply(Tensor { checks, ..dx }, input.dtype)
        })
    }
}

reduction_and_outputs!(MultilabelMargin);

/// What one dispatch binds: buffers of `cols` values a row and of one value a row, bound per
/// chunk of rows, and buffers bound whole.
struct Binds<'b> {
    per_element: Vec<(crate::gpu::spec::Binding, &'b wgpu::Buffer)>,
    per_row: Vec<(crate::gpu::spec::Binding, &'b wgpu::Buffer)>,
    whole: Vec<(crate::gpu::spec::Binding, &'b wgpu::Buffer)>,
}

impl Job<'_> {
    /// Checks every id and counts each row's targets (`stop`: C − the count), then marks how
    /// many times each class is listed (`mask`).
    fn mark(
        &self,
        dev: &Device,
        status: &Storage,
    ) -> Result<(std::sync::Arc<Storage>, std::sync::Arc<Storage>)> {
        let mask = Storage::alloc(dev, (self.rows * self.cols * 4) as u64)?;
        let stop = Storage::alloc(dev, self.rows as u64 * 4)?;
        dev.record(|enc| {
            enc.clear_buffer(mask.buffer(), 0, Some((self.rows * self.cols * 4) as u64));
            enc.clear_buffer(stop.buffer(), 0, Some(self.rows as u64 * 4));
        });
        let targets = self.target.storage.buffer();
        let check = Binds {
            per_element: vec![(TARGETS, targets)],
            per_row: vec![(STOP, stop.buffer())],
            whole: vec![(STATUS, status.buffer())],
        };
        self.run(dev, "check", false, &check, self.params(0.0, 0..0, true, true))?;
        let mark = Binds {
            per_element: vec![(TARGETS, targets), (MASK, mask.buffer())],
            per_row: vec![(STOP, stop.buffer())],
            whole: vec![],
        };
        self.run(dev, "mark", false, &mark, self.params(0.0, 0..0, true, true))?;
        Ok((mask, stop))
    }

    /// The parameters of a dispatch over the piece `piece` of each row.
    fn params(&self, scale: f32, piece: std::ops::Range<usize>, first: bool, last: bool) -> Params {
        Params {
            rows: 0,
            cols: self.cols as u32,
            row_base: 0,
            scale,
            begin: piece.start as u32,
            end: piece.end as u32,
            first: first as u32,
            last: last as u32,
        }
    }

    /// Dispatches `entry` (`partial` or `backward`) once per piece of the row that fits the
    /// loop budget, in order.
    fn run_pieces(
        &self,
        dev: &Device,
        entry: &'static str,
        per_row: bool,
        binds: &Binds<'_>,
        scale: f32,
    ) -> Result<()> {
        let Some(step) = budget::largest_fitting(dev, 1, self.cols as u64, |len| len + 1) else {
            return Err(budget::exceeded(dev, OP, &[self.rows, self.cols], 2));
        };
        let step = step as usize;
        let pieces: Vec<usize> = (0..self.cols).step_by(step).collect();
        for (k, &from) in pieces.iter().enumerate() {
            let piece = from..(from + step).min(self.cols);
            let params = self.params(scale, piece, k == 0, k + 1 == pieces.len());
            self.run(dev, entry, per_row, binds, params)?;
        }
        Ok(())
    }

    /// Dispatches `entry` over row chunks, one thread per element, with `params` (its rows and
    /// row base set per chunk).
    fn run(
        &self,
        dev: &Device,
        entry: &'static str,
        per_row: bool,
        binds: &Binds<'_>,
        params: Params,
    ) -> Result<()> {
        let constants = [("WG", 64.0), ("G_PER_ROW", per_row as u8 as f64)];
        let pipe = KernelId::MultilabelMargin.pipeline(dev, entry, &constants)?;
        let row = self.cols as u64 * 4;
        let row_bytes: Vec<u64> =
            binds.per_element.iter().map(|_| row).chain(binds.per_row.iter().map(|_| 4)).collect();
        for chunk in row_chunks(dev, "a row of classes", self.rows, &row_bytes, 1)? {
            let (first, len) = (chunk.start as u64, chunk.len() as u64);
            let mut bound: Vec<Bind<'_>> = binds
                .per_element
                .iter()
                .map(|&(b, buf)| Bind::range(b, buf, first * row, len * row))
                .collect();
            bound.extend(binds.per_row.iter().map(|&(b, buf)| Bind::range(b, buf, first * 4, len * 4)));
            bound.extend(binds.whole.iter().map(|&(b, buf)| Bind::all(b, buf)));
            let params = Params { rows: len as u32, row_base: first as u32, ..params };
            let threads = len * self.cols as u64;
            let piece = (params.end - params.begin) as u64;
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &bound, threads.div_ceil(64), &[piece])?;
        }
        Ok(())
    }
}
