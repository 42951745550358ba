//! The class-margin losses over rows of C classes (the last dim) (`shaders/class_margin.wgsl`):
//! `multi_margin` (a class id per row) and `multilabel_soft_margin` (a float target per class).
//! Each row's loss is written, then reduced by the fixed-order reduction when asked; the gradient
//! is the input's.
//!
//! A row is spread over as many threads as the loop budget needs (`RowStrategy::plan`, as
//! log_softmax's rows), each looping once over its share of the classes, so on a software
//! adapter a row may hold up to 256 × its budget (over 15 million) classes.

use super::convert::f32_operand;
use super::reduce::reduce_items;
use super::{Outputs, Reduction, RowPlan, RowStrategy, Rows, check_u32, item_grad, reduction_and_outputs};
use crate::error::{Error, NO_IGNORE_INDEX, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::gpu::spec::Binding;
use crate::kernels::KernelId;
use crate::kernels::class_margin::{DX, G, KERNEL, LOSS, Params, STATUS, TARGETS, WEIGHT, X, Y};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// The `LOSS` constant of `shaders/class_margin.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    MultiMargin = 0,
    MultilabelSoftMargin = 1,
}

/// What a row takes as its target.
#[derive(Clone, Copy)]
enum Target<'a> {
    Ids(&'a Indices),
    Values(&'a Tensor),
}

/// Multi-class margin loss, as PyTorch's `F.multi_margin_loss(input, target, p=1, margin=1,
/// weight=None, reduction)`: for each row `x` of C classes with target `t`,
/// `Σ_{i ≠ t} w[t]·max(0, margin − x[t] + x[i])^p / C`. The input is `(N, C)` or `(C)`; the target
/// `(N)` (or `()` or `(1)` for one row) holds class ids, int64 or int32; `weight` is `(C)`.
/// A target outside `[0, C)` is an [`Error::TargetOutOfRange`] when the result is read. The
/// gradient is 0 where the hinge is 0 exactly, as PyTorch's. An empty batch's mean is NaN
/// (PyTorch returns an uninitialised value there).
///
/// ```
/// use wgpu_loss::{Device, MultiMargin};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[0.1, 0.2, 0.4, 0.8], &[1, 4])?;
/// let t = dev.indices(&[3i64], &[1])?;
/// // PyTorch's example: (1 − 0.8 + 0.1) + (1 − 0.8 + 0.2) + (1 − 0.8 + 0.4), over 4
/// assert!((MultiMargin::default().forward(&x, &t)?.item()? - 0.325).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct MultiMargin {
    /// The hinge's power: 1 (default) or 2.
    pub p: u32,
    /// The margin (default 1).
    pub margin: f32,
    /// Per-class weights `(C)`; each row's terms are scaled by its target's.
    pub weight: Option<Tensor>,
    /// How the rows' losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradient: the input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for MultiMargin {
    fn default() -> Self {
        MultiMargin {
            p: 1,
            margin: 1.0,
            weight: None,
            reduction: Reduction::Mean,
            outputs: Outputs::AsInputs,
        }
    }
}

/// Multi-label soft margin loss, as PyTorch's `F.multilabel_soft_margin_loss(input, target,
/// weight=None, reduction)`: for each row of C classes,
/// `Σ_c w[c]·−(y·log σ(x) + (1 − y)·log σ(−x)) / C`, computed as the stable
/// `max(x, 0) − x·y + log(1 + e^−|x|)`. The input has any shape `(…, C)`; the target is float,
/// of the input's shape; `weight` is `(C)`; `reduction = none` gives the shape `(…)`. The
/// gradient is `w[c]·(σ(x) − y) / C`.
#[derive(Clone, Debug, Default)]
pub struct MultilabelSoftMargin {
    /// Per-class weights `(C)`.
    pub weight: Option<Tensor>,
    /// How the rows' losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradient: the input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// One validated call: the kernel's loss, its operands as f32, and the rows' layout.
struct Job<'a> {
    op: &'static str,
    kind: Kind,
    input: &'a Tensor,
    target: Target<'a>,
    weight: Option<&'a Tensor>,
    p: u32,
    margin: f32,
    reduction: Reduction,
    /// The shape of `reduction = none`'s output: one loss per row.
    out_shape: Vec<usize>,
    rows: usize,
    cols: usize,
}

