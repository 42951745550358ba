//! The host side that `cross_entropy` and `nll` share (`shaders/class_rows.wgsl`): a class loss
//! over the rows of `(N, C, d…)` or `(C)` inputs, its target pass, its reduction and its
//! gradient, for class ids or probability targets.

use super::convert::f32_operand;
use super::{Outputs, Reduction, RowStrategy, Rows, check_u32};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::spec::{InputPath, Reads};
use crate::gpu::staging::{Input, Staging, input as input_at};
use crate::kernels::class_rows::{LOSS, Params, STATUS, TARGETS, WEIGHT, WSUM};
use crate::kernels::convert::dtype_code;
use crate::kernels::{KernelId, cross_entropy as ce, nll};
use crate::ops::reduce::{Finish, reduce};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// The option setters CrossEntropy and Nll share.
macro_rules! class_options {
    ($($t:ty),+) => {$(
        impl $t {
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
        }
    )+};
}
pub(super) use class_options;

/// Class ids or probabilities.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Ids(&'a Indices),
    Probs(&'a Tensor),
}

/// One validated evaluation of a class loss. The input (logits or log-probabilities) and the
/// probability targets are read in their own element types; the class weights as f32.
#[derive(Clone)]
pub(super) struct Job<'a> {
    op: &'static str,
    kernel: KernelId,
    input: &'a Tensor,
    targets: Target<'a>,
    weight: Option<&'a Tensor>,
    ignore: i32,
    ignore_index: i64,
    reduction: Reduction,
    smoothing: f32,
    pub(super) rows: Rows,
    /// The shape of the per-row losses (the targets' shape for class ids).
    out_shape: Vec<usize>,
    strategy: RowStrategy,
    /// The element type of the gradients.
    pub(super) outputs: Outputs,
}

