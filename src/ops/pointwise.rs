//! The pointwise losses — `mse`, `l1`, `smooth_l1`, `huber`, `bce`, `bce_with_logits`, `kl_div`,
//! `soft_margin`, `sigmoid_focal`, `poisson_nll`, `hinge_embedding` — their gradients, and binary
//! accuracy: one kernel family (`shaders/pointwise.wgsl`) whose
//! formula is a pipeline constant.
//!
//! Input and target must have the same shape: nothing is broadcast (PyTorch broadcasts with a
//! warning; here a mismatch is an [`Error::Shape`]). The mean and sum are fused with the
//! elementwise pass, so the per-element values are never written. A NaN in an element makes
//! that element's loss NaN and any mean or sum over it NaN, as in PyTorch.
//!
//! Every loss has `forward(input, target)` and `backward(input, target, grad_output)`, the
//! gradient with respect to the input given the upstream gradient (a one-element tensor for
//! mean and sum, a tensor of the input's shape for [`Reduction::None`]). Losses whose target
//! gradient PyTorch defines also have `backward_with_target`, which returns both.

use super::broadcast::Runs;
use super::convert::f32_operand;
use super::reduce::{Finish, finish, parts_for};
use super::{Outputs, Reduction, SUM_CHUNK, check_u32, sum_constants};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::gpu::spec::Binding;
use crate::gpu::staging::{Input, input as input_at};
use crate::kernels::KernelId;
use crate::kernels::convert::dtype_code;
use crate::kernels::pointwise::{AUX, D2, G, OUT, Params, STATUS, WEIGHT, X, Y};
use crate::tensor::{Locate, Storage, Tensor, ValueCheck, same_device};

mod paired;
pub use paired::{GaussianNll, MarginRanking};

/// Elements in one workgroup's chunk (each thread takes four elements at a time, ITEMS times:
/// on software adapters an invocation's start costs more than a quad's loss).
const EW_CHUNK: u64 = 4 * SUM_CHUNK;

/// The formula: the `LOSS` constant of `shaders/pointwise.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Formula {
    Mse = 0,
    L1 = 1,
    SmoothL1 = 2,
    Huber = 3,
    Bce = 4,
    BceWithLogits = 5,
    KlDiv = 6,
    KlDivLogTarget = 7,
    BinaryAccuracy = 8,
    SoftMargin = 9,
    SigmoidFocal = 10,
    PoissonNll = 11,
    HingeEmbedding = 12,
    GaussianNll = 13,
    MarginRanking = 14,
}

/// The `options` bits of `shaders/pointwise.wgsl`'s parameters.
const FOCAL_ALPHA: u32 = 1;
const POISSON_FULL: u32 = 2;
const GAUSSIAN_FULL: u32 = 2;

const WEIGHT_FULL: u32 = 1;
const WEIGHT_BROADCAST: u32 = 2;
const HAS_AUX: u32 = 4;
const AUX_FULL: u32 = 8;

/// How the weights are read: the FLAGS constant and the runs of the broadcast ones.
#[derive(Clone, Copy, Debug)]
struct Layout {
    flags: u32,
    weight: Runs,
    aux: Runs,
}

/// How per-element values are combined: kept, summed, or summed and divided by a count.
#[derive(Clone, Copy, Debug)]
enum Scale {
    None,
    Sum,
    Mean(f64),
}

impl Scale {
    fn of(reduction: Reduction, n: usize) -> Scale {
        match reduction {
            Reduction::None => Scale::None,
            Reduction::Sum => Scale::Sum,
            Reduction::Mean => Scale::Mean(n as f64),
        }
    }
}

/// One validated call (a job, as in every ops module): the formula, its parameters, and its
/// operands. Input and target are read in their own element types; weights are read as f32.
#[derive(Clone, Copy)]
struct Job<'a> {
    op: &'static str,
    formula: Formula,
    /// The formula's parameter (β, δ, γ, eps or the margin).
    beta: f32,
    /// A second parameter (sigmoid_focal's α).
    alpha: f32,
    /// The formula's switches (the `options` parameter).
    switches: u32,
    /// poisson_nll's log_input (the `LOG_INPUT` override).
    log_input: bool,
    input: &'a Tensor,
    target: &'a Tensor,
    /// What the target slot holds, for messages ("target"; margin_ranking's "input2").
    target_name: &'static str,
    weight: Option<&'a Tensor>,
    /// The aux operand, broadcast to the input, and its name: bce_with_logits' `pos_weight`,
    /// gaussian_nll's `var`, margin_ranking's `target`.
    aux: Option<(&'a Tensor, &'static str)>,
    outputs: Outputs,
    /// The element type of the d2 gradient when not the target's under `outputs` (gaussian_nll:
    /// var's, or f32 before a broadcast var's sum).
    d2_dtype: Option<DType>,
}

