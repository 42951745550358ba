//! `linear_cross_entropy`: the LM-head loss `cross_entropy(x·Wᵀ + b, targets)` and its gradients
//! in x, W and b without ever holding the N×V logits (`shaders/linear_cross_entropy.wgsl`).
//!
//! - **Forward, split-V:** threads own (a block of rows, a slice of the vocabulary), compute their
//!   logits with a register-blocked GEMM and fold them straight into per-row online
//!   log-sum-exp partials; a second kernel merges the partials of each row in slice order. Only
//!   `N × slices` partials are stored.
//! - **Backward, chunked recompute:** tiles of `rows × columns` logits are recomputed into one
//!   reusable scratch buffer (at most [`LinearCrossEntropy::max_scratch_bytes`]), turned into the
//!   gradient in place, and fed to the same GEMMs as [`Linear::backward`](crate::Linear::backward):
//!   dX accumulates over column tiles, dW and db over row chunks, always in the same order, so
//!   the gradients are bitwise reproducible.
//! - **Forward and backward together** ([`LinearCrossEntropy::forward_backward`]): when whole
//!   rows of logits fit the scratch, each chunk's logits are computed once and give the loss,
//!   the log-sum-exp and the gradient in one pass over the vocabulary.
//! - W larger than a storage binding is bound in V-shards of whole 64-row blocks.

use std::ops::Range;
use std::sync::Arc;

use super::budget::{exceeded, fits, largest_fitting};
use super::linear::{Gemm, LinearGrads, LinearKernel};
use super::reduce::{Finish, reduce};
use super::{Reduction, check_u32, is_software};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, gcd};
use crate::kernels::KernelId;
use crate::kernels::gemm::{GRAD_COLS, GRAD_ROWS, LCE_BLOCK, LCE_BLOCK_SMALL};
use crate::kernels::linear::{self as gemm_bindings, GradParams};
use crate::kernels::linear_cross_entropy::{
    BIAS, COUNTED, DENOMS, FLAGS, GRAD, LOSS, LSE, PARTS, Params, SCRATCH, STATUS, TARGETS, W, WEIGHT, WT, X,
    fold_trips, partials_trips, tile_grad_trips,
};
use crate::ops::cross_entropy::DEFAULT_IGNORE_INDEX;
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

const OP: &str = "linear_cross_entropy";

/// The default cap on the scratch buffer of logits (and on the forward's partials, unless a
/// software adapter's loop budget needs more slices): 4 MiB.
pub const DEFAULT_MAX_SCRATCH_BYTES: u64 = 4 << 20;

/// The fused LM-head loss: `cross_entropy(cap(x·Wᵀ + b), targets) + z_loss·logsumexp²`, as
/// PyTorch's `F.cross_entropy(F.linear(x, W, b), targets, ...)` with Liger Kernel's `softcap`
/// and `z_loss`, computed without materialising the `N × V` logits.
///
/// x is `(.., H)` (leading dims flattened to N rows), W `(V, H)`, b `(V)`, targets the leading
/// shape (class ids or `ignore_index`). With `z = cap(x·Wᵀ + b)`, where
/// `cap(z) = s·tanh(z / s)` when [`softcap`](Self::softcap) is `Some(s)`, and
/// `lse = logsumexp(z)`, each counted row's loss is
///
/// `(1 − ε)·w[t]·(lse − z[t]) + ε/V·Σ_c w[c]·(lse − z[c]) + λ·lse²`
///
/// (ε the label smoothing, w the class weights, λ the z-loss); ignored rows give 0. `Mean`
/// divides the cross-entropy part by `Σ w[t]` over counted rows (as PyTorch) and the z-loss part by
/// the number of counted rows (as Liger Kernel; the same thing without class weights); a mean
/// over no counted row is NaN. A row whose logits hold a NaN or an infinity has a NaN loss and
/// gradient. A target outside `0..V` that is not `ignore_index` makes reading any result fail
/// with [`Error::TargetOutOfRange`].
///
/// Extra GPU memory is the scratch (at most [`max_scratch_bytes`](Self::max_scratch_bytes),
/// 4 MiB by default) and a few values per row; results do not depend on the scratch size
/// beyond f32 rounding, and are bitwise reproducible for a given size on one adapter.
///
/// ```
/// use wgpu_loss::{Device, LinearCrossEntropy, cross_entropy, linear};
/// let dev = Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0, 0.5, -1.0], &[2, 2])?;
/// let w = dev.tensor(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
/// let t = dev.indices(&[2i64, 0], &[2])?;
/// let fused = LinearCrossEntropy::default().forward(&x, &w, None, &t)?;
/// let unfused = cross_entropy(&linear(&x, &w, None)?, &t)?;
/// assert!((fused.loss.item()? - unfused.item()?).abs() < 1e-6);
///
/// // a training step: the loss and dX, dW, db for an upstream gradient of 1
/// let one = dev.tensor(&[1.0], &[])?;
/// let (out, grads) = LinearCrossEntropy::default().forward_backward(&x, &w, None, &t, &one)?;
/// assert_eq!(grads.weight.shape(), &[3, 2]);
/// assert!((out.loss.item()? - unfused.item()?).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinearCrossEntropy {
    /// Per-class weights `(V)`.
    pub weight: Option<Tensor>,
    /// Targets equal to this are ignored (default −100).
    pub ignore_index: i64,
    /// How the per-row losses are reduced (default mean).
    pub reduction: Reduction,
    /// Label smoothing ε in [0, 1] (default 0).
    pub label_smoothing: f32,
    /// `s` of the logit softcap `s·tanh(z / s)` (default none).
    pub softcap: Option<f32>,
    /// λ of the z-loss `λ·logsumexp²` (default 0).
    pub z_loss: f32,
    /// The most bytes of scratch for recomputed logits and partials (default
    /// [`DEFAULT_MAX_SCRATCH_BYTES`]); the tiles shrink to fit, never below 64 columns of one
    /// aligned block of rows.
    pub max_scratch_bytes: u64,
    /// The GEMM that recomputes logit tiles.
    pub kernel: LinearKernel,
    /// Cut Cross-Entropy's gradient filter (default off): a block of 64 vocabulary columns of a
    /// backward tile whose every gradient is below `eps` times the upstream scale is skipped by
    /// the dX, dW and db GEMMs (as if those gradients were 0). CCE uses 2⁻²⁸ for f32
    /// ([`CCE_FILTER_EPS`]). It trades exactness for time when probabilities concentrate on few
    /// classes; the loss is unchanged.
    pub filter_eps: Option<f32>,
}