impl<'a> Job<'a> {
    fn check(&self) -> Result<()> {
        let (op, dev) = (self.op, self.input.device());
        let mut others = vec![];
        match self.target {
            Target::Ids(t) => others.push(t.device()),
            Target::Values(t) => others.push(t.device()),
        }
        others.extend(self.weight.map(|w| w.device()));
        same_device(op, dev, &others)?;
        if let Some(w) = self.weight
            && w.shape != [self.cols]
        {
            return Err(Error::shape(
                op,
                format!("weight must be ({}), one per class, got {:?}", self.cols, w.shape),
            ));
        }
        check_u32(op, self.input.numel())?;
        Ok(())
    }

    /// The kernel's constants for rows spread by `plan`.
    fn constants(&self, g_per_row: bool, plan: RowPlan) -> [(&'static str, f64); 6] {
        [
            ("LOSS", self.kind as u32 as f64),
            ("P", self.p as f64),
            ("HAS_WEIGHT", self.weight.is_some() as u8 as f64),
            ("G_PER_ROW", g_per_row as u8 as f64),
            ("WG", plan.wg as f64),
            ("TREE", plan.tree() as u8 as f64),
        ]
    }

    /// How `entry` spreads the rows over threads: within the loop budget, as log_softmax's.
    fn plan(&self, entry: &'static str) -> Result<RowPlan> {
        let bound = KERNEL.entry(entry).map(|e| e.trips).ok_or_else(|| Error::invalid(self.op, entry))?;
        let rows = Rows { outer: self.rows, cols: self.cols, inner: 1 };
        RowStrategy::Auto.plan(self.op, self.input.device(), &self.input.shape, &rows, bound)
    }

    /// The status word of the target check (multi_margin), or a scratch one.
    fn status(&self) -> Result<(std::sync::Arc<Storage>, Option<ValueCheck>)> {
        match self.target {
            Target::Ids(t) => {
                let check = ValueCheck::new(self.op, t, self.cols, NO_IGNORE_INDEX)?;
                Ok((check.status.clone(), Some(check)))
            }
            Target::Values(_) => Ok((Storage::alloc(self.input.device(), 4)?, None)),
        }
    }

    /// Dispatches `entry` over row chunks: the per-row buffers (`per_row`, 4 bytes a row) and
    /// per-element ones (`per_element`, `cols` f32 a row) bound per chunk, `whole` bound whole.
    fn run(
        &self,
        entry: &'static str,
        g_per_row: bool,
        per_element: &[(Binding, &wgpu::Buffer)],
        per_row: &[(Binding, &wgpu::Buffer)],
        whole: &[(Binding, &wgpu::Buffer)],
        scale: f32,
    ) -> Result<()> {
        let dev: &Device = self.input.device();
        let plan = self.plan(entry)?;
        let pipe = KernelId::ClassMargin.pipeline(dev, entry, &self.constants(g_per_row, plan))?;
        let row_bytes: Vec<u64> =
            per_element.iter().map(|_| self.cols as u64 * 4).chain(per_row.iter().map(|_| 4)).collect();
        for chunk in row_chunks(dev, "a row of classes", self.rows, &row_bytes, 1)? {
            let (first, len) = (chunk.start as u64, chunk.len() as u64);
            let row = self.cols as u64 * 4;
            let mut binds: Vec<Bind<'_>> =
                per_element.iter().map(|&(b, buf)| Bind::range(b, buf, first * row, len * row)).collect();
            binds.extend(per_row.iter().map(|&(b, buf)| Bind::range(b, buf, first * 4, len * 4)));
            binds.extend(whole.iter().map(|&(b, buf)| Bind::all(b, buf)));
            let params = Params {
                rows: len as u32,
                cols: self.cols as u32,
                row_base: first as u32,
                margin: self.margin,
                scale,
                tpr: plan.tpr,
                _pad: [0; 2],
            };
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &binds,
                plan.groups(len as usize),
                &plan.extents(),
            )?;
        }
        Ok(())
    }