impl<'a> Job<'a> {
    fn new(op: &'static str, formula: Formula, input: &'a Tensor, target: &'a Tensor) -> Self {
        Job {
            op,
            formula,
            beta: 0.0,
            alpha: 0.0,
            switches: 0,
            log_input: false,
            input,
            target,
            target_name: "target",
            weight: None,
            aux: None,
            outputs: Outputs::AsInputs,
            d2_dtype: None,
        }
    }

    /// Runs `f` on this job with its weights as f32 (widened inside the open frame when half).
    fn with_f32_weights<R>(&self, f: impl FnOnce(&Job<'_>) -> Result<R>) -> Result<R> {
        let weight = self.weight.map(f32_operand).transpose()?;
        let aux = self.aux.map(|(t, name)| Ok::<_, Error>((f32_operand(t)?, name))).transpose()?;
        let aux = aux.as_ref().map(|(t, name)| (t, *name));
        f(&Job { weight: weight.as_ref(), aux, ..*self })
    }

    /// Checks devices and shapes; returns how the weights are read.
    fn validate(&self) -> Result<Layout> {
        let (op, input) = (self.op, self.input);
        let dev = input.device();
        let mut devices = vec![self.target.device()];
        devices.extend(self.weight.iter().chain(self.aux.as_ref().map(|a| &a.0)).map(|t| t.device()));
        same_device(op, dev, &devices)?;
        if input.shape != self.target.shape {
            return Err(Error::shape(
                op,
                format!(
                    "input {:?} and {} {:?} differ (nothing is broadcast)",
                    input.shape, self.target_name, self.target.shape
                ),
            ));
        }
        check_u32(op, input.numel())?;
        let mut layout = Layout { flags: 0, weight: Runs::NONE, aux: Runs::NONE };
        match self.weight {
            Some(w) if w.shape == input.shape => layout.flags |= WEIGHT_FULL,
            Some(w) => {
                layout.weight = Runs::of(op, "weight", &w.shape, &input.shape)?;
                layout.flags |= WEIGHT_BROADCAST;
            }
            None => {}
        }
        if let Some((a, name)) = self.aux {
            layout.aux = Runs::of(op, name, &a.shape, &input.shape)?;
            layout.flags |= HAS_AUX;
            if a.shape == input.shape {
                layout.flags |= AUX_FULL;
            }
        }
        Ok(layout)
    }

    fn constants(&self, flags: u32, g_per_element: bool, want_d2: bool) -> Vec<(&'static str, f64)> {
        let mut c = sum_constants().to_vec();
        c.extend([
            ("LOSS", self.formula as u32 as f64),
            ("FLAGS", flags as f64),
            ("G_PER_ELEMENT", g_per_element as u8 as f64),
            ("WANT_D2", want_d2 as u8 as f64),
        ]);
        if self.formula == Formula::SigmoidFocal {
            // γ (in beta) as a small integer takes products, not exp2(γ·log2 m).
            let integral = (0.0..=4.0).contains(&self.beta) && self.beta.fract() == 0.0;
            c.push(("INTEGRAL_GAMMA", if integral { self.beta as f64 } else { -1.0 }));
        }
        if self.formula == Formula::PoissonNll {
            c.push(("LOG_INPUT", self.log_input as u8 as f64));
        }
        c
    }

    /// The domain check (probabilities for bce, a var ≥ 0 for gaussian_nll), or a scratch
    /// status word.
    fn status(&self) -> Result<(std::sync::Arc<Storage>, Option<ValueCheck>)> {
        let check = match (self.formula, self.aux) {
            (Formula::Bce, _) => ValueCheck::domain(self.op, self.input, "input", "[0, 1]", None)?,
            (Formula::GaussianNll, Some((var, _))) => {
                // The kernel reports the input's position; var's own comes from the broadcast.
                let runs = Runs::of(self.op, "var", &var.shape, &self.input.shape)?;
                let locate: Locate = std::sync::Arc::new(move |i| runs.locate(i));
                ValueCheck::domain(self.op, var, "var", "[0, inf)", Some(locate))?
            }
            _ => return Ok((Storage::alloc(self.input.device(), 4)?, None)),
        };
        Ok((check.status.clone(), Some(check)))
    }

    fn checks(&self, own: Option<ValueCheck>) -> Vec<ValueCheck> {
        let mut checks = self.input.checks.clone();
        checks.extend(self.target.checks.iter().cloned());
        for t in self.weight.iter().chain(self.aux.as_ref().map(|a| &a.0)) {
            checks.extend(t.checks.iter().cloned());
        }
        checks.extend(own);
        checks
    }

    /// Dispatches `entry` chunk by chunk. `per_element` are the per-element buffers bound
    /// besides x, y and the weight (slot, buffer, element type); `out` (its elements of type
    /// `out_dtype`) is bound at slot 5 per chunk unless `partials`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        layout: Layout,
        (out, out_dtype): (&Storage, DType),
        partials: bool,
        per_element: &[(Binding, &wgpu::Buffer, DType)],
        whole: &[(Binding, &wgpu::Buffer)],
        scale: f32,
    ) -> Result<()> {
        let dev = self.input.device();
        let n = self.input.numel();
        let (x, y) = (self.input.storage.buffer(), self.target.storage.buffer());
        let (xt, yt) = (self.input.dtype, self.target.dtype);
        // The aux operand (f32): read in chunks with x and y when it has their shape, else
        // whole (at least one texel: the dummy when there is none).
        let aux_full = layout.flags & AUX_FULL != 0;
        let (aux, aux_n) =
            self.aux.map_or((&dev.inner.dummy, 4), |(a, _)| (a.storage.buffer(), a.numel().max(1)));
        let reads =
            KernelId::Pointwise.reads(dev, &[(X, x, n, xt), (Y, y, n, yt), (AUX, aux, aux_n, DType::F32)])?;
        let pipe = KernelId::Pointwise.pipeline_for(dev, reads, entry, constants)?;
        let full_weight =
            (layout.flags & WEIGHT_FULL != 0).then(|| self.weight.map(|w| w.storage.buffer())).flatten();
        let mut row_bytes = vec![xt.size() as u64, yt.size() as u64];
        row_bytes.extend(per_element.iter().map(|&(_, _, dtype)| dtype.size() as u64));
        if full_weight.is_some() {
            row_bytes.push(4);
        }
        if aux_full {
            row_bytes.push(4);
        }
        if !partials {
            row_bytes.push(out_dtype.size() as u64);
        }
        // Chunks start on whole 16-byte texels of either type when staged, and on whole
        // workgroup chunks when reducing, so that the partition does not depend on the chunking.
        let multiple = if partials { EW_CHUNK } else { 8 };
        for chunk in row_chunks(dev, "an elementwise input", n, &row_bytes, multiple)? {
            let len = chunk.len() as u64;
            let (first, off) = (chunk.start as u64, chunk.start as u64 * 4);
            let (aux_first, aux_len) = if aux_full { (first, len) } else { (0, aux_n as u64) };
            let staged = [
                input_at(dev, reads, X, x, first, len),
                input_at(dev, reads, Y, y, first, len),
                input_at(dev, reads, AUX, aux, aux_first, aux_len),
            ];
            let mut binds: Vec<Bind<'_>> = staged.iter().map(Input::bind).collect();
            let weight = match (full_weight, self.weight) {
                (Some(w), _) => Bind::range(WEIGHT, w, off, len * 4),
                (None, Some(w)) => Bind::all(WEIGHT, w.storage.buffer()),
                (None, None) => Bind::all(WEIGHT, &dev.inner.dummy),
            };
            binds.push(weight);
            binds.push(if partials {
                Bind::all(OUT, out.buffer())
            } else {
                Bind::range(OUT, out.buffer(), out_dtype.bytes(first), out_dtype.bytes(len))
            });
            for &(binding, buf, dtype) in per_element {
                binds.push(Bind::range(binding, buf, dtype.bytes(first), dtype.bytes(len)));
            }
            binds.extend(whole.iter().map(|&(binding, buf)| Bind::all(binding, buf)));
            let params = Params {
                n: len as u32,
                first: chunk.start as u32,
                part_base: (chunk.start as u64 / EW_CHUNK) as u32,
                beta: self.beta,
                scale,
                weight_count: layout.weight.count,
                aux_count: layout.aux.count,
                alpha: self.alpha,
                options: self.switches,
                _pad: [0; 3],
                weight_runs: layout.weight.runs,
                aux_runs: layout.aux.runs,
            };
            let groups = len.div_ceil(EW_CHUNK);
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &[])?;
        }
        Ok(())
    }

    /// The loss, reduced by `scale`.
    fn forward(&self, scale: Scale) -> Result<Tensor> {
        self.input.device().op(self.op, || self.with_f32_weights(|job| job.record_forward(scale)))
    }

    fn record_forward(&self, scale: Scale) -> Result<Tensor> {
        let layout = self.validate()?;
        let dev: &Device = self.input.device();
        let n = self.input.numel();
        let (status, check) = self.status()?;
        let checks = self.checks(check);
        let whole = [(STATUS, status.buffer())];
        if let Scale::None = scale {
            let out = Storage::alloc(dev, n as u64 * 4)?;
            let constants = self.constants(layout.flags, false, false);
            self.run("forward_none", &constants, layout, (&out, DType::F32), false, &[], &whole, 0.0)?;
            return Ok(Tensor { checks, ..Tensor::new(out, self.input.shape.clone()) });
        }
        let n_parts = parts_for(n, EW_CHUNK);
        let parts = Storage::alloc(dev, n_parts * 4)?;
        if n == 0 {
            dev.record(|enc| enc.clear_buffer(parts.buffer(), 0, Some(4)));
        }
        let constants = self.constants(layout.flags, false, false);
        self.run("forward_partials", &constants, layout, (&parts, DType::F32), true, &[], &whole, 0.0)?;
        match scale {
            Scale::Sum => finish(dev, &parts, n_parts, false, Finish::Sum, 0.0, checks),
            Scale::Mean(count) => finish(dev, &parts, n_parts, false, Finish::MeanCount, count, checks),
            Scale::None => unreachable!("handled above"),
        }
    }

    /// The gradient in the input (and in the formula's second operand when `want_d2`, of the
    /// input's shape) for upstream gradient `grad`. Gradients follow the input's and the
    /// target's element types unless `outputs` says f32 (or `d2_dtype` says otherwise); the
    /// kernel stores them in that type.
    fn backward(&self, grad: &Tensor, scale: Scale, want_d2: bool) -> Result<(Tensor, Option<Tensor>)> {
        self.input.device().op(self.op, || {
            let grad = f32_operand(grad)?;
            self.with_f32_weights(|job| job.record_backward(&grad, scale, want_d2))
        })
    }

    fn record_backward(
        &self,
        grad: &Tensor,
        scale: Scale,
        want_d2: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let layout = self.validate()?;
        let dev: &Device = self.input.device();
        same_device(self.op, dev, &[grad.device()])?;
        let n = self.input.numel();
        let per_element = matches!(scale, Scale::None);
        if per_element && grad.shape != self.input.shape {
            return Err(Error::shape(
                self.op,
                format!(
                    "grad_output must have the input's shape {:?}, got {:?}",
                    self.input.shape, grad.shape
                ),
            ));
        }
        if !per_element && grad.numel() != 1 {
            return Err(Error::shape(
                self.op,
                format!("grad_output of a reduced loss must hold one value, got {:?}", grad.shape),
            ));
        }
        let factor = match scale {
            Scale::Mean(count) if count > 0.0 => (1.0 / count) as f32,
            _ => 1.0,
        };
        let (status, check) = self.status()?;
        let mut checks = self.checks(check);
        checks.extend(grad.checks.iter().cloned());
        let dx_dtype = self.outputs.dtype(self.input.dtype);
        let d2_dtype = self.d2_dtype.unwrap_or(self.outputs.dtype(self.target.dtype));
        let dx = Storage::alloc(dev, dx_dtype.bytes(n as u64))?;
        let d2 = Storage::alloc(dev, if want_d2 { d2_dtype.bytes(n as u64) } else { 4 })?;
        let mut constants = self.constants(layout.flags, per_element, want_d2);
        constants.extend([("DX_DTYPE", dtype_code(dx_dtype)), ("D2_DTYPE", dtype_code(d2_dtype))]);
        let g = grad.storage.buffer();
        let mut pe: Vec<(Binding, &wgpu::Buffer, DType)> = Vec::new();
        let mut whole: Vec<(Binding, &wgpu::Buffer)> = vec![(STATUS, status.buffer())];
        if per_element {
            pe.push((G, g, DType::F32));
        } else {
            whole.push((G, g));
        }
        if want_d2 {
            pe.push((D2, d2.buffer(), d2_dtype));
        } else {
            whole.push((D2, d2.buffer()));
        }
        self.run("backward", &constants, layout, (&dx, dx_dtype), false, &pe, &whole, factor)?;
        let shape = self.input.shape.clone();
        let typed = |s, dtype| Tensor { checks: checks.clone(), dtype, ..Tensor::new(s, shape.clone()) };
        let d2 = want_d2.then(|| typed(d2, d2_dtype));
        Ok((typed(dx, dx_dtype), d2))
    }
}