/// Cut Cross-Entropy's default filter threshold for f32 gradients: `f32::EPSILON / 32` = 2⁻²⁸.
pub const CCE_FILTER_EPS: f32 = f32::EPSILON / 32.0;

impl Default for LinearCrossEntropy {
    fn default() -> Self {
        LinearCrossEntropy {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            softcap: None,
            z_loss: 0.0,
            max_scratch_bytes: DEFAULT_MAX_SCRATCH_BYTES,
            kernel: LinearKernel::Auto,
            filter_eps: None,
        }
    }
}

/// The forward results of [`LinearCrossEntropy`].
#[derive(Clone, Debug)]
pub struct LinearCrossEntropyOutput {
    /// The loss: 0-d for `Mean` and `Sum`, the targets' shape for `None`.
    pub loss: Tensor,
    /// Each row's `logsumexp(z)` (the targets' shape): pass it to
    /// [`LinearCrossEntropy::backward`] to skip recomputing it.
    pub lse: Tensor,
}

impl LinearCrossEntropy {
    /// Sets per-class weights `(V)`, as [`CrossEntropy::weight`](crate::CrossEntropy::weight).
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets per-class weights `(V)`: the old name of [`LinearCrossEntropy::weight`].
    #[deprecated(since = "0.1.0", note = "renamed `weight`, as in `CrossEntropy` and `Nll`")]
    pub fn class_weight(self, weight: Tensor) -> Self {
        self.weight(weight)
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

    /// Sets label smoothing ε in [0, 1].
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Caps the logits with `s·tanh(z / s)`, `s > 0`.
    pub fn softcap(mut self, s: f32) -> Self {
        self.softcap = Some(s);
        self
    }

    /// Adds the z-loss `λ·logsumexp²`, `λ ≥ 0`.
    pub fn z_loss(mut self, lambda: f32) -> Self {
        self.z_loss = lambda;
        self
    }

    /// Caps the scratch memory.
    pub fn max_scratch_bytes(mut self, bytes: u64) -> Self {
        self.max_scratch_bytes = bytes;
        self
    }

    /// Chooses the GEMM that recomputes logit tiles.
    pub fn kernel(mut self, kernel: LinearKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Turns on the gradient filter with threshold `eps ≥ 0` (see
    /// [`filter_eps`](Self::filter_eps)).
    pub fn filter(mut self, eps: f32) -> Self {
        self.filter_eps = Some(eps);
        self
    }

    /// The loss and every row's log-sum-exp, from split-V partials (no logits stored).
    pub fn forward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
    ) -> Result<LinearCrossEntropyOutput> {
        x.device().op(OP, || {
            let job = Job::new(self, x, weight, bias, targets)?;
            let prep = job.prepare()?;
            job.forward(&prep)
        })
    }

    /// The gradients `dX`, `dW` and `db` for `grad_output` (one value, or the targets' shape for
    /// `Reduction::None`). `lse` is the forward's [`LinearCrossEntropyOutput::lse`] for these
    /// inputs; without it the forward's partials run again to find it.
    pub fn backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
        grad_output: &Tensor,
        lse: Option<&Tensor>,
    ) -> Result<LinearGrads> {
        x.device().op(OP, || {
            let job = Job::new(self, x, weight, bias, targets)?;
            job.check_grad(grad_output)?;
            if let Some(l) = lse {
                same_device(OP, job.dev, &[l.device()])?;
                if l.shape != job.lead {
                    return Err(Error::shape(OP, format!("lse must be {:?}, got {:?}", job.lead, l.shape)));
                }
            }
            let prep = job.prepare()?;
            let plan = job.tile_plan(false)?;
            let lse = match lse {
                Some(l) => l.clone(),
                None => job.forward(&prep)?.lse,
            };
            Ok(job.grads(&prep, grad_output, Some(&lse), plan)?.0)
        })
    }

    /// The forward and the backward of one training step. When whole rows of logits fit the
    /// scratch (at least one GEMM block of rows), each chunk's logits are computed once and give
    /// the loss, the log-sum-exp and the gradient; otherwise this is `forward` then `backward`.
    pub fn forward_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        targets: &Indices,
        grad_output: &Tensor,
    ) -> Result<(LinearCrossEntropyOutput, LinearGrads)> {
        x.device().op(OP, || {
            let job = Job::new(self, x, weight, bias, targets)?;
            job.check_grad(grad_output)?;
            let prep = job.prepare()?;
            let plan = job.tile_plan(true)?;
            if plan.whole_rows && job.n > 0 {
                let (grads, out) = job.grads(&prep, grad_output, None, plan)?;
                let out = out.ok_or_else(|| Error::Wgpu("the one-pass plan returned no loss".into()))?;
                return Ok((out, grads));
            }
            let out = job.forward(&prep)?;
            let (grads, _) = job.grads(&prep, grad_output, Some(&out.lse), plan)?;
            Ok((out, grads))
        })
    }
}