    /// Where the target goes: class ids per row, or float targets per element (`y`, the
    /// target as f32); the slot the loss does not read gets the device's dummy buffer.
    #[allow(clippy::type_complexity)]
    fn bind_target<'b>(
        &'b self,
        y: Option<&'b Tensor>,
        per_element: &mut Vec<(Binding, &'b wgpu::Buffer)>,
        per_row: &mut Vec<(Binding, &'b wgpu::Buffer)>,
        whole: &mut Vec<(Binding, &'b wgpu::Buffer)>,
    ) {
        let dummy = &self.input.device().inner.dummy;
        match (self.target, y) {
            (Target::Ids(t), _) => {
                per_row.push((TARGETS, t.storage.buffer()));
                whole.push((Y, dummy));
            }
            (Target::Values(_), y) => {
                per_element.push((Y, y.map_or(dummy, |y| y.storage.buffer())));
                whole.push((TARGETS, dummy));
            }
        }
    }

    fn forward(&self) -> Result<Tensor> {
        let dev = self.input.device();
        dev.op(self.op, || {
            self.check()?;
            let x = f32_operand(self.input)?;
            let y = match self.target {
                Target::Values(t) => Some(f32_operand(t)?),
                Target::Ids(_) => None,
            };
            let w = self.weight.map(f32_operand).transpose()?;
            let (status, check) = self.status()?;
            let loss = Storage::alloc(dev, (self.rows as u64 * 4).max(4))?;
            if self.rows > 0 && self.cols > 0 {
                let mut per_element = vec![(X, x.storage.buffer())];
                let mut per_row = vec![(LOSS, loss.buffer())];
                let mut whole = vec![(STATUS, status.buffer())];
                self.bind_target(y.as_ref(), &mut per_element, &mut per_row, &mut whole);
                whole.push((WEIGHT, w.as_ref().map_or(&dev.inner.dummy, |w| w.storage.buffer())));
                self.run("forward", false, &per_element, &per_row, &whole, 0.0)?;
            } else if self.rows > 0 {
                // Rows of no classes: 0 / C is NaN, as in PyTorch.
                let nan = vec![f32::NAN; self.rows];
                let filled = Storage::upload(dev, bytemuck::cast_slice(&nan))?;
                return self.reduced(filled, check);
            }
            self.reduced(loss, check)
        })
    }

    /// The rows' losses `loss`, reduced.
    fn reduced(&self, loss: std::sync::Arc<Storage>, check: Option<ValueCheck>) -> Result<Tensor> {
        let mut checks = self.input.checks.clone();
        checks.extend(check);
        reduce_items(self.input.device(), loss, self.rows, self.out_shape.clone(), self.reduction, checks)
    }

    fn backward(&self, grad: &Tensor, outputs: Outputs) -> Result<Tensor> {
        let dev = self.input.device();
        dev.op(self.op, || {
            self.check()?;
            same_device(self.op, dev, &[grad.device()])?;
            let (per_row, scale) = item_grad(self.op, grad, self.reduction, &self.out_shape, self.rows)?;
            let x = f32_operand(self.input)?;
            let g = f32_operand(grad)?;
            let y = match self.target {
                Target::Values(t) => Some(f32_operand(t)?),
                Target::Ids(_) => None,
            };
            let w = self.weight.map(f32_operand).transpose()?;
            let (status, check) = self.status()?;
            let dx = Tensor::empty(dev, self.input.shape.clone())?;
            if self.rows > 0 && self.cols > 0 {
                let mut per_element = vec![(X, x.storage.buffer()), (DX, dx.storage.buffer())];
                let mut rows = vec![];
                let mut whole = vec![(STATUS, status.buffer())];
                self.bind_target(y.as_ref(), &mut per_element, &mut rows, &mut whole);
                whole.push((WEIGHT, w.as_ref().map_or(&dev.inner.dummy, |w| w.storage.buffer())));
                if per_row {
                    rows.push((G, g.storage.buffer()));
                } else {
                    whole.push((G, g.storage.buffer()));
                }
                self.run("backward", per_row, &per_element, &rows, &whole, scale)?;
            }
            let mut checks = self.input.checks.clone();
            checks.extend(grad.checks.iter().cloned());
            checks.extend(check);
            outputs.apply(Tensor { checks, ..dx }, self.input.dtype)
        })
    }
}

impl MultiMargin {
    fn job<'a>(&'a self, input: &'a Tensor, target: &'a Indices) -> Result<Job<'a>> {
        let op = "multi_margin";
        if self.p != 1 && self.p != 2 {
            return Err(Error::invalid(op, format!("only p == 1 and p == 2 are supported, got {}", self.p)));
        }
        if !self.margin.is_finite() {
            return Err(Error::invalid(op, format!("margin must be finite, got {}", self.margin)));
        }
        let (rows, cols) = match input.shape[..] {
            [] => (1, 1),
            [c] => (1, c),
            [n, c] => (n, c),
            _ => return Err(Error::shape(op, format!("input must be (N, C) or (C), got {:?}", input.shape))),
        };
        if cols == 0 {
            return Err(Error::shape(op, format!("input {:?} has no classes", input.shape)));
        }
        if target.shape.len() > 1 || target.numel() != rows {
            return Err(Error::shape(
                op,
                format!(
                    "target {:?} must hold one class id per row of the input {:?}",
                    target.shape, input.shape
                ),
            ));
        }
        Ok(Job {
            op,
            kind: Kind::MultiMargin,
            input,
            target: Target::Ids(target),
            weight: self.weight.as_ref(),
            p: self.p,
            margin: self.margin,
            reduction: self.reduction,
            out_shape: target.shape.clone(),
            rows,
            cols,
        })
    }

