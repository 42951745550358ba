//! `cross_entropy`: log-softmax and NLL fused into one pass over the logits
//! (`shaders/cross_entropy.wgsl`); the log-probabilities are never written. Also its gradient,
//! and top-k [`Accuracy`] over the same rows.
//!
//! Shapes follow PyTorch: logits `(N, C)`, `(N, C, d1, …, dk)` (the class dim is dim 1, read in
//! place with a stride) or unbatched `(C)`; class-id targets `(N, d1, …, dk)` (or `()`), or
//! probability targets of the logits' own shape. Nothing is broadcast.

use super::{Reduction, RowStrategy, Rows, check_u32};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::spec::InputPath;
use crate::gpu::staging::{Input, input as input_at};
use crate::kernels::class_rows::{LOSS, Params, STATUS, TARGETS, WEIGHT, WSUM};
use crate::kernels::{KernelId, cross_entropy as ce, nll};
use crate::ops::reduce::{Finish, reduce};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Cross-entropy, as PyTorch's `F.cross_entropy(logits, targets, weight, ignore_index,
/// reduction, label_smoothing)`.
///
/// With class ids, per row `l = w[t] · (logsumexp(x) − x[t])`; rows whose target is
/// `ignore_index` give 0 and are left out of the mean, whose denominator is `Σ w[t]` over the
/// counted rows (the row count without weights). With label smoothing ε the row loss is
/// `(1 − ε)·l + ε/C · Σ_c w[c]·(logsumexp(x) − x[c])`, ignored rows still 0, the same mean
/// denominator. A mean over no counted row is NaN, a sum 0. A target that is neither a class nor
/// `ignore_index` makes reading the result fail with [`Error::TargetOutOfRange`]; the kernel
/// never reads out of bounds.
///
/// With probability targets ([`CrossEntropy::forward_probs`]) the row loss is
/// `Σ_c w[c]·y'[c]·(logsumexp(x) − x[c])` with `y' = (1 − ε)·y + ε/C`, and the mean divides by
/// the number of rows `N·d1⋯dk` even with weights, as PyTorch does.
///
/// A row holding a NaN has a NaN loss (and a NaN gradient), which a mean or sum carries.
///
/// ```
/// use wgpu_loss::{CrossEntropy, Device};
/// let dev = Device::new()?;
/// let logits = dev.tensor(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3])?;
/// let targets = dev.indices(&[2i64, 0], &[2])?;
/// let loss = CrossEntropy::default().forward(&logits, &targets)?.item()?;
/// assert!((loss - 1.40760596).abs() < 1e-5);
/// // the gradient of the mean: (softmax − one-hot) / 2
/// let g = dev.tensor(&[1.0], &[])?;
/// let dx = CrossEntropy::default().backward(&logits, &targets, &g)?.to_vec()?;
/// assert!((dx[2] - (0.66524096 - 1.0) / 2.0).abs() < 1e-6);
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
    /// Label smoothing ε in [0, 1] (default 0).
    pub label_smoothing: f32,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            strategy: RowStrategy::Auto,
        }
    }
}

/// Negative log-likelihood, as PyTorch's `F.nll_loss(logp, targets, weight, ignore_index,
/// reduction)`: per row `l = −w[t] · logp[t]`, with the same shapes, ignore, weighting and
/// reduction rules as [`CrossEntropy`] with class ids. `log_softmax` over dim 1 followed by
/// `nll` equals `cross_entropy`.
#[derive(Clone, Debug)]
pub struct Nll {
    /// Per-class weights, shape `(C)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
}

impl Default for Nll {
    fn default() -> Self {
        Nll { weight: None, ignore_index: DEFAULT_IGNORE_INDEX, reduction: Reduction::Mean }
    }
}

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
class_options!(CrossEntropy, Nll);