/// `LinearCrossEntropy::default().forward(x, weight, bias, targets)`'s mean loss: the fused
/// `F.cross_entropy(F.linear(x, weight, bias), targets)`.
pub fn linear_cross_entropy(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    targets: &Indices,
) -> Result<Tensor> {
    Ok(LinearCrossEntropy::default().forward(x, weight, bias, targets)?.loss)
}

/// Validated inputs and the layout of one call.
struct Job<'a> {
    o: &'a LinearCrossEntropy,
    dev: &'a Device,
    x: &'a Tensor,
    w: &'a Tensor,
    bias: Option<&'a Tensor>,
    targets: &'a Indices,
    n: usize,
    h: usize,
    v: usize,
    /// The targets' shape (and the loss's for `None`).
    lead: Vec<usize>,
    ignore: i32,
    /// Rows of W bound at once: a multiple of 64, so shard offsets are aligned.
    shard: usize,
    /// Rows of x between aligned offsets.
    row_step: usize,
    /// The most rows of x one binding holds (a multiple of `row_step`).
    x_rows: usize,
    budget: u64,
    software: bool,
    /// The longest k a gradient GEMM thread may loop over (within the loop budget).
    max_k: usize,
}

/// A backward tiling: chunks of `rows` rows × tiles of `cols` columns, or whole rows.
#[derive(Clone, Copy, Debug)]
struct TilePlan {
    rows: usize,
    cols: usize,
    whole_rows: bool,
}

/// What every pass needs: the target check and the denominators `[Σ w[t], counted rows, Σ w]`.
struct Prep {
    check: ValueCheck,
    denoms: Arc<Storage>,
}

fn round_down(a: usize, m: usize) -> usize {
    a / m * m
}