/// Squared error `(x − y)²`, as PyTorch's `F.mse_loss(input, target, reduction)`.
///
/// ```
/// use wgpu_loss::{Device, Mse, Reduction};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0], &[2])?;
/// let y = dev.tensor(&[0.0, 4.0], &[2])?;
/// assert_eq!(Mse::default().forward(&x, &y)?.item()?, 2.5);
/// // d/dx of the mean: 2 (x − y) / n
/// let g = dev.tensor(&[1.0], &[])?;
/// assert_eq!(Mse::default().backward(&x, &y, &g)?.to_vec()?, [1.0, -2.0]);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mse {
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// Absolute error `|x − y|`, as PyTorch's `F.l1_loss`. Its gradient is `sign(x − y)`, 0 at 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct L1 {
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// `F.smooth_l1_loss(input, target, beta=1.0)`: `0.5 d² / β` where `|d| < β`, else `|d| − β/2`.
/// `β = 0` is exactly [`L1`]; a negative `β` is an [`Error::InvalidArgument`].
#[derive(Clone, Copy, Debug)]
pub struct SmoothL1 {
    /// The threshold β ≥ 0 (default 1).
    pub beta: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for SmoothL1 {
    fn default() -> Self {
        SmoothL1 { beta: 1.0, reduction: Reduction::Mean, outputs: Outputs::AsInputs }
    }
}

/// `F.huber_loss(input, target, delta=1.0)`: `0.5 d²` where `|d| < δ`, else `δ (|d| − δ/2)`;
/// equal to `δ · SmoothL1(β = δ)`. `δ ≤ 0` is an [`Error::InvalidArgument`].
#[derive(Clone, Copy, Debug)]
pub struct Huber {
    /// The threshold δ > 0 (default 1).
    pub delta: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for Huber {
    fn default() -> Self {
        Huber { delta: 1.0, reduction: Reduction::Mean, outputs: Outputs::AsInputs }
    }
}

/// Binary cross-entropy on probabilities, as PyTorch's `F.binary_cross_entropy(p, y, weight)`:
/// `−w [y·log p + (1 − y)·log(1 − p)]` with each log clamped at −100, so `p = 0, y = 1` gives
/// 100, not infinity. The gradient divides by `max((1 − p)·p, 1e-12)` as PyTorch does. An input
/// outside [0, 1] (NaN included) makes reading the result fail with
/// [`Error::InputOutOfRange`]. Targets may be soft (any value in [0, 1]).
///
/// `weight` broadcasts to the input's shape by numpy's rules, as in PyTorch (see
/// [`BceWithLogits`]).
#[derive(Clone, Debug, Default)]
pub struct Bce {
    /// Element weights of any shape that broadcasts to the input's.
    pub weight: Option<Tensor>,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// Binary cross-entropy on logits, as PyTorch's
/// `F.binary_cross_entropy_with_logits(x, y, weight, pos_weight=pos_weight, reduction)`:
///
/// `l = w · [(1 − y)·x + (1 + (p − 1)·y)·softplus(−x)]`, which is `max(x,0) − x·y + log(1 + e^−|x|)`
/// without `pos_weight`. Finite and accurate for every finite `x` (|x| = 1e4 included): softplus
/// uses a series for `log(1 + z)`, not `log(1 + z)` itself. The gradient is
/// `w · [σ(x)·(1 + (p − 1)·y) − p·y]` (σ(x) − y without `pos_weight`).
///
/// `weight` and `pos_weight` broadcast to the input's shape by numpy's (and PyTorch's) rules:
/// dims aligned from the right, each 1 or the input's size, no more dims than the input. A
/// `[C]` `pos_weight` runs along the last dim, a `[C, 1, 1]` one along the class dim of a
/// `[N, C, H, W]` input, a `[1]` one everywhere; neither is materialised at the input's size.
/// An operand whose varying dims form more than four separate groups (possible only past 8
/// dims) is an [`Error::Shape`].
///
/// ```
/// use wgpu_loss::{BceWithLogits, Device, Reduction};
/// let dev = Device::new()?;
/// // A [2, 2, 1] input with one positive weight per class (dim 1).
/// let x = dev.tensor(&[0.0; 4], &[2, 2, 1])?;
/// let y = dev.tensor(&[1.0; 4], &[2, 2, 1])?;
/// let pos = dev.tensor(&[1.0, 3.0], &[2, 1])?;
/// let loss = BceWithLogits::default().pos_weight(pos).reduction(Reduction::None);
/// let ln2 = std::f32::consts::LN_2;
/// let want = [ln2, 3.0 * ln2, ln2, 3.0 * ln2];
/// for (got, want) in loss.forward(&x, &y)?.to_vec()?.iter().zip(want) {
///     assert!((got - want).abs() < 1e-6);
/// }
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct BceWithLogits {
    /// Element weights of any shape that broadcasts to the input's.
    pub weight: Option<Tensor>,
    /// Weight of positive examples, of any shape that broadcasts to the input's (usually one
    /// per class).
    pub pos_weight: Option<Tensor>,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// Soft margin `log(1 + exp(−y·x))`, as PyTorch's `F.soft_margin_loss(input, target,
/// reduction)`, for targets that are usually ±1 (any value is accepted, as in PyTorch). The
/// gradient in the input is `−y·σ(−y·x)`; there is none in the target.
///
/// Computed as a stable softplus, so the loss stays exact where PyTorch's float32
/// `log1p(exp(−y·x))` overflows to `inf` (and its gradient to NaN), for `−y·x > 88.7`.
///
/// ```
/// use wgpu_loss::{Device, SoftMargin};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[0.0, 3.0], &[2])?;
/// let y = dev.tensor(&[1.0, -1.0], &[2])?;
/// // F.soft_margin_loss(torch.tensor([0., 3.]), torch.tensor([1., -1.])) = 1.8708672523
/// assert!((SoftMargin::default().forward(&x, &y)?.item()? - 1.8708672523).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SoftMargin {
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// Focal loss on logits, as torchvision's `sigmoid_focal_loss(inputs, targets, alpha=0.25,
/// gamma=2, reduction="none")`: `a_t·ce·(1 − p_t)^γ` with `ce` the binary cross-entropy on
/// logits, `p = σ(x)`, `p_t = p·y + (1 − p)·(1 − y)` and `a_t = α·y + (1 − α)·(1 − y)` — or 1
/// for α = −1 (torchvision's `alpha=-1`). The default reduction is **none**, as torchvision's.
///
/// `1 − p_t` is taken as `y·σ(−x) + (1 − y)·σ(x)`, each sigmoid computed directly, so a
/// confident prediction keeps its small weight's digits (torchvision's float32 `1 − p_t`
/// rounds it to 0 once σ(x) rounds to 1). α must be in [0, 1] or −1 and γ finite, as
/// torchvision checks. Targets outside [0, 1] are taken as torchvision takes them: `1 − p_t`
/// may then be negative, and its power follows PyTorch's `pow` — the sign kept for an odd
/// integral γ, dropped for an even one, NaN for a non-integral γ. Where `1 − p_t` is 0 (at |x|
/// past ~88), `0^γ` is 0 for γ > 0 and +inf for γ < 0 (the loss ±inf, or NaN where the
/// cross-entropy is 0, and a NaN gradient), as PyTorch's `pow`. An infinite logit gives the
/// loss's limit, as [`BceWithLogits`] does, where torchvision's float64 gives NaN through
/// PyTorch's `binary_cross_entropy_with_logits` (pytorch#135359).
///
/// ```
/// use wgpu_loss::{Device, SigmoidFocal};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[-3.0, 2.0], &[2])?;
/// let y = dev.tensor(&[1.0, 0.0], &[2])?;
/// // torchvision.ops.sigmoid_focal_loss(x, y): [0.6915701628, 1.2375586033]
/// let got = SigmoidFocal::default().forward(&x, &y)?.to_vec()?;
/// assert!((got[0] - 0.6915701628).abs() < 1e-6 && (got[1] - 1.2375586033).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SigmoidFocal {
    /// The weight α of positive examples in [0, 1] (default 0.25), or −1: no class weighting.
    pub alpha: f32,
    /// The focusing exponent γ (default 2; 0 is the α-weighted cross-entropy).
    pub gamma: f32,
    /// How the per-element losses are reduced (default **none**, as torchvision).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for SigmoidFocal {
    fn default() -> Self {
        SigmoidFocal { alpha: 0.25, gamma: 2.0, reduction: Reduction::None, outputs: Outputs::AsInputs }
    }
}

/// Poisson negative log-likelihood, as PyTorch's `F.poisson_nll_loss(input, target,
/// log_input=True, full=False, eps=1e-8, reduction)`: `exp(x) − y·x` when the input holds
/// log-rates, else `x − y·log(x + eps)`; with `full`, Stirling's approximation
/// `y·log y − y + ½·log(2π·y)` is added where `y > 1`. As PyTorch, a negative `x + eps` gives
/// NaN (its gradient stays `1 − y / (x + eps)`, as PyTorch's autograd gives); `x + eps = 0`
/// gives an infinite loss (0·∞ = NaN where `y = 0`). The gradient is the input's, `exp(x) − y`
/// or `1 − y / (x + eps)`.
#[derive(Clone, Copy, Debug)]
pub struct PoissonNll {
    /// Whether the input holds log-rates (default true).
    pub log_input: bool,
    /// Whether to add the Stirling term (default false).
    pub full: bool,
    /// Added to the input before its log when `log_input` is false (default 1e-8).
    pub eps: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for PoissonNll {
    fn default() -> Self {
        PoissonNll {
            log_input: true,
            full: false,
            eps: 1e-8,
            reduction: Reduction::Mean,
            outputs: Outputs::AsInputs,
        }
    }
}

/// Hinge embedding, as PyTorch's `F.hinge_embedding_loss(input, target, margin=1.0,
/// reduction)`: `x` where `y = 1`, `max(0, margin − x)` where `y = −1` — and, as PyTorch's
/// implementation, the sum of both for a target that is neither. The gradient in the input is
/// 1 (where `y ≠ −1`) minus 1 where `y ≠ 1` and `margin − x > 0`.
#[derive(Clone, Copy, Debug)]
pub struct HingeEmbedding {
    /// The margin (default 1).
    pub margin: f32,
    /// How the per-element losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for HingeEmbedding {
    fn default() -> Self {
        HingeEmbedding { margin: 1.0, reduction: Reduction::Mean, outputs: Outputs::AsInputs }
    }
}

/// How [`KlDiv`] reduces: PyTorch's `none`, `mean` (over every element, PyTorch's default, which
/// is not the true KL divergence), `sum`, and `batchmean` (the sum over the size of dim 0, the
/// true KL divergence per example).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KlReduction {
    /// Keep every value.
    None,
    /// The sum over the number of elements.
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// The sum over the size of the first dimension.
    BatchMean,
}

/// Kullback–Leibler divergence, as PyTorch's `F.kl_div(input, target, reduction, log_target)`,
/// with `input` holding log-probabilities: `y·(log y − x)` per element, 0 where `y = 0` (xlogy)
/// and NaN where `y < 0`; with `log_target`, `exp(y)·(y − x)`.
///
/// The target gradient, `log y + 1 − x`, is NaN where `y = 0`, as PyTorch's autograd gives
/// there; with `log_target` it is `exp(y)·(y − x + 1)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KlDiv {
    /// Whether the target holds log-probabilities (default false).
    pub log_target: bool,
    /// How the per-element values are reduced (default mean, as PyTorch).
    pub reduction: KlReduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// What each loss struct supplies to the shared methods.
trait Loss {
    fn job<'a>(&'a self, input: &'a Tensor, target: &'a Tensor) -> Result<Job<'a>>;
    fn scale(&self, input: &Tensor) -> Result<Scale>;
}

/// `reduction` setters and [`Loss`] for the losses reduced by [`Reduction`].
macro_rules! plain_loss {
    ($($t:ty => |$s:ident, $x:ident, $y:ident| $job:expr;)+) => {$(
        impl $t {
            /// Sets the reduction.
            pub fn reduction(mut self, reduction: Reduction) -> Self {
                self.reduction = reduction;
                self
            }
        }

        impl Loss for $t {
            fn job<'a>(&'a self, $x: &'a Tensor, $y: &'a Tensor) -> Result<Job<'a>> {
                let $s = self;
                $job
            }

            fn scale(&self, input: &Tensor) -> Result<Scale> {
                Ok(Scale::of(self.reduction, input.numel()))
            }
        }
    )+};
}

