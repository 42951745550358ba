//! `jsd` and `tvd`: distances between a student's and a teacher's distributions over the
//! classes of each row (`shaders/divergence.wgsl`), for distillation, and their gradients in the
//! student's input.
//!
//! Shapes follow [`CrossEntropy`](super::cross_entropy::CrossEntropy): `(N, V)`,
//! `(N, V, d1, …, dk)` (the class dim is dim 1, read in place with a stride) or `(V)`; the
//! teacher has the student's shape and the optional labels the shape without the class dim.
//! A row's loss is its sum over the classes; [`Reduction::None`] gives one value per row (0 for
//! a row whose label is `ignore_index`), [`Reduction::Sum`] adds the counted rows, and
//! [`Reduction::Mean`] divides that sum by the number of counted rows — Liger Kernel's
//! `batchmean` (NaN when no row counts). There is no T² factor.

use std::sync::Arc;

use super::{Outputs, Reduction, RowPlan, RowStrategy, Rows, check_u32};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::pipeline::Pipeline;
use crate::gpu::spec::Reads;
use crate::gpu::staging::{Input, input as input_at};
use crate::kernels::KernelId;
use crate::kernels::divergence::{COUNTED, DENOM, DX, G, LABELS, LOSS, Params, X, Y};
use crate::ops::class_rows::DEFAULT_IGNORE_INDEX;
use crate::ops::convert::f32_operand;
use crate::ops::reduce::{Finish, reduce};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};
use bytemuck::Zeroable;

/// The generalised Jensen–Shannon divergence between a student's and a teacher's logits, as
/// Liger Kernel's `LigerJSD` defines it, on logits: with `log q = log_softmax(student / T)` and
/// `log p = log_softmax(teacher / T)`, a row's loss is
///
/// - β = 0: `Σ p·(log p − log q)`, the forward KL(teacher ‖ student);
/// - β = 1: `Σ q·(log q − log p)`, the reverse KL(student ‖ teacher);
/// - otherwise `β·KL(P ‖ M) + (1 − β)·KL(Q ‖ M)` with `M = β·P + (1 − β)·Q`.
///
/// Rows whose label is `ignore_index` give 0 and do not count. The gradient is the student's;
/// the teacher is a constant. A NaN in a counted row (or a +inf logit) makes its loss and
/// gradient NaN.
///
/// ```
/// use wgpu_loss::{Device, Jsd};
/// let dev = Device::new()?;
/// let student = dev.tensor(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &[2, 3])?;
/// let teacher = dev.tensor(&[3.0, 2.0, 1.0, 0.0, 0.0, 0.0], &[2, 3])?;
/// // forward KL(teacher ‖ student), averaged over the two rows
/// let kl = Jsd { beta: 0.0, ..Jsd::default() }.forward(&student, &teacher, None)?.item()?;
/// assert!((kl - 0.5752103).abs() < 1e-5);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Jsd {
    /// β ∈ [0, 1] (default 0.5).
    pub beta: f32,
    /// The temperature T > 0 both logits are divided by (default 1).
    pub temperature: f32,
    /// Rows whose label equals this do not count (default −100).
    pub ignore_index: i64,
    /// How the row losses are reduced (default mean over the counted rows: `batchmean`).
    pub reduction: Reduction,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
    /// The element type of the gradient: the student's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for Jsd {
    fn default() -> Self {
        Jsd {
            beta: 0.5,
            temperature: 1.0,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            strategy: RowStrategy::Auto,
            outputs: Outputs::AsInputs,
        }
    }
}