impl CrossEntropy {
    /// Sets label smoothing ε ∈ [0, 1].
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Sets the row strategy.
    pub fn strategy(mut self, strategy: RowStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    fn job<'a>(&'a self, logits: &'a Tensor, targets: Target<'a>) -> Result<ClassJob<'a>> {
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label_smoothing must be in [0, 1], got {eps}"),
            ));
        }
        if matches!(targets, Target::Probs(_)) && self.ignore_index >= 0 {
            return Err(Error::invalid(
                "cross_entropy",
                "ignore_index must be negative with probability targets (PyTorch does not support it)",
            ));
        }
        ClassJob::new(
            "cross_entropy",
            KernelId::CrossEntropy,
            logits,
            targets,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            eps,
            self.strategy,
        )
    }

    /// The loss over class-id targets: a 0-d tensor for mean and sum, the targets' shape for
    /// [`Reduction::None`].
    pub fn forward(&self, logits: &Tensor, targets: &Indices) -> Result<Tensor> {
        self.job(logits, Target::Ids(targets))?.forward()
    }

    /// The loss over probability targets of the logits' shape.
    pub fn forward_probs(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.job(logits, Target::Probs(targets))?.forward()
    }

    /// The gradient with respect to the logits, given the upstream gradient (one value for mean
    /// and sum, the targets' shape for `None`): softmax minus the smoothed, weighted one-hot,
    /// scaled; ignored rows 0.
    pub fn backward(&self, logits: &Tensor, targets: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        Ok(self.job(logits, Target::Ids(targets))?.backward(grad_output, false)?.0)
    }

    /// The gradients with respect to the logits and to the probability targets.
    pub fn backward_probs(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (dx, dy) = self.job(logits, Target::Probs(targets))?.backward(grad_output, true)?;
        Ok((dx, dy.expect("backward returns the target gradient when asked")))
    }
}

/// `F.cross_entropy(logits, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn cross_entropy(logits: &Tensor, targets: &Indices) -> Result<Tensor> {
    CrossEntropy::default().forward(logits, targets)
}

impl Nll {
    fn job<'a>(&'a self, logp: &'a Tensor, targets: &'a Indices) -> Result<ClassJob<'a>> {
        ClassJob::new(
            "nll",
            KernelId::Nll,
            logp,
            Target::Ids(targets),
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            0.0,
            RowStrategy::ThreadPerRow,
        )
    }

    /// The loss: a 0-d tensor for mean and sum, the targets' shape for [`Reduction::None`].
    pub fn forward(&self, logp: &Tensor, targets: &Indices) -> Result<Tensor> {
        self.job(logp, targets)?.forward()
    }

    /// The gradient with respect to the log-probabilities: `−w[t]·s` at each counted row's
    /// target, 0 elsewhere.
    pub fn backward(&self, logp: &Tensor, targets: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        Ok(self.job(logp, targets)?.backward(grad_output, false)?.0)
    }
}

/// `F.nll_loss(logp, targets)` with PyTorch's defaults (mean, ignore_index −100).
pub fn nll(logp: &Tensor, targets: &Indices) -> Result<Tensor> {
    Nll::default().forward(logp, targets)
}

/// Top-k accuracy over class-id targets, with the shapes of [`CrossEntropy`]: a row is right
/// when fewer than `top_k` classes have a strictly larger logit than its target's (ties count
/// for the target). Rows whose target is `ignore_index` are left out; the result is the
/// fraction of counted rows that are right, NaN when none is counted.
///
/// ```
/// use wgpu_loss::{Accuracy, Device};
/// let dev = Device::new()?;
/// let logits = dev.tensor(&[0.1, 0.7, 0.2, 0.5, 0.3, 0.2], &[2, 3])?;
/// let targets = dev.indices(&[1i64, 1], &[2])?;
/// assert_eq!(Accuracy::default().forward(&logits, &targets)?.item()?, 0.5);
/// assert_eq!(Accuracy::default().top_k(2).forward(&logits, &targets)?.item()?, 1.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Accuracy {
    /// How many of the largest logits may hold the target (default 1).
    pub top_k: usize,
    /// Targets equal to this are left out (default −100).
    pub ignore_index: i64,
}

impl Default for Accuracy {
    fn default() -> Self {
        Accuracy { top_k: 1, ignore_index: DEFAULT_IGNORE_INDEX }
    }
}

impl Accuracy {
    /// Sets k.
    pub fn top_k(mut self, top_k: usize) -> Self {
        self.top_k = top_k;
        self
    }

    /// Sets the ignored target value.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// The fraction of counted rows whose target is among the `top_k` largest logits (0-d).
    /// `top_k` must be in `1..=C`.
    pub fn forward(&self, logits: &Tensor, targets: &Indices) -> Result<Tensor> {
        if self.top_k == 0 {
            return Err(Error::invalid("accuracy", "top_k must be at least 1"));
        }
        let job = ClassJob::new(
            "accuracy",
            KernelId::CrossEntropy,
            logits,
            Target::Ids(targets),
            None,
            self.ignore_index,
            Reduction::Mean,
            0.0,
            RowStrategy::Auto,
        )?;
        let classes = job.rows.cols;
        if self.top_k > classes {
            // As PyTorch's topk: k may not exceed the size of the class dim.
            return Err(Error::invalid(
                "accuracy",
                format!("top_k {} exceeds the number of classes {classes}", self.top_k),
            ));
        }
        job.run_rows("accuracy", self.top_k as u32)
    }
}