plain_loss! {
    Mse => |_l, x, y| Ok(Job::new("mse", Formula::Mse, x, y));
    L1 => |_l, x, y| Ok(Job::new("l1", Formula::L1, x, y));
    SmoothL1 => |l, x, y| {
        if !l.beta.is_finite() || l.beta < 0.0 {
            return Err(Error::invalid("smooth_l1", format!("beta must be finite and >= 0, got {}", l.beta)));
        }
        if l.beta == 0.0 {
            return Ok(Job::new("smooth_l1", Formula::L1, x, y));
        }
        Ok(Job { beta: l.beta, ..Job::new("smooth_l1", Formula::SmoothL1, x, y) })
    };
    Huber => |l, x, y| {
        if !l.delta.is_finite() || l.delta <= 0.0 {
            return Err(Error::invalid("huber", format!("delta must be finite and > 0, got {}", l.delta)));
        }
        Ok(Job { beta: l.delta, ..Job::new("huber", Formula::Huber, x, y) })
    };
    Bce => |l, x, y| Ok(Job { weight: l.weight.as_ref(), ..Job::new("bce", Formula::Bce, x, y) });
    SoftMargin => |_l, x, y| Ok(Job::new("soft_margin", Formula::SoftMargin, x, y));
    SigmoidFocal => |l, x, y| {
        if !l.gamma.is_finite() {
            return Err(Error::invalid("sigmoid_focal", format!("gamma must be finite, got {}", l.gamma)));
        }
        if !(0.0..=1.0).contains(&l.alpha) && l.alpha != -1.0 {
            return Err(Error::invalid(
                "sigmoid_focal",
                format!("alpha must be in [0, 1], or -1 for no class weighting (as torchvision), got {}", l.alpha),
            ));
        }
        let switches = if l.alpha >= 0.0 { FOCAL_ALPHA } else { 0 };
        Ok(Job { beta: l.gamma, alpha: l.alpha, switches, ..Job::new("sigmoid_focal", Formula::SigmoidFocal, x, y) })
    };
    PoissonNll => |l, x, y| {
        let switches = if l.full { POISSON_FULL } else { 0 };
        Ok(Job {
            beta: l.eps,
            switches,
            log_input: l.log_input,
            ..Job::new("poisson_nll", Formula::PoissonNll, x, y)
        })
    };
    HingeEmbedding => |l, x, y| Ok(Job { beta: l.margin, ..Job::new("hinge_embedding", Formula::HingeEmbedding, x, y) });
    BceWithLogits => |l, x, y| Ok(Job {
        weight: l.weight.as_ref(),
        aux: l.pos_weight.as_ref().map(|p| (p, "pos_weight")),
        ..Job::new("bce_with_logits", Formula::BceWithLogits, x, y)
    });
}