/// A row plan and the pipeline constants that go with it.
struct Planned {
    constants: Vec<(&'static str, f64)>,
    rows_per_group: u64,
    /// Threads per row (the kernel's `tpr`).
    tpr: u32,
    /// What the entry's loop bound is evaluated at (nothing for nll's loop-free kernels).
    extents: Vec<u64>,
    /// Rows are read and written a quad (four contiguous elements) at a time.
    quads: bool,
}

impl<'a> Job<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        op: &'static str,
        kernel: KernelId,
        input: &'a Tensor,
        targets: Target<'a>,
        weight: Option<&'a Tensor>,
        ignore_index: i64,
        reduction: Reduction,
        smoothing: f32,
        strategy: RowStrategy,
    ) -> Result<Self> {
        let dev: &Device = input.device();
        let mut devices: Vec<&Device> = weight.iter().map(|w| w.device()).collect();
        devices.push(match targets {
            Target::Ids(t) => t.device(),
            Target::Probs(t) => t.device(),
        });
        same_device(op, dev, &devices)?;
        let shape = &input.shape;
        let (rows, out_shape) = match shape.len() {
            0 => return Err(Error::shape(op, "the input needs a class dimension, got a 0-d tensor")),
            1 => (Rows { outer: 1, cols: shape[0], inner: 1 }, Vec::new()),
            _ => {
                let mut out = vec![shape[0]];
                out.extend_from_slice(&shape[2..]);
                (Rows::around(shape, 1), out)
            }
        };
        match targets {
            Target::Ids(t) if t.shape != out_shape => {
                return Err(Error::shape(
                    op,
                    format!("input {shape:?} needs class-id targets {out_shape:?}, got {:?}", t.shape),
                ));
            }
            Target::Probs(t) if t.shape != *shape => {
                return Err(Error::shape(
                    op,
                    format!("probability targets must have the input's shape {shape:?}, got {:?}", t.shape),
                ));
            }
            _ => {}
        }
        if let Some(w) = weight
            && w.shape != [rows.cols]
        {
            return Err(Error::shape(op, format!("weight must be ({}), got {:?}", rows.cols, w.shape)));
        }
        let ignore = i32::try_from(ignore_index)
            .map_err(|_| Error::invalid(op, format!("ignore_index {ignore_index} does not fit in i32")))?;
        if rows.cols == 0 && rows.rows() > 0 {
            return Err(Error::Empty { op, what: "no classes" });
        }
        check_u32(op, input.numel())?;
        Ok(Job {
            op,
            kernel,
            input,
            targets,
            weight,
            ignore,
            ignore_index,
            reduction,
            smoothing,
            rows,
            out_shape,
            strategy,
            outputs: Outputs::AsInputs,
        })
    }

    /// Runs `f` on this job with the operands its kernel reads as f32 widened (inside the open
    /// frame) when they are half.
    fn with_f32_operands<R>(&self, f: impl FnOnce(&Job<'_>) -> Result<R>) -> Result<R> {
        let weight = self.weight.map(f32_operand).transpose()?;
        f(&Job { weight: weight.as_ref(), ..self.clone() })
    }

    /// The plan of the row kernel for `entry` (nll's kernels: one thread per row and no loop).
    fn plan(&self, entry: &str) -> Result<Planned> {
        if self.kernel == KernelId::Nll {
            return Ok(Planned {
                constants: vec![("WG", 64.0)],
                rows_per_group: 64,
                tpr: 1,
                extents: Vec::new(),
                quads: false,
            });
        }
        let dev = self.input.device();
        let bound = ce::KERNEL.entry(entry).map(|e| e.trips).ok_or_else(|| Error::invalid(self.op, entry))?;
        let plan = self.strategy.plan(self.op, dev, &self.input.shape, &self.rows, bound)?;
        let mut c = plan.constants();
        let probs = matches!(self.targets, Target::Probs(_));
        let smooth = self.smoothing > 0.0 && !probs;
        c.extend([("PROBS", probs as u8 as f64), ("SMOOTH", smooth as u8 as f64)]);
        c.push(("AUX", (probs || smooth) as u8 as f64));
        Ok(Planned {
            constants: c,
            rows_per_group: (plan.wg / plan.tpr) as u64,
            tpr: plan.tpr,
            extents: plan.extents().to_vec(),
            quads: plan.quads,
        })
    }

    fn params(&self, rows: usize, row_base: usize) -> Params {
        Params {
            rows: rows as u32,
            cols: self.rows.cols as u32,
            ignore_index: self.ignore,
            has_weight: self.weight.is_some() as u32,
            row_base: row_base as u32,
            inner: self.rows.inner as u32,
            smoothing: self.smoothing,
            g_mode: 0,
            scale: 1.0,
            top_k: 0,
            tpr: 1,
            _pad: 0,
        }
    }

    fn checks(&self) -> Vec<ValueCheck> {
        let mut checks = self.input.checks.clone();
        checks.extend(self.weight.iter().flat_map(|w| w.checks.iter().cloned()));
        if let Target::Probs(t) = self.targets {
            checks.extend(t.checks.iter().cloned());
        }
        checks
    }

    /// How the kernel reads its staged inputs: cross_entropy's input and probability targets
    /// by the device's input path, nll's log-probabilities (one value a row) in place.
    fn reads(&self) -> Result<Reads> {
        let x = self.input;
        if self.kernel == KernelId::Nll {
            return Ok(Reads::new(InputPath::Storage).with(nll::LOGP, x.dtype));
        }
        let mut staged: Vec<Staging<'_>> = vec![(ce::X, x.storage.buffer(), x.numel(), x.dtype)];
        if let Target::Probs(t) = self.targets
            && self.kernel == KernelId::CrossEntropy
        {
            staged.push((ce::Y, t.storage.buffer(), t.numel(), t.dtype));
        }
        self.kernel.reads(x.device(), &staged)
    }

    /// Bytes per row of every buffer bound per chunk: input, targets, `per_row` more of 4 bytes
    /// (per-row outputs) and a row of `cols` elements of each type in `wide`.
    fn row_bytes(&self, per_row: usize, wide: &[DType]) -> Vec<u64> {
        let cols = self.rows.cols as u64;
        let target = match self.targets {
            Target::Probs(t) => t.dtype.bytes(cols),
            Target::Ids(_) => 4,
        };
        let mut v = vec![self.input.dtype.bytes(cols), target];
        v.extend(std::iter::repeat_n(4, per_row));
        v.extend(wide.iter().map(|d| d.bytes(cols)));
        v
    }

    /// The input's binding (and, for cross_entropy, the probability targets' or a stand-in)
    /// for the chunk of `n` rows starting at `r0`.
    fn inputs(&self, reads: Reads, r0: u64, n: u64) -> Vec<Input<'a>> {
        let dev = self.input.device();
        let cols = self.rows.cols as u64;
        let x = self.input.storage.buffer();
        if self.kernel == KernelId::Nll {
            let d = self.input.dtype;
            return vec![Input::Buffer(Bind::range(nll::LOGP, x, d.bytes(r0 * cols), d.bytes(n * cols)))];
        }
        let y = match self.targets {
            Target::Probs(t) => input_at(dev, reads, ce::Y, t.storage.buffer(), r0 * cols, n * cols),
            // A stand-in the kernel never reads (f32 in `reads`).
            Target::Ids(_) => input_at(dev, reads, ce::Y, x, 0, 1),
        };
        vec![input_at(dev, reads, ce::X, x, r0 * cols, n * cols), y]
    }

    fn ids_bind(&self, r0: u64, n: u64) -> Bind<'a> {
        match self.targets {
            Target::Ids(t) => Bind::range(TARGETS, t.storage.buffer(), r0 * 4, n * 4),
            Target::Probs(_) => Bind::all(TARGETS, &self.input.device().inner.dummy),
        }
    }

    fn weight_bind(&self) -> Bind<'a> {
        Bind::all(WEIGHT, self.weight.map_or(&self.input.device().inner.dummy, |w| w.storage.buffer()))
    }

    /// Runs a per-row entry (the loss or accuracy) writing loss and wsum, then reduces.
    pub(super) fn run_rows(&self, entry: &'static str, top_k: u32) -> Result<Tensor> {
        self.input.device().op(self.op, || self.with_f32_operands(|job| job.record_rows(entry, top_k)))
    }

    fn record_rows(&self, entry: &'static str, top_k: u32) -> Result<Tensor> {
        let dev = self.input.device();
        let n_rows = self.rows.rows();
        if self.rows.is_empty() {
            return self.empty_loss(entry);
        }
        let reads = self.reads()?;
        let plan = self.plan(entry)?;
        let pipe = self.kernel.pipeline_for(dev, reads, entry, &plan.constants)?;
        let loss = Storage::alloc(dev, n_rows as u64 * 4)?;
        let wsum = Storage::alloc(dev, n_rows as u64 * 4)?;
        let check = match self.targets {
            Target::Ids(t) => Some(ValueCheck::new(self.op, t, self.rows.cols, self.ignore_index)?),
            Target::Probs(_) => None,
        };
        let status = match &check {
            Some(c) => c.status.clone(),
            None => Storage::alloc(dev, 4)?,
        };
        let inner = self.rows.inner as u64;
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(2, &[]))? {
            let (r0, n) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let mut params = self.params(n as usize, r0 as usize);
            params.top_k = top_k;
            params.tpr = plan.tpr;
            let inputs = self.inputs(reads, r0, n);
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(Input::bind).collect();
            binds.extend([
                self.ids_bind(r0, n),
                self.weight_bind(),
                Bind::range(LOSS, loss.buffer(), r0 * 4, n * 4),
                Bind::range(WSUM, wsum.buffer(), r0 * 4, n * 4),
                Bind::range(STATUS, status.buffer(), 0, 4),
            ]);
            let groups = n.div_ceil(plan.rows_per_group);
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &plan.extents)?;
        }
        let mut checks = self.checks();
        checks.extend(check);
        let probs = matches!(self.targets, Target::Probs(_));
        match (self.reduction, entry == "accuracy") {
            (Reduction::None, false) => Ok(Tensor { checks, ..Tensor::new(loss, self.out_shape.clone()) }),
            (Reduction::Sum, false) => reduce(dev, &loss, None, n_rows, Finish::Sum, 0.0, checks),
            (_, _) if probs => reduce(dev, &loss, None, n_rows, Finish::MeanCount, n_rows as f64, checks),
            _ => reduce(dev, &loss, Some(&wsum), n_rows, Finish::MeanWeights, 0.0, checks),
        }
    }

    pub(super) fn forward(&self) -> Result<Tensor> {
        let entry = if self.kernel == KernelId::Nll { "nll" } else { "cross_entropy" };
        self.run_rows(entry, 0)
    }

    /// The loss over no element: an empty tensor, a sum of 0, a mean (or accuracy) of NaN.
    fn empty_loss(&self, entry: &'static str) -> Result<Tensor> {
        let dev = self.input.device();
        let checks = self.checks();
        let loss = Storage::alloc(dev, 4)?;
        match (self.reduction, entry == "accuracy") {
            (Reduction::None, false) => Ok(Tensor { checks, ..Tensor::new(loss, self.out_shape.clone()) }),
            (Reduction::Sum, false) => reduce(dev, &loss, None, 0, Finish::Sum, 0.0, checks),
            _ => reduce(dev, &loss, None, 0, Finish::MeanCount, 0.0, checks),
        }
    }

    /// The target pass: checks class ids and writes each row's target weight (0 when ignored);
    /// returns the check and, for the weighted mean, the sum of the weights.
    fn target_pass(&self, indices: &Indices) -> Result<(ValueCheck, Option<Tensor>)> {
        let dev = self.input.device();
        let n_rows = self.rows.rows();
        let pipe = self.kernel.pipeline(dev, "target_weights", &[])?;
        let check = ValueCheck::new(self.op, indices, self.rows.cols, self.ignore_index)?;
        let wsum = Storage::alloc(dev, n_rows as u64 * 4)?;
        let inner = self.rows.inner as u64;
        for chunk in self.rows.chunks(dev, "one row", &[4, 4])? {
            let (r0, n) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let params = self.params(n as usize, r0 as usize);
            let binds = [
                self.ids_bind(r0, n),
                self.weight_bind(),
                Bind::range(WSUM, wsum.buffer(), r0 * 4, n * 4),
                Bind::range(STATUS, check.status.buffer(), 0, 4),
            ];
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, n.div_ceil(64), &[])?;
        }
        let denom = match self.reduction {
            Reduction::Mean => Some(reduce(dev, &wsum, None, n_rows, Finish::Sum, 0.0, Vec::new())?),
            _ => None,
        };
        Ok((check, denom))
    }

    /// The gradients in the input and (probability targets) in the targets, each in its
    /// operand's element type unless `outputs` says f32.
    pub(super) fn backward(&self, grad: &Tensor, want_dy: bool) -> Result<(Tensor, Option<Tensor>)> {
        self.input.device().op(self.op, || {
            let grad = f32_operand(grad)?;
            let (dx, dy) = self.with_f32_operands(|job| job.record_backward(&grad, want_dy))?;
            let dx = self.outputs.apply(dx, self.input.dtype)?;
            Ok((dx, dy.map(|dy| self.outputs.apply(dy, self.target_dtype())).transpose()?))
        })
    }

    /// The element type of the targets' gradient: the probabilities' (class ids have none; the
    /// input's stands in).
    fn target_dtype(&self) -> DType {
        match self.targets {
            Target::Probs(t) => t.dtype,
            Target::Ids(_) => self.input.dtype,
        }
    }

    /// Checks the upstream gradient's device and shape: the loss's shape for `None`, one value
    /// for a reduced loss.
    fn check_grad(&self, grad: &Tensor) -> Result<()> {
        same_device(self.op, self.input.device(), &[grad.device()])?;
        let per_row = self.reduction == Reduction::None;
        if per_row && grad.shape != self.out_shape {
            return Err(Error::shape(
                self.op,
                format!("grad_output must have the loss's shape {:?}, got {:?}", self.out_shape, grad.shape),
            ));
        }
        if !per_row && grad.numel() != 1 {
            return Err(Error::shape(
                self.op,
                format!("grad_output of a reduced loss must hold one value, got {:?}", grad.shape),
            ));
        }
        Ok(())
    }

    /// How the upstream gradient reaches each row: the mean's denominator (class ids: Σ w[t]
    /// from the target pass, whose check joins `checks`), the kernel's `g_mode` (0 per row,
    /// 1 one value, 2 one value over the denominator) and a scale (probabilities' mean: 1/rows).
    fn upstream_scale(&self, checks: &mut Vec<ValueCheck>) -> Result<(Option<Tensor>, u32, f32)> {
        let n_rows = self.rows.rows();
        Ok(match self.targets {
            Target::Ids(ids) => {
                let (check, denom) = self.target_pass(ids)?;
                checks.push(check);
                match self.reduction {
                    Reduction::None => (None, 0, 1.0),
                    Reduction::Sum => (None, 1, 1.0),
                    Reduction::Mean => (denom, 2, 1.0),
                }
            }
            Target::Probs(_) => match self.reduction {
                Reduction::None => (None, 0, 1.0),
                Reduction::Sum => (None, 1, 1.0),
                Reduction::Mean => (None, 1, 1.0 / n_rows.max(1) as f32),
            },
        })
    }

    fn record_backward(&self, grad: &Tensor, want_dy: bool) -> Result<(Tensor, Option<Tensor>)> {
        let dev = self.input.device();
        self.check_grad(grad)?;
        let per_row = self.reduction == Reduction::None;
        let mut checks = self.checks();
        checks.extend(grad.checks.iter().cloned());
        let shape = self.input.shape.clone();
        if self.rows.is_empty() {
            // No element: empty gradients (nothing to check either).
            let empty = || Tensor::empty(dev, shape.clone()).map(|t| Tensor { checks: checks.clone(), ..t });
            return Ok((empty()?, if want_dy { Some(empty()?) } else { None }));
        }
        let (denom, g_mode, scale) = self.upstream_scale(&mut checks)?;
        let n = self.input.numel() as u64;
        let reads = self.reads()?;
        let nll = self.kernel == KernelId::Nll;
        let entry = if nll { "nll_backward" } else { "cross_entropy_backward" };
        let plan = self.plan(entry)?;
        // cross_entropy's quad path (whole words a thread) and nll's scatter (one half or-ed into
        // its word) store halves themselves; otherwise the gradients are f32 here and `backward`
        // rounds them.
        let stored = |d: DType| if plan.quads || nll { self.outputs.dtype(d) } else { DType::F32 };
        let (dx_dtype, dy_dtype) = (stored(self.input.dtype), stored(self.target_dtype()));
        let dx = Storage::alloc(dev, dx_dtype.bytes(n))?;
        let dy = Storage::alloc(dev, if want_dy { dy_dtype.bytes(n) } else { 4 })?;
        let mut constants = plan.constants;
        constants.push(("DX_DTYPE", dtype_code(dx_dtype)));
        if !nll {
            constants.push(("WANT_DY", want_dy as u8 as f64));
            constants.push(("DY_DTYPE", dtype_code(dy_dtype)));
        }
        let pipe = self.kernel.pipeline_for(dev, reads, entry, &constants)?;
        if nll {
            // nll's kernel scatters one value per row into a cleared gradient.
            dev.record(|enc| enc.clear_buffer(dx.buffer(), 0, Some(dx_dtype.bytes(n).div_ceil(4) * 4)));
        }
        let inner = self.rows.inner as u64;
        let cols = self.rows.cols as u64;
        let wide: &[DType] = if want_dy { &[dx_dtype, dy_dtype] } else { &[dx_dtype] };
        let denom_buf = denom.as_ref().map_or(&dev.inner.dummy, |d| d.storage.buffer());
        // The bindings of g, denom and dx differ between the two kernels.
        let (g_bind, denom_bind, dx_bind) =
            if nll { (nll::G, nll::DENOM, nll::DX) } else { (ce::G, ce::DENOM, ce::DX) };
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(per_row as usize, wide))? {
            let (r0, rn) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let mut params = self.params(rn as usize, r0 as usize);
            params.tpr = plan.tpr;
            params.g_mode = g_mode;
            params.scale = scale;
            // nll's gradient does not read the log-probabilities.
            let inputs = if nll { Vec::new() } else { self.inputs(reads, r0, rn) };
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(Input::bind).collect();
            let (first, len) = (r0 * cols, rn * cols);
            binds.extend([
                self.ids_bind(r0, rn),
                self.weight_bind(),
                if per_row {
                    Bind::range(g_bind, grad.storage.buffer(), r0 * 4, rn * 4)
                } else {
                    Bind::all(g_bind, grad.storage.buffer())
                },
                Bind::all(denom_bind, denom_buf),
                Bind::range(dx_bind, dx.buffer(), dx_dtype.bytes(first), dx_dtype.bytes(len)),
            ]);
            if !nll {
                binds.push(if want_dy {
                    Bind::range(ce::DY, dy.buffer(), dy_dtype.bytes(first), dy_dtype.bytes(len))
                } else {
                    Bind::all(ce::DY, dy.buffer())
                });
            }
            let groups = rn.div_ceil(plan.rows_per_group);
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &plan.extents)?;
        }
        let typed = |s, dtype| Tensor { checks: checks.clone(), dtype, ..Tensor::new(s, shape.clone()) };
        let dy = want_dy.then(|| typed(dy, dy_dtype));
        Ok((typed(dx, dx_dtype), dy))
    }
}