/// The total variation distance between two distributions given as probabilities (as Liger
/// Kernel's `LigerTVDLoss`: no softmax, so no temperature): a row's loss is `½ Σ |x − y|`, its
/// gradient in x `½·sign(x − y)` (0 where they are equal, autograd's gradient of `abs`). Rows
/// whose label is `ignore_index` give 0 and do not count; a NaN gives NaN for its row's loss
/// and its own gradient.
///
/// ```
/// use wgpu_loss::{Device, Tvd};
/// let dev = Device::new()?;
/// let p = dev.tensor(&[0.5, 0.5, 0.0], &[1, 3])?;
/// let q = dev.tensor(&[0.25, 0.25, 0.5], &[1, 3])?;
/// assert_eq!(Tvd::default().forward(&p, &q, None)?.item()?, 0.5);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Tvd {
    /// Rows whose label equals this do not count (default −100).
    pub ignore_index: i64,
    /// How the row losses are reduced (default mean over the counted rows: `batchmean`).
    pub reduction: Reduction,
    /// How rows are spread over threads.
    pub strategy: RowStrategy,
    /// The element type of the gradient: the input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for Tvd {
    fn default() -> Self {
        Tvd {
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            strategy: RowStrategy::Auto,
            outputs: Outputs::AsInputs,
        }
    }
}

impl Jsd {
    /// Sets β.
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// Sets the temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    fn job<'a>(
        &self,
        student: &'a Tensor,
        teacher: &'a Tensor,
        labels: Option<&'a Indices>,
    ) -> Result<Job<'a>> {
        Job::new(self.kind()?, student, teacher, labels, self.ignore_index, self.reduction, self.strategy)
    }

    /// The validated options as the kernel takes them.
    fn kind(&self) -> Result<Kind> {
        let (beta, t) = (self.beta, self.temperature);
        if !(0.0..=1.0).contains(&beta) {
            return Err(Error::invalid("jsd", format!("beta must be in [0, 1], got {beta}")));
        }
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::invalid("jsd", format!("temperature must be positive and finite, got {t}")));
        }
        let mode = if beta == 0.0 {
            0
        } else if beta == 1.0 {
            1
        } else {
            2
        };
        Ok(Kind::Jsd { mode, beta, temperature: t })
    }

    /// Checks β and the temperature.
    pub(crate) fn check(&self) -> Result<()> {
        self.kind().map(|_| ())
    }

    /// The rows `first_row..` of a fused head's student and teacher logits, held whole in the
    /// f32 tensors `student` and `teacher` `(rows, V)`: the per-row passes of `jsd` over them,
    /// labels (checked by the caller) indexed by global row.
    pub(crate) fn chunk<'a>(
        &self,
        student: &'a Tensor,
        teacher: &'a Tensor,
        labels: Option<&'a Indices>,
        first_row: usize,
    ) -> Result<JsdRows<'a>> {
        let mut job =
            Job::new(self.kind()?, student, teacher, None, self.ignore_index, self.reduction, self.strategy)?;
        job.labels = labels;
        job.first_row = first_row;
        Ok(JsdRows(job))
    }

    /// The mean's denominator: how many of the first `rows` labels are not `ignore_index`, on
    /// the device.
    pub(crate) fn counted(&self, dev: &Device, labels: &Indices, rows: usize) -> Result<Tensor> {
        counted_rows(dev, labels, self.ignore_index, rows)
    }

    /// The loss: one value per row for [`Reduction::None`], else a scalar.
    pub fn forward(&self, student: &Tensor, teacher: &Tensor, labels: Option<&Indices>) -> Result<Tensor> {
        self.job(student, teacher, labels)?.forward()
    }

    /// The gradient in the student's logits for the upstream gradient `grad` of the loss (its
    /// shape: one value per row for [`Reduction::None`], else one value).
    pub fn backward(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        labels: Option<&Indices>,
        grad: &Tensor,
    ) -> Result<Tensor> {
        self.job(student, teacher, labels)?.backward(grad, self.outputs)
    }
}

/// A fused head's chunk of rows for the `jsd` kernel: see [`Jsd::chunk`].
pub(crate) struct JsdRows<'a>(Job<'a>);