impl Loss for KlDiv {
    fn job<'a>(&'a self, x: &'a Tensor, y: &'a Tensor) -> Result<Job<'a>> {
        let formula = if self.log_target { Formula::KlDivLogTarget } else { Formula::KlDiv };
        Ok(Job::new("kl_div", formula, x, y))
    }

    fn scale(&self, input: &Tensor) -> Result<Scale> {
        Ok(match self.reduction {
            KlReduction::None => Scale::None,
            KlReduction::Sum => Scale::Sum,
            KlReduction::Mean => Scale::Mean(input.numel() as f64),
            KlReduction::BatchMean => match input.shape.first() {
                Some(&n) => Scale::Mean(n as f64),
                None => {
                    return Err(Error::shape("kl_div", "batchmean needs an input with a batch dimension"));
                }
            },
        })
    }
}

impl SmoothL1 {
    /// Sets β.
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }
}

impl Huber {
    /// Sets δ.
    pub fn delta(mut self, delta: f32) -> Self {
        self.delta = delta;
        self
    }
}

impl Bce {
    /// Sets the weight.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }
}

impl BceWithLogits {
    /// Sets the weight.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the positive weight (broadcast to the input's shape).
    pub fn pos_weight(mut self, pos_weight: Tensor) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
}

impl SigmoidFocal {
    /// Sets α, in [0, 1], or −1 for no class weighting (torchvision's `alpha=-1`).
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets γ.
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }
}