impl<'a> Job<'a> {
    fn new(
        o: &'a LinearCrossEntropy,
        x: &'a Tensor,
        w: &'a Tensor,
        bias: Option<&'a Tensor>,
        targets: &'a Indices,
    ) -> Result<Self> {
        let dev = x.device();
        let mut devices = vec![w.device(), targets.device()];
        devices.extend(bias.map(|b| b.device()));
        devices.extend(o.weight.as_ref().map(|c| c.device()));
        same_device(OP, dev, &devices)?;
        let Some((&h, lead)) = x.shape.split_last() else {
            return Err(Error::shape(OP, "x must be (.., H), got a 0-d tensor"));
        };
        let &[v, wh] = w.shape.as_slice() else {
            return Err(Error::shape(OP, format!("weight must be (V, H), got {:?}", w.shape)));
        };
        if wh != h {
            return Err(Error::shape(
                OP,
                format!("x {:?} has {h} features, weight {:?} expects {wh}", x.shape, w.shape),
            ));
        }
        if let Some(b) = bias
            && b.shape != [v]
        {
            return Err(Error::shape(OP, format!("bias must be ({v}), got {:?}", b.shape)));
        }
        if let Some(c) = &o.weight
            && c.shape != [v]
        {
            return Err(Error::shape(OP, format!("weight must be ({v}), got {:?}", c.shape)));
        }
        if targets.shape != lead {
            return Err(Error::shape(
                OP,
                format!("x {:?} needs targets {lead:?}, got {:?}", x.shape, targets.shape),
            ));
        }
        if !(0.0..=1.0).contains(&o.label_smoothing) {
            return Err(Error::invalid(
                OP,
                format!("label_smoothing must be in [0, 1], got {}", o.label_smoothing),
            ));
        }
        if let Some(s) = o.softcap
            && !(s.is_finite() && s > 0.0)
        {
            return Err(Error::invalid(OP, format!("softcap must be finite and > 0, got {s}")));
        }
        if !(o.z_loss.is_finite() && o.z_loss >= 0.0) {
            return Err(Error::invalid(OP, format!("z_loss must be finite and ≥ 0, got {}", o.z_loss)));
        }
        let ignore = i32::try_from(o.ignore_index).map_err(|_| {
            Error::invalid(OP, format!("ignore_index {} does not fit in i32", o.ignore_index))
        })?;
        let n = super::saturating_product(lead);
        if h == 0 {
            return Err(Error::Empty { op: OP, what: "zero input features" });
        }
        if v == 0 && n > 0 {
            return Err(Error::Empty { op: OP, what: "no classes" });
        }
        check_u32(OP, n)?;
        check_u32(OP, v)?;
        let limit = dev.binding_limit();
        let row_bytes = h as u64 * 4;
        let shard = round_down((limit / row_bytes).min(u32::MAX as u64) as usize, 64);
        let x_rows_max = (limit / row_bytes) as usize;
        let align = dev.limits().min_storage_buffer_offset_alignment as u64;
        let row_step = (align / gcd(row_bytes, align)) as usize;
        let x_rows = round_down(x_rows_max, row_step);
        if shard == 0 || x_rows == 0 {
            return Err(Error::limit("64 rows of W in one binding", 64 * row_bytes, limit));
        }
        if let Some(eps) = o.filter_eps
            && !(eps.is_finite() && eps >= 0.0)
        {
            return Err(Error::invalid(OP, format!("the filter's eps must be finite and ≥ 0, got {eps}")));
        }
        if o.max_scratch_bytes == 0 {
            return Err(Error::invalid(OP, "max_scratch_bytes must be > 0"));
        }
        Ok(Job {
            o,
            dev,
            x,
            w,
            bias,
            targets,
            n,
            h,
            v,
            lead: lead.to_vec(),
            ignore,
            shard,
            row_step,
            x_rows,
            budget: o.max_scratch_bytes.min(limit),
            software: is_software(dev),
            max_k: crate::ops::linear::grad_max_k(dev),
        })
    }

    fn check_grad(&self, grad: &Tensor) -> Result<()> {
        same_device(OP, self.dev, &[grad.device()])?;
        match self.o.reduction {
            Reduction::None if grad.shape != self.lead => Err(Error::shape(
                OP,
                format!("grad_output must have the loss's shape {:?}, got {:?}", self.lead, grad.shape),
            )),
            Reduction::Mean | Reduction::Sum if grad.numel() != 1 => Err(Error::shape(
                OP,
                format!("grad_output of a reduced loss must hold one value, got {:?}", grad.shape),
            )),
            _ => Ok(()),
        }
    }

    /// The uniform's fields that every entry shares.
    fn params(&self) -> Params {
        Params {
            k: self.h as u32,
            has_bias: self.bias.is_some() as u32,
            classes: self.v as u32,
            has_weight: self.o.weight.is_some() as u32,
            ignore_index: self.ignore,
            smoothing: self.o.label_smoothing,
            softcap: self.o.softcap.unwrap_or(0.0),
            z_loss: self.o.z_loss,
            mean: (self.o.reduction == Reduction::Mean) as u32,
            ..Params::default()
        }
    }