/// Class ids or probabilities.
#[derive(Clone, Copy)]
enum Target<'a> {
    Ids(&'a Indices),
    Probs(&'a Tensor),
}

/// One validated evaluation of a class loss.
struct ClassJob<'a> {
    op: &'static str,
    kernel: KernelId,
    input: &'a Tensor,
    targets: Target<'a>,
    weight: Option<&'a Tensor>,
    ignore: i32,
    ignore_index: i64,
    reduction: Reduction,
    smoothing: f32,
    rows: Rows,
    /// The shape of the per-row losses (the targets' shape for class ids).
    out_shape: Vec<usize>,
    strategy: RowStrategy,
}

/// A row plan and the pipeline constants that go with it.
struct Planned {
    constants: Vec<(&'static str, f64)>,
    rows_per_group: u64,
    /// What the entry's loop bound is evaluated at (nothing for nll's loop-free kernels).
    extents: Vec<u64>,
}

impl<'a> ClassJob<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
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
        Ok(ClassJob {
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
        })
    }

    /// The plan of the row kernel for `entry` (nll's kernels: one thread per row and no loop).
    fn plan(&self, entry: &str) -> Result<Planned> {
        if self.kernel == KernelId::Nll {
            return Ok(Planned { constants: vec![("WG", 64.0)], rows_per_group: 64, extents: Vec::new() });
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
            extents: plan.extents().to_vec(),
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
            _pad: [0; 2],
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

    fn staged(&self) -> Vec<(&wgpu::Buffer, usize)> {
        let mut staged = vec![(self.input.storage.buffer(), self.input.numel())];
        if let Target::Probs(t) = self.targets
            && self.kernel == KernelId::CrossEntropy
        {
            staged.push((t.storage.buffer(), t.numel()));
        }
        staged
    }

    /// Bytes per row of every buffer bound per chunk: input, targets, and `extra` more of
    /// 4 bytes (per-row outputs) or `cols` floats (`wide`).
    fn row_bytes(&self, per_row: usize, wide: usize) -> Vec<u64> {
        let row = self.rows.cols as u64 * 4;
        let target = if matches!(self.targets, Target::Probs(_)) { row } else { 4 };
        let mut v = vec![row, target];
        v.extend(std::iter::repeat_n(4, per_row));
        v.extend(std::iter::repeat_n(row, wide));
        v
    }

    /// The input's binding (and, for cross_entropy, the probability targets' or a stand-in)
    /// for the chunk of `n` rows starting at `r0`.
    fn inputs(&self, path: InputPath, r0: u64, n: u64) -> Vec<Input<'a>> {
        let dev = self.input.device();
        let cols = self.rows.cols as u64;
        let off = r0 * cols * 4;
        let x = self.input.storage.buffer();
        if self.kernel == KernelId::Nll {
            return vec![Input::Buffer(Bind::range(nll::LOGP, x, off, n * cols * 4))];
        }
        let y = match self.targets {
            Target::Probs(t) => input_at(dev, path, ce::Y, t.storage.buffer(), off, n * cols),
            Target::Ids(_) => input_at(dev, path, ce::Y, x, 0, 1),
        };
        vec![input_at(dev, path, ce::X, x, off, n * cols), y]
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
    fn run_rows(&self, entry: &'static str, top_k: u32) -> Result<Tensor> {
        self.input.device().op(self.op, || self.record_rows(entry, top_k))
    }

    fn record_rows(&self, entry: &'static str, top_k: u32) -> Result<Tensor> {
        let dev = self.input.device();
        let n_rows = self.rows.rows();
        if self.rows.is_empty() {
            return self.empty_loss(entry);
        }
        let path = self.kernel.input_path(dev, &self.staged())?;
        let plan = self.plan(entry)?;
        let pipe = self.kernel.pipeline_for(dev, path, entry, &plan.constants)?;
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
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(2, 0))? {
            let (r0, n) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let mut params = self.params(n as usize, r0 as usize);
            params.top_k = top_k;
            let inputs = self.inputs(path, r0, n);
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
            (Reduction::None, false) => Ok(Tensor { storage: loss, shape: self.out_shape.clone(), checks }),
            (Reduction::Sum, false) => reduce(dev, &loss, None, n_rows, Finish::Sum, 0.0, checks),
            (_, _) if probs => reduce(dev, &loss, None, n_rows, Finish::MeanCount, n_rows as f64, checks),
            _ => reduce(dev, &loss, Some(&wsum), n_rows, Finish::MeanWeights, 0.0, checks),
        }
    }

    fn forward(&self) -> Result<Tensor> {
        let entry = if self.kernel == KernelId::Nll { "nll" } else { "cross_entropy" };
        self.run_rows(entry, 0)
    }

    /// The loss over no element: an empty tensor, a sum of 0, a mean (or accuracy) of NaN.
    fn empty_loss(&self, entry: &'static str) -> Result<Tensor> {
        let dev = self.input.device();
        let checks = self.checks();
        let loss = Storage::alloc(dev, 4)?;
        match (self.reduction, entry == "accuracy") {
            (Reduction::None, false) => Ok(Tensor { storage: loss, shape: self.out_shape.clone(), checks }),
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

    fn backward(&self, grad: &Tensor, want_dy: bool) -> Result<(Tensor, Option<Tensor>)> {
        self.input.device().op(self.op, || self.record_backward(grad, want_dy))
    }

    fn record_backward(&self, grad: &Tensor, want_dy: bool) -> Result<(Tensor, Option<Tensor>)> {
        let dev = self.input.device();
        same_device(self.op, dev, &[grad.device()])?;
        let n_rows = self.rows.rows();
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
        let mut checks = self.checks();
        checks.extend(grad.checks.iter().cloned());
        let shape = self.input.shape.clone();
        if self.rows.is_empty() {
            // No element: empty gradients (nothing to check either).
            let empty = || Tensor::empty(dev, shape.clone()).map(|t| Tensor { checks: checks.clone(), ..t });
            return Ok((empty()?, if want_dy { Some(empty()?) } else { None }));
        }
        let (denom, g_mode, scale) = match self.targets {
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
        };
        let n = self.input.numel() as u64;
        let dx = Storage::alloc(dev, n * 4)?;
        let dy = Storage::alloc(dev, if want_dy { n * 4 } else { 4 })?;
        let path = self.kernel.input_path(dev, &self.staged())?;
        let nll = self.kernel == KernelId::Nll;
        let entry = if nll { "nll_backward" } else { "cross_entropy_backward" };
        let plan = self.plan(entry)?;
        let mut constants = plan.constants;
        if !nll {
            constants.push(("WANT_DY", want_dy as u8 as f64));
        }
        let pipe = self.kernel.pipeline_for(dev, path, entry, &constants)?;
        if nll {
            // nll's kernel scatters one value per row into a cleared gradient.
            dev.record(|enc| enc.clear_buffer(dx.buffer(), 0, Some(n * 4)));
        }
        let inner = self.rows.inner as u64;
        let cols = self.rows.cols as u64;
        let wide = 1 + want_dy as usize;
        let denom_buf = denom.as_ref().map_or(&dev.inner.dummy, |d| d.storage.buffer());
        // The bindings of g, denom and dx differ between the two kernels.
        let (g_bind, denom_bind, dx_bind) =
            if nll { (nll::G, nll::DENOM, nll::DX) } else { (ce::G, ce::DENOM, ce::DX) };
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(per_row as usize, wide))? {
            let (r0, rn) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let mut params = self.params(rn as usize, r0 as usize);
            params.g_mode = g_mode;
            params.scale = scale;
            // nll's gradient does not read the log-probabilities.
            let inputs = if nll { Vec::new() } else { self.inputs(path, r0, rn) };
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(Input::bind).collect();
            let off = r0 * cols * 4;
            binds.extend([
                self.ids_bind(r0, rn),
                self.weight_bind(),
                if per_row {
                    Bind::range(g_bind, grad.storage.buffer(), r0 * 4, rn * 4)
                } else {
                    Bind::all(g_bind, grad.storage.buffer())
                },
                Bind::all(denom_bind, denom_buf),
                Bind::range(dx_bind, dx.buffer(), off, rn * cols * 4),
            ]);
            if !nll {
                binds.push(if want_dy {
                    Bind::range(ce::DY, dy.buffer(), off, rn * cols * 4)
                } else {
                    Bind::all(ce::DY, dy.buffer())
                });
            }
            let groups = rn.div_ceil(plan.rows_per_group);
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &plan.extents)?;
        }
        let dy = want_dy.then(|| Tensor { storage: dy, shape: shape.clone(), checks: checks.clone() });
        Ok((Tensor { storage: dx, shape, checks }, dy))
    }
}