impl PoissonNll {
    /// Sets whether the input holds log-rates.
    pub fn log_input(mut self, log_input: bool) -> Self {
        self.log_input = log_input;
        self
    }

    /// Sets whether the Stirling term is added.
    pub fn full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }

    /// Sets eps.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
}

impl HingeEmbedding {
    /// Sets the margin.
    pub fn margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }
}

impl KlDiv {
    /// Sets whether the target holds log-probabilities.
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: KlReduction) -> Self {
        self.reduction = reduction;
        self
    }
}

/// `forward` and `backward` (and `backward_with_target`), written once for every loss.
macro_rules! loss_methods {
    ($($t:ty),+) => {$(
        impl $t {
            /// The loss: a 0-d tensor when reduced, the input's shape for `None`.
            pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
                self.job(input, target)?.forward(self.scale(input)?)
            }

            /// The gradient with respect to `input`, given the upstream gradient `grad_output`
            /// (one value for a reduced loss, the input's shape for `None`), in the input's
            /// element type unless [`outputs`](Self::outputs) says f32.
            pub fn backward(&self, input: &Tensor, target: &Tensor, grad_output: &Tensor) -> Result<Tensor> {
                let job = Job { outputs: self.outputs, ..self.job(input, target)? };
                Ok(job.backward(grad_output, self.scale(input)?, false)?.0)
            }

            /// Sets the element type of the gradients.
            pub fn outputs(mut self, outputs: Outputs) -> Self {
                self.outputs = outputs;
                self
            }
        }
    )+};
}