    /// The loss: a 0-d tensor when reduced, the target's shape for `None`.
    pub fn forward(&self, input: &Tensor, target: &Indices) -> Result<Tensor> {
        self.job(input, target)?.forward()
    }

    /// The gradient in `input`, given the upstream gradient `grad_output` (one value for a
    /// reduced loss, the target's shape for `None`).
    pub fn backward(&self, input: &Tensor, target: &Indices, grad_output: &Tensor) -> Result<Tensor> {
        self.job(input, target)?.backward(grad_output, self.outputs)
    }

    /// Sets p (1 or 2).
    pub fn p(mut self, p: u32) -> Self {
        self.p = p;
        self
    }

    /// Sets the margin.
    pub fn margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }
}

impl MultilabelSoftMargin {
    fn job<'a>(&'a self, input: &'a Tensor, target: &'a Tensor) -> Result<Job<'a>> {
        let op = "multilabel_soft_margin";
        let Some((&cols, lead)) = input.shape.split_last() else {
            return Err(Error::shape(op, "input must have a class dim, got a 0-d tensor"));
        };
        if target.shape != input.shape {
            return Err(Error::shape(
                op,
                format!(
                    "input {:?} and target {:?} differ (nothing is broadcast)",
                    input.shape, target.shape
                ),
            ));
        }
        Ok(Job {
            op,
            kind: Kind::MultilabelSoftMargin,
            input,
            target: Target::Values(target),
            weight: self.weight.as_ref(),
            p: 1,
            margin: 0.0,
            reduction: self.reduction,
            out_shape: lead.to_vec(),
            rows: lead.iter().product(),
            cols,
        })
    }

    /// The loss: a 0-d tensor when reduced, the input's shape less its class dim for `None`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        self.job(input, target)?.forward()
    }

    /// The gradient in `input`, given the upstream gradient `grad_output` (one value for a
    /// reduced loss, the input's shape less its class dim for `None`).
    pub fn backward(&self, input: &Tensor, target: &Tensor, grad_output: &Tensor) -> Result<Tensor> {
        self.job(input, target)?.backward(grad_output, self.outputs)
    }
}

/// The `weight` setter.
macro_rules! weight_setter {
    ($($t:ty),+) => {$(
        impl $t {
            /// Sets the per-class weights `(C)`.
            pub fn weight(mut self, weight: Tensor) -> Self {
                self.weight = Some(weight);
                self
            }
        }
    )+};
}

weight_setter!(MultiMargin, MultilabelSoftMargin);
reduction_and_outputs!(MultiMargin, MultilabelSoftMargin);