impl JsdRows<'_> {
    /// Writes the chunk's row losses into `loss` and counts into `counted` (global rows).
    pub(crate) fn record_loss(&self, loss: &Storage, counted: &Storage) -> Result<()> {
        self.0.record_rows(loss, counted)
    }

    /// Writes the chunk's gradient in the student's logits into `dx` (f32, the chunk's rows)
    /// for the upstream gradient `grad` (one value per global row for `None`, else one value)
    /// reaching `n_rows` rows in all (`denom`: the mean's denominator when labels are given).
    pub(crate) fn record_grad(
        &self,
        grad: &Tensor,
        denom: Option<&Tensor>,
        n_rows: usize,
        dx: &Storage,
    ) -> Result<()> {
        self.0.record_grad(grad, denom, n_rows, dx)
    }
}

impl Tvd {
    fn job<'a>(&self, input: &'a Tensor, target: &'a Tensor, labels: Option<&'a Indices>) -> Result<Job<'a>> {
        Job::new(Kind::Tvd, input, target, labels, self.ignore_index, self.reduction, self.strategy)
    }

    /// The loss: one value per row for [`Reduction::None`], else a scalar.
    pub fn forward(&self, input: &Tensor, target: &Tensor, labels: Option<&Indices>) -> Result<Tensor> {
        self.job(input, target, labels)?.forward()
    }

    /// The gradient in `input` for the upstream gradient `grad` of the loss.
    pub fn backward(
        &self,
        input: &Tensor,
        target: &Tensor,
        labels: Option<&Indices>,
        grad: &Tensor,
    ) -> Result<Tensor> {
        self.job(input, target, labels)?.backward(grad, self.outputs)
    }
}

macro_rules! divergence_options {
    ($($t:ty),+) => {$(
        impl $t {
            /// Sets the label that leaves a row out.
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

            /// Sets the element type of the gradient.
            pub fn outputs(mut self, outputs: Outputs) -> Self {
                self.outputs = outputs;
                self
            }
        }
    )+};
}
divergence_options!(Jsd, Tvd);

/// Which distance, with its scalar options.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `mode`: 0 for β = 0, 1 for β = 1, 2 otherwise (the kernel's MODE).
    Jsd {
        mode: u32,
        beta: f32,
        temperature: f32,
    },
    Tvd,
}

impl Kind {
    fn op(self) -> &'static str {
        match self {
            Kind::Jsd { .. } => "jsd",
            Kind::Tvd => "tvd",
        }
    }
}

/// One validated evaluation.
struct Job<'a> {
    kind: Kind,
    x: &'a Tensor,
    y: &'a Tensor,
    labels: Option<&'a Indices>,
    ignore: i32,
    reduction: Reduction,
    rows: Rows,
    out_shape: Vec<usize>,
    strategy: RowStrategy,
    /// The global row of this job's first row in the per-row buffers (a fused head's chunk).
    first_row: usize,
}