macro_rules! target_gradient {
    ($($t:ty),+) => {$(
        impl $t {
            /// The gradients with respect to `input` and to `target`, in that order.
            pub fn backward_with_target(
                &self,
                input: &Tensor,
                target: &Tensor,
                grad_output: &Tensor,
            ) -> Result<(Tensor, Tensor)> {
                let job = Job { outputs: self.outputs, ..self.job(input, target)? };
                let (dx, dy) = job.backward(grad_output, self.scale(input)?, true)?;
                Ok((dx, dy.expect("backward returns the target gradient when asked")))
            }
        }
    )+};
}

loss_methods!(
    Mse,
    L1,
    SmoothL1,
    Huber,
    Bce,
    BceWithLogits,
    KlDiv,
    SoftMargin,
    SigmoidFocal,
    PoissonNll,
    HingeEmbedding
);
target_gradient!(Mse, L1, SmoothL1, Huber, KlDiv);

/// `F.mse_loss(input, target, reduction=...)`.
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
    Mse { reduction, ..Mse::default() }.forward(input, target)
}

/// `F.l1_loss(input, target, reduction=...)`.
pub fn l1(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    L1 { reduction, ..L1::default() }.forward(input, target)
}

/// `F.binary_cross_entropy(input, target, reduction=...)` on probabilities, without weights.
pub fn bce(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    Bce::default().reduction(reduction).forward(input, target)
}

/// `F.binary_cross_entropy_with_logits(input, target, reduction=...)` without weights.
pub fn bce_with_logits(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    BceWithLogits::default().reduction(reduction).forward(input, target)
}

/// The fraction of elements where the logit's sign agrees with the target: prediction
/// `x > 0` (a NaN logit predicts 0) against truth `y > 0.5`. A 0-d tensor; NaN when empty.
///
/// ```
/// let dev = wgpu_loss::Device::new()?;
/// let x = dev.tensor(&[2.0, -1.0, 0.5, -3.0], &[4])?;
/// let y = dev.tensor(&[1.0, 0.0, 0.0, 0.0], &[4])?;
/// assert_eq!(wgpu_loss::binary_accuracy(&x, &y)?.item()?, 0.75);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn binary_accuracy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let job = Job::new("binary_accuracy", Formula::BinaryAccuracy, logits, targets);
    job.forward(Scale::Mean(logits.numel() as f64))
}