    fn dummy(&self) -> &'a wgpu::Buffer {
        &self.dev.inner.dummy
    }

    fn bias_buf(&self) -> &'a wgpu::Buffer {
        self.bias.map_or(self.dummy(), |b| b.storage.buffer())
    }

    fn weight_bind(&self) -> Bind<'a> {
        Bind::all(WEIGHT, self.o.weight.as_ref().map_or(self.dummy(), |c| c.storage.buffer()))
    }

    fn checks(&self, prep: &Prep) -> Vec<ValueCheck> {
        let mut checks = self.x.checks.clone();
        checks.extend(self.w.checks.iter().cloned());
        checks.extend(self.bias.iter().flat_map(|b| b.checks.iter().cloned()));
        checks.extend(self.o.weight.iter().flat_map(|c| c.checks.iter().cloned()));
        checks.push(prep.check.clone());
        checks
    }

    /// The column ranges of W's shards that `cols` covers, each at most `max_k` long (the k of
    /// the dX GEMM).
    fn pieces(&self, cols: &Range<usize>) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut c = cols.start;
        while c < cols.end {
            let end = ((c / self.shard + 1) * self.shard).min(cols.end).min(c + self.max_k);
            out.push(c..end);
            c = end;
        }
        out
    }

    /// The target pass (checks ids, per-row w[t] and counted) and the denominators.
    fn prepare(&self) -> Result<Prep> {
        let dev = self.dev;
        let n = self.n;
        let check = ValueCheck::new(OP, self.targets, self.v, self.o.ignore_index)?;
        let wt = Storage::alloc(dev, n as u64 * 4)?;
        let counted = Storage::alloc(dev, n as u64 * 4)?;
        let pipe = KernelId::LinearCrossEntropy.pipeline(dev, "target_pass", &[])?;
        let params = Params { m: n as u32, ..self.params() };
        dispatch(
            dev,
            &pipe,
            bytemuck::bytes_of(&params),
            &[
                self.weight_bind(),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::range(STATUS, check.status.buffer(), 0, 4),
                Bind::all(WT, wt.buffer()),
                Bind::all(COUNTED, counted.buffer()),
            ],
            (n as u64).div_ceil(64),
            &[],
        )?;
        let weight_sum = reduce(dev, &wt, None, n, Finish::Sum, 0.0, Vec::new())?;
        let count = reduce(dev, &counted, None, n, Finish::Sum, 0.0, Vec::new())?;
        let total = match &self.o.weight {
            Some(c) => Some(reduce(dev, &c.storage, None, self.v, Finish::Sum, 0.0, Vec::new())?),
            None => None,
        };
        let denoms = Storage::alloc(dev, 16)?;
        dev.record(|enc| {
            enc.clear_buffer(denoms.buffer(), 0, Some(16));
            enc.copy_buffer_to_buffer(weight_sum.storage.buffer(), 0, denoms.buffer(), 0, 4);
            enc.copy_buffer_to_buffer(count.storage.buffer(), 0, denoms.buffer(), 4, 4);
            if let Some(t) = &total {
                enc.copy_buffer_to_buffer(t.storage.buffer(), 0, denoms.buffer(), 8, 4);
            }
        });
        Ok(Prep { check, denoms })
    }

    /// The per-row losses (already divided for `Mean`) reduced as asked.
    fn finish_loss(
        &self,
        prep: &Prep,
        rows: Arc<Storage>,
        lse: Arc<Storage>,
    ) -> Result<LinearCrossEntropyOutput> {
        let checks = self.checks(prep);
        let n = self.n;
        let loss = match self.o.reduction {
            Reduction::None => Tensor { storage: rows, shape: self.lead.clone(), checks: checks.clone() },
            Reduction::Sum => reduce(self.dev, &rows, None, n, Finish::Sum, 0.0, checks.clone())?,
            // Rows hold their share of the mean already; no rows is a mean over nothing.
            Reduction::Mean if n == 0 => {
                reduce(self.dev, &rows, None, 0, Finish::MeanCount, 0.0, checks.clone())?
            }
            Reduction::Mean => reduce(self.dev, &rows, None, n, Finish::Sum, 0.0, checks.clone())?,
        };
        Ok(LinearCrossEntropyOutput { loss, lse: Tensor { storage: lse, shape: self.lead.clone(), checks } })
    }

    /// Split-V forward: partials per (row, slice), then the fixed-order fold.
    fn forward(&self, prep: &Prep) -> Result<LinearCrossEntropyOutput> {
        let dev = self.dev;
        let (n, v, h) = (self.n, self.v, self.h);
        let rows = Storage::alloc(dev, n as u64 * 4)?;
        let lse = Storage::alloc(dev, n as u64 * 4)?;
        if n == 0 {
            return self.finish_loss(prep, rows, lse);
        }
        let ((block_rows, block_cols), entry) =
            if self.software { (LCE_BLOCK, "partials") } else { (LCE_BLOCK_SMALL, "partials_small") };
        let (block_rows, block_cols) = (block_rows as usize, block_cols as usize);
        // Enough threads to fill the adapter, no more partials than the scratch budget.
        let row_blocks = n.div_ceil(block_rows);
        let threads: usize = if self.software { 512 } else { 1 << 17 };
        let by_memory = (self.budget / (16 * n as u64)).max(1) as usize;
        let slices = threads.div_ceil(row_blocks).min(v.div_ceil(block_cols)).min(by_memory).max(1);
        let slice_w = v.div_ceil(slices).div_ceil(block_cols) * block_cols;
        // A thread loops (k + 2) times per block of columns: keep it within the loop budget
        // (which outranks the memory cap: partials are 16 bytes per row and slice).
        let h64 = h as u64;
        let steps = largest_fitting(dev, 1, u32::MAX as u64, |steps| partials_trips(steps, h64))
            .ok_or_else(|| exceeded(dev, OP, &self.x.shape, partials_trips(1, h64)))?;
        let slice_w = slice_w.min((steps as usize).saturating_mul(block_cols));
        let shards: Vec<Range<usize>> = self.pieces(&(0..v));
        let per_shard: Vec<usize> = shards.iter().map(|s| s.len().div_ceil(slice_w)).collect();
        let stride: usize = per_shard.iter().sum();
        check_u32(OP, n * stride * 4)?;
        let parts = Storage::alloc(dev, (n * stride) as u64 * 16)?;
        let pipe = KernelId::LinearCrossEntropy.pipeline(dev, entry, &[])?;
        let steps_run = (slice_w / block_cols) as u64;
        if !fits(dev, fold_trips(stride as u64)) {
            return Err(exceeded(dev, OP, &self.x.shape, fold_trips(stride as u64)));
        }
        for r0 in (0..n).step_by(self.x_rows) {
            let rn = self.x_rows.min(n - r0);
            let mut part_base = 0;
            for (shard, &sl) in shards.iter().zip(&per_shard) {
                let params = Params {
                    m: rn as u32,
                    n: shard.len() as u32,
                    row_base: r0 as u32,
                    v_base: shard.start as u32,
                    slices: sl as u32,
                    slice_w: slice_w as u32,
                    part_stride: stride as u32,
                    part_base: part_base as u32,
                    ..self.params()
                };
                part_base += sl;
                dispatch(
                    dev,
                    &pipe,
                    bytemuck::bytes_of(&params),
                    &[
                        Bind::range(X, self.x.storage.buffer(), r0 as u64 * h64 * 4, rn as u64 * h64 * 4),
                        Bind::range(
                            W,
                            self.w.storage.buffer(),
                            shard.start as u64 * h64 * 4,
                            shard.len() as u64 * h64 * 4,
                        ),
                        Bind::all(BIAS, self.bias_buf()),
                        self.weight_bind(),
                        Bind::all(TARGETS, self.targets.storage.buffer()),
                        Bind::all(PARTS, parts.buffer()),
                    ],
                    (rn.div_ceil(block_rows) * sl).div_ceil(64) as u64,
                    &[steps_run, h64],
                )?;
            }
        }
        let fold = KernelId::LinearCrossEntropy.pipeline(dev, "fold", &[])?;
        let params = Params { m: n as u32, part_stride: stride as u32, ..self.params() };
        dispatch(
            dev,
            &fold,
            bytemuck::bytes_of(&params),
            &[
                self.weight_bind(),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::all(PARTS, parts.buffer()),
                Bind::all(LOSS, rows.buffer()),
                Bind::all(LSE, lse.buffer()),
                Bind::all(DENOMS, prep.denoms.buffer()),
            ],
            (n as u64).div_ceil(64),
            &[stride as u64],
        )?;
        self.finish_loss(prep, rows, lse)
    }

    /// The backward tiling for the scratch budget. With `whole_rows` asked, whole rows of
    /// logits if at least one GEMM block of rows fits; else `rows × cols` tiles inside shards.
    fn tile_plan(&self, whole_rows: bool) -> Result<TilePlan> {
        let floats = (self.budget / 4) as usize;
        let step = self.row_step;
        let n_up = self.n.div_ceil(step).max(1) * step;
        let gemm_rows = (if self.software { 32 } else { 64 }).max(step).div_ceil(step) * step;
        if whole_rows && self.v > 0 {
            let rows = round_down(floats / self.v, step)
                .min(self.x_rows)
                .min(n_up)
                .min(round_down(self.max_k, step));
            let trips_fit = fits(self.dev, tile_grad_trips(self.v as u64, true, self.o.filter_eps.is_some()));
            if rows > 0 && rows >= gemm_rows.min(n_up) && trips_fit {
                return Ok(TilePlan { rows, cols: self.v, whole_rows: true });
            }
        }
        let max_cols = self.shard.min(self.v.div_ceil(64).max(1) * 64);
        let by_budget = round_down(floats / 64, step);
        if by_budget == 0 {
            return Err(Error::limit(
                "linear_cross_entropy's scratch (max_scratch_bytes) for 64 columns of aligned rows",
                (step * 64 * 4) as u64,
                self.budget,
            ));
        }
        let rows = n_up
            .min(self.x_rows)
            .min(by_budget)
            .min(round_down((floats / max_cols.min(1024)).max(step), step))
            .min(round_down(self.max_k, step).max(step));
        let filter = self.o.filter_eps.is_some();
        let by_trips = largest_fitting(self.dev, 64, max_cols as u64, |c| tile_grad_trips(c, false, filter))
            .ok_or_else(|| exceeded(self.dev, OP, &self.x.shape, tile_grad_trips(64, false, filter)))?;
        let cols = round_down(floats / rows, 64).min(max_cols).min(by_trips as usize);
        Ok(TilePlan { rows, cols, whole_rows: false })
    }

    /// The column tiles of a plan: the whole vocabulary, or `cols`-wide tiles inside each shard.
    fn tiles(&self, plan: TilePlan) -> Vec<Range<usize>> {
        if plan.whole_rows {
            return std::iter::once(0..self.v).collect();
        }
        let mut out = Vec::new();
        for shard in self.pieces(&(0..self.v)) {
            for c in shard.clone().step_by(plan.cols) {
                out.push(c..(c + plan.cols).min(shard.end));
            }
        }
        out
    }

    /// dX, dW, db by tiles of recomputed logits; with `lse` absent (whole rows) also the loss.
    fn grads(
        &self,
        prep: &Prep,
        grad: &Tensor,
        lse: Option<&Tensor>,
        plan: TilePlan,
    ) -> Result<(LinearGrads, Option<LinearCrossEntropyOutput>)> {
        let dev = self.dev;
        let (n, v, h) = (self.n, self.v, self.h);
        let h64 = h as u64;
        let mut checks = self.checks(prep);
        checks.extend(grad.checks.iter().cloned());
        let dx = Tensor::empty(dev, self.x.shape.clone())?;
        let dw = Tensor::empty(dev, self.w.shape.clone())?;
        let db = Tensor::empty(dev, vec![v])?;
        if n == 0 || v == 0 {
            let grads = LinearGrads::with_checks(dx, dw, db, &checks);
            grads.record_zero();
            return Ok((grads, None));
        }
        let whole = lse.is_none();
        let (loss_rows, lse_buf) = match lse {
            Some(l) => (Storage::alloc(dev, 4)?, l.storage.clone()),
            None => (Storage::alloc(dev, n as u64 * 4)?, Storage::alloc(dev, n as u64 * 4)?),
        };
        let scratch = Storage::alloc(dev, (plan.rows * plan.cols) as u64 * 4)?;
        let filter = self.o.filter_eps.is_some();
        let tile_grad = KernelId::LinearCrossEntropy.pipeline(
            dev,
            "tile_grad",
            &[("HAVE_LSE", (!whole) as u8 as f64), ("FILTER", filter as u8 as f64)],
        )?;
        let flags = Storage::alloc(dev, plan.cols.div_ceil(64) as u64 * 4)?;
        let grad_input = KernelId::LinearGradInput.pipeline(dev, "gemm", &[])?;
        let grad_weight = KernelId::LinearGradWeight.pipeline(dev, "gemm", &[])?;
        let colsum = KernelId::LinearGradWeight.pipeline(dev, "colsum", &[])?;
        let (gm, gn) = (8 * GRAD_ROWS as u64, 8 * GRAD_COLS as u64);
        let g_mode = (self.o.reduction != Reduction::None) as u32;
        let tiles = self.tiles(plan);
        for (chunk, r0) in (0..n).step_by(plan.rows).enumerate() {
            let rn = plan.rows.min(n - r0);
            let rn64 = rn as u64;
            let x_rows =
                Bind::range(gemm_bindings::B, self.x.storage.buffer(), r0 as u64 * h64 * 4, rn64 * h64 * 4);
            for (ti, tile) in tiles.iter().enumerate() {
                let tl = tile.len() as u64;
                let tile_bytes = rn64 * tl * 4;
                let pieces = self.pieces(tile);
                // The tile's logits, shard by shard.
                for p in &pieces {
                    let pn = p.len() as u64;
                    let bias = match self.bias {
                        Some(b) => Bind::range(
                            gemm_bindings::BIAS,
                            b.storage.buffer(),
                            tile.start as u64 * 4,
                            tl * 4,
                        ),
                        None => Bind::all(gemm_bindings::BIAS, self.dummy()),
                    };
                    Gemm {
                        x: self.x.storage.buffer(),
                        x_offset: r0 as u64 * h64 * 4,
                        w: self.w.storage.buffer(),
                        w_offset: p.start as u64 * h64 * 4,
                        bias,
                        has_bias: self.bias.is_some(),
                        y: Bind::range(gemm_bindings::Y, scratch.buffer(), 0, tile_bytes),
                        m: rn64,
                        n: pn,
                        k: h64,
                        ldy: tl,
                        n_base: (p.start - tile.start) as u64,
                    }
                    .record(dev, self.o.kernel, OP, &self.x.shape)?;
                }
                // Logits to gradient in place (and, for whole rows, the loss and lse first).
                if filter {
                    dev.record(|enc| enc.clear_buffer(flags.buffer(), 0, Some(tl.div_ceil(64) * 4)));
                }
                let params = Params {
                    filter_eps: self.o.filter_eps.unwrap_or(0.0),
                    m: rn as u32,
                    n: tl as u32,
                    row_base: r0 as u32,
                    v_base: tile.start as u32,
                    g_mode,
                    ld: tl as u32,
                    ..self.params()
                };
                dispatch(
                    dev,
                    &tile_grad,
                    bytemuck::bytes_of(&params),
                    &[
                        self.weight_bind(),
                        Bind::all(TARGETS, self.targets.storage.buffer()),
                        Bind::all(LOSS, loss_rows.buffer()),
                        Bind::all(LSE, lse_buf.buffer()),
                        Bind::all(DENOMS, prep.denoms.buffer()),
                        Bind::all(GRAD, grad.storage.buffer()),
                        Bind::range(SCRATCH, scratch.buffer(), 0, tile_bytes),
                        Bind::all(FLAGS, flags.buffer()),
                    ],
                    rn64,
                    &[tl, whole as u64, filter as u64],
                )?;
                for (pi, p) in pieces.iter().enumerate() {
                    let pn = p.len() as u64;
                    let off = (p.start - tile.start) as u64 * 4;
                    let g_tile = Bind::range(gemm_bindings::A, scratch.buffer(), off, tile_bytes - off);
                    let w_rows = Bind::range(
                        gemm_bindings::B,
                        self.w.storage.buffer(),
                        p.start as u64 * h64 * 4,
                        pn * h64 * 4,
                    );
                    // dX (+)= G·W over the tiles (and shards) in order.
                    let params = GradParams {
                        m: rn as u32,
                        n: h as u32,
                        k: pn as u32,
                        lda: tl as u32,
                        ldb: h as u32,
                        ldc: h as u32,
                        tiles_n: h64.div_ceil(gn) as u32,
                        accumulate: (ti > 0 || pi > 0) as u32,
                        filter: filter as u32,
                        flag_base: (p.start - tile.start) as u32,
                        _pad: [0; 2],
                    };
                    dispatch(
                        dev,
                        &grad_input,
                        bytemuck::bytes_of(&params),
                        &[
                            g_tile,
                            w_rows,
                            Bind::range(
                                gemm_bindings::C,
                                dx.storage.buffer(),
                                r0 as u64 * h64 * 4,
                                rn64 * h64 * 4,
                            ),
                            Bind::all(gemm_bindings::FLAGS, flags.buffer()),
                        ],
                        rn64.div_ceil(gm) * h64.div_ceil(gn),
                        &[pn],
                    )?;
                    // dW (+)= Gᵀ·X and db (+)= Σ_rows G over the row chunks in order.
                    let params = GradParams {
                        m: pn as u32,
                        n: h as u32,
                        k: rn as u32,
                        lda: tl as u32,
                        ldb: h as u32,
                        ldc: h as u32,
                        tiles_n: h64.div_ceil(gn) as u32,
                        accumulate: (chunk > 0) as u32,
                        filter: filter as u32,
                        flag_base: (p.start - tile.start) as u32,
                        _pad: [0; 2],
                    };
                    dispatch(
                        dev,
                        &grad_weight,
                        bytemuck::bytes_of(&params),
                        &[
                            g_tile,
                            x_rows,
                            Bind::range(
                                gemm_bindings::C,
                                dw.storage.buffer(),
                                p.start as u64 * h64 * 4,
                                pn * h64 * 4,
                            ),
                            Bind::all(gemm_bindings::FLAGS, flags.buffer()),
                        ],
                        pn.div_ceil(gm) * h64.div_ceil(gn),
                        &[rn64],
                    )?;
                    let params = GradParams { m: 1, n: pn as u32, ldc: pn as u32, tiles_n: 1, ..params };
                    dispatch(
                        dev,
                        &colsum,
                        bytemuck::bytes_of(&params),
                        &[
                            g_tile,
                            Bind::range(gemm_bindings::C, db.storage.buffer(), p.start as u64 * 4, pn * 4),
                            Bind::all(gemm_bindings::FLAGS, flags.buffer()),
                        ],
                        pn.div_ceil(64),
                        &[rn64],
                    )?;
                }
            }
        }
        let out = if whole { Some(self.finish_loss(prep, loss_rows, lse_buf)?) } else { None };
        Ok((LinearGrads::with_checks(dx, dw, db, &checks), out))
    }
}