impl<'a> Job<'a> {
    fn new(
        kind: Kind,
        x: &'a Tensor,
        y: &'a Tensor,
        labels: Option<&'a Indices>,
        ignore_index: i64,
        reduction: Reduction,
        strategy: RowStrategy,
    ) -> Result<Job<'a>> {
        let op = kind.op();
        let mut others = vec![y.device()];
        others.extend(labels.map(|l| l.device()));
        same_device(op, x.device(), &others)?;
        let shape = &x.shape;
        if y.shape != *shape {
            return Err(Error::shape(
                op,
                format!("the target must have the input's shape {shape:?}, got {:?}", y.shape),
            ));
        }
        let (rows, out_shape) = match shape.len() {
            0 => return Err(Error::shape(op, "the input needs a class dimension, got a 0-d tensor")),
            1 => (Rows { outer: 1, cols: shape[0], inner: 1 }, Vec::new()),
            _ => {
                let mut out = vec![shape[0]];
                out.extend_from_slice(&shape[2..]);
                (Rows::around(shape, 1), out)
            }
        };
        if let Some(l) = labels
            && l.shape != out_shape
        {
            return Err(Error::shape(
                op,
                format!("input {shape:?} needs labels {out_shape:?}, got {:?}", l.shape),
            ));
        }
        let ignore = i32::try_from(ignore_index)
            .map_err(|_| Error::invalid(op, format!("ignore_index {ignore_index} does not fit in i32")))?;
        if rows.cols == 0 && rows.rows() > 0 {
            return Err(Error::Empty { op, what: "no classes" });
        }
        check_u32(op, x.numel())?;
        // Per-row buffers are bound whole.
        let per_row = rows.rows() as u64 * 4;
        if per_row > x.device().binding_limit() {
            return Err(Error::limit(
                format!("{op}: the losses of every row in one binding"),
                per_row,
                x.device().binding_limit(),
            ));
        }
        Ok(Job { kind, x, y, labels, ignore, reduction, rows, out_shape, strategy, first_row: 0 })
    }

    fn dev(&self) -> &'a Device {
        self.x.device()
    }

    fn params(&self, rows: u64, row_base: u64) -> Params {
        let (beta, temperature) = match self.kind {
            Kind::Jsd { beta, temperature, .. } => (beta, temperature),
            Kind::Tvd => (0.5, 1.0),
        };
        Params {
            rows: rows as u32,
            cols: self.rows.cols as u32,
            inner: self.rows.inner as u32,
            row_base: (self.first_row as u64 + row_base) as u32,
            ignore_index: self.ignore,
            has_labels: self.labels.is_some() as u32,
            g_mode: 0,
            scale: 1.0,
            beta,
            temperature,
            log_beta: beta.ln(),
            log_one_minus_beta: (1.0 - beta).ln(),
            tpr: 1,
            _pad: [0; 3],
        }
    }

    fn checks(&self) -> Vec<ValueCheck> {
        let mut checks = self.x.checks.clone();
        checks.extend(self.y.checks.iter().cloned());
        checks
    }

    /// How the kernel reads the student and the teacher: by the device's input path, each in
    /// its own element type.
    fn reads(&self) -> Result<Reads> {
        let staged = [
            (X, self.x.storage.buffer(), self.x.numel(), self.x.dtype),
            (Y, self.y.storage.buffer(), self.y.numel(), self.y.dtype),
        ];
        KernelId::Divergence.reads(self.dev(), &staged)
    }

    /// The pipeline of `entry` for this job, the rows a workgroup takes, and the loop extents.
    fn pipeline(&self, entry: &str, reads: Reads) -> Result<(Arc<Pipeline>, RowPlan)> {
        let dev = self.dev();
        let op = self.kind.op();
        let bound = KernelId::Divergence.spec().entry(entry).map(|e| e.trips);
        let bound = bound.ok_or_else(|| Error::invalid(op, entry))?;
        let plan = self.strategy.plan(op, dev, &self.x.shape, &self.rows, bound)?;
        let mut constants = plan.constants();
        if let Kind::Jsd { mode, .. } = self.kind {
            constants.push(("MODE", mode as f64));
        }
        let pipe = KernelId::Divergence.pipeline_for(dev, reads, entry, &constants)?;
        Ok((pipe, plan))
    }

    /// The staged inputs' bindings for the chunk of `n` rows from `r0`.
    fn inputs(&self, reads: Reads, r0: u64, n: u64) -> Vec<Input<'a>> {
        let (dev, cols) = (self.dev(), self.rows.cols as u64);
        vec![
            input_at(dev, reads, X, self.x.storage.buffer(), r0 * cols, n * cols),
            input_at(dev, reads, Y, self.y.storage.buffer(), r0 * cols, n * cols),
        ]
    }

    fn labels_bind(&self) -> Bind<'a> {
        match self.labels {
            Some(l) => Bind::all(LABELS, l.storage.buffer()),
            None => Bind::all(LABELS, &self.dev().inner.dummy),
        }
    }

    /// Bytes per row of every buffer bound per chunk: both inputs, labels, and `per_row` more
    /// of 4 bytes, and `wide` more rows of f32.
    fn row_bytes(&self, per_row: usize, wide: usize) -> Vec<u64> {
        let cols = self.rows.cols as u64;
        let mut v = vec![self.x.dtype.bytes(cols), self.y.dtype.bytes(cols), 4];
        v.extend(std::iter::repeat_n(4, per_row));
        v.extend(std::iter::repeat_n(4 * cols, wide));
        v
    }

    fn entry(&self, backward: bool) -> &'static str {
        match (self.kind, backward) {
            (Kind::Jsd { .. }, false) => "jsd",
            (Kind::Jsd { .. }, true) => "jsd_backward",
            (Kind::Tvd, false) => "tvd",
            (Kind::Tvd, true) => "tvd_backward",
        }
    }

    fn forward(&self) -> Result<Tensor> {
        let dev = self.dev();
        dev.op(self.kind.op(), || self.record_forward())
    }

    fn record_forward(&self) -> Result<Tensor> {
        let dev = self.dev();
        let n_rows = self.rows.rows();
        let checks = self.checks();
        if self.rows.is_empty() {
            let loss = Storage::alloc(dev, 4)?;
            return match self.reduction {
                Reduction::None => Ok(Tensor { checks, ..Tensor::new(loss, self.out_shape.clone()) }),
                Reduction::Sum => reduce(dev, &loss, None, 0, Finish::Sum, 0.0, checks),
                Reduction::Mean => reduce(dev, &loss, None, 0, Finish::MeanCount, 0.0, checks),
            };
        }
        let loss = Storage::alloc(dev, n_rows as u64 * 4)?;
        let counted = Storage::alloc(dev, n_rows as u64 * 4)?;
        self.record_rows(&loss, &counted)?;
        match self.reduction {
            Reduction::None => Ok(Tensor { checks, ..Tensor::new(loss, self.out_shape.clone()) }),
            Reduction::Sum => reduce(dev, &loss, None, n_rows, Finish::Sum, 0.0, checks),
            Reduction::Mean => reduce(dev, &loss, Some(&counted), n_rows, Finish::MeanWeights, 0.0, checks),
        }
    }

    /// The forward entry over every row: row losses into `loss`, counts into `counted`.
    fn record_rows(&self, loss: &Storage, counted: &Storage) -> Result<()> {
        let dev = self.dev();
        let reads = self.reads()?;
        let (pipe, plan) = self.pipeline(self.entry(false), reads)?;
        let inner = self.rows.inner as u64;
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(2, 0))? {
            let (r0, n) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let inputs = self.inputs(reads, r0, n);
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(Input::bind).collect();
            binds.extend([
                self.labels_bind(),
                Bind::all(LOSS, loss.buffer()),
                Bind::all(COUNTED, counted.buffer()),
            ]);
            let params = Params { tpr: plan.tpr, ..self.params(n, r0) };
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &binds,
                plan.groups(n as usize),
                &plan.extents(),
            )?;
        }
        Ok(())
    }

    fn check_grad(&self, grad: &Tensor) -> Result<()> {
        let op = self.kind.op();
        same_device(op, self.dev(), &[grad.device()])?;
        match self.reduction {
            Reduction::None if grad.shape != self.out_shape => Err(Error::shape(
                op,
                format!("grad_output must have the loss's shape {:?}, got {:?}", self.out_shape, grad.shape),
            )),
            Reduction::Sum | Reduction::Mean if grad.numel() != 1 => Err(Error::shape(
                op,
                format!("grad_output of a reduced loss must hold one value, got {:?}", grad.shape),
            )),
            _ => Ok(()),
        }
    }

    /// The backward entry over every row into `dx`, for `grad` reaching `n_rows` rows in all
    /// (`denom`: the mean's denominator when labels are given).
    fn record_grad(&self, grad: &Tensor, denom: Option<&Tensor>, n_rows: usize, dx: &Storage) -> Result<()> {
        let dev = self.dev();
        let (g_mode, scale) = match (self.reduction, denom) {
            (Reduction::None, _) => (0, 1.0),
            (Reduction::Sum, _) => (1, 1.0),
            (Reduction::Mean, Some(_)) => (2, 1.0),
            (Reduction::Mean, None) => (1, 1.0 / n_rows as f32),
        };
        let reads = self.reads()?;
        let (pipe, plan) = self.pipeline(self.entry(true), reads)?;
        let denom_buf = denom.map_or(&dev.inner.dummy, |d| d.storage.buffer());
        let (inner, cols) = (self.rows.inner as u64, self.rows.cols as u64);
        let per_row = self.reduction == Reduction::None;
        for chunk in self.rows.chunks(dev, "one row", &self.row_bytes(per_row as usize, 1))? {
            let (r0, rn) = (chunk.start as u64 * inner, chunk.len() as u64 * inner);
            let inputs = self.inputs(reads, r0, rn);
            let mut binds: Vec<Bind<'_>> = inputs.iter().map(Input::bind).collect();
            binds.extend([
                self.labels_bind(),
                Bind::all(G, grad.storage.buffer()),
                Bind::all(DENOM, denom_buf),
                Bind::range(DX, dx.buffer(), 4 * r0 * cols, 4 * rn * cols),
            ]);
            let params = Params { g_mode, scale, tpr: plan.tpr, ..self.params(rn, r0) };
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &binds,
                plan.groups(rn as usize),
                &plan.extents(),
            )?;
        }
        Ok(())
    }

    fn backward(&self, grad: &Tensor, outputs: Outputs) -> Result<Tensor> {
        self.dev().op(self.kind.op(), || {
            let grad = f32_operand(grad)?;
            let dx = self.record_backward(&grad)?;
            outputs.apply(dx, self.x.dtype)
        })
    }

    fn record_backward(&self, grad: &Tensor) -> Result<Tensor> {
        let dev = self.dev();
        self.check_grad(grad)?;
        let mut checks = self.checks();
        checks.extend(grad.checks.iter().cloned());
        let shape = self.x.shape.clone();
        if self.rows.is_empty() {
            return Tensor::empty(dev, shape).map(|t| Tensor { checks, ..t });
        }
        let n_rows = self.rows.rows();
        let denom = match self.labels {
            Some(l) if self.reduction == Reduction::Mean => {
                Some(counted_rows(dev, l, self.ignore as i64, n_rows)?)
            }
            _ => None,
        };
        let dx = Storage::alloc(dev, 4 * self.x.numel() as u64)?;
        self.record_grad(grad, denom.as_ref(), n_rows, &dx)?;
        Ok(Tensor { checks, ..Tensor::new(dx, shape) })
    }
}

/// How many of the first `rows` labels are not `ignore_index`, on the device.
fn counted_rows(dev: &Device, labels: &Indices, ignore_index: i64, rows: usize) -> Result<Tensor> {
    let pipe = KernelId::Divergence.pipeline(dev, "counted_rows", &[])?;
    let counted = Storage::alloc(dev, rows as u64 * 4)?;
    let params = Params {
        rows: check_u32("jsd", rows)?,
        ignore_index: i32::try_from(ignore_index).unwrap_or(i32::MIN),
        has_labels: 1,
        ..Params::zeroed()
    };
    let binds = [Bind::all(LABELS, labels.storage.buffer()), Bind::all(COUNTED, counted.buffer())];
    dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, (rows as u64).div_ceil(64), &[])?;
    reduce(dev, &counted, None, rows, Finish::Sum, 0.0, Vec::new())
}
