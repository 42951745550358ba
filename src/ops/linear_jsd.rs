//! `linear_jsd`: the distillation loss of two LM heads, `jsd(x_s·W_sᵀ + b_s, x_t·W_tᵀ + b_t)`,
//! and its gradients in the student's x, W and b, without the N×V logits of either head.
//!
//! Rows go in chunks: each chunk's student and teacher logits are computed into two scratch
//! buffers (whole rows of the vocabulary, a register-blocked GEMM per shard of W), the `jsd`
//! kernel takes each row's loss (and, for a backward, its gradient into a third scratch buffer),
//! and the gradient GEMMs of `linear` add the chunk's share into dX, dW and db in a fixed order.
//! Extra memory is the three scratch buffers (at most [`LinearJsd::max_scratch_bytes`]) and a
//! few values per row; the gradients are bitwise reproducible for a given scratch size.

use std::ops::Range;

use super::divergence::Jsd;
use super::linear::{Gemm, GradGemms, GradPiece, LinearGrads, LinearKernel, block_step, grad_max_k};
use super::reduce::{Finish, reduce};
use super::{Outputs, Reduction, check_u32};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, gcd};
use crate::kernels::linear::{BIAS, Y};
use crate::ops::class_rows::DEFAULT_IGNORE_INDEX;
use crate::ops::convert::f32_operand;
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

const OP: &str = "linear_jsd";

/// The default cap on [`LinearJsd`]'s three scratch buffers: 32 MiB. Two heads' logits and
/// their gradient need three buffers of whole rows, and chunks of at least one GEMM block of
/// rows (32 on software adapters) keep the GEMMs at their speed; at V = 32 000 this is 64 rows.
pub const DEFAULT_JSD_SCRATCH_BYTES: u64 = 32 << 20;

/// One LM head: hidden states x `(.., H)`, the weight W `(V, H)` and an optional bias `(V)`,
/// whose logits are `x·Wᵀ + b`.
#[derive(Clone, Copy, Debug)]
pub struct LinearHead<'a> {
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
}

/// The fused distillation loss of a student and a teacher LM head: [`Jsd`] (Liger Kernel's
/// generalised JSD, with β, the temperature, labels and `ignore_index`) of the student's logits
/// `x_s·W_sᵀ + b_s` against the teacher's `x_t·W_tᵀ + b_t`, as Liger Kernel's
/// `LigerFusedLinearJSD`, computed without storing the `N × V` logits of either. The two heads
/// share the vocabulary V and the leading shape of x; their hidden sizes may differ. Gradients
/// are the student's (x_s, W_s, b_s); the teacher is a constant.
///
/// ```
/// use wgpu_loss::{Device, Jsd, LinearHead, LinearJsd, linear};
/// let dev = Device::new()?;
/// let xs = dev.tensor(&[1.0, 2.0, 0.5, -1.0], &[2, 2])?;
/// let ws = dev.tensor(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
/// let xt = dev.tensor(&[0.5, 1.0, 1.5, 2.0, 2.5, 3.0], &[2, 3])?;
/// let wt = dev.tensor(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.5, 0.0], &[3, 3])?;
/// let student = LinearHead { x: &xs, weight: &ws, bias: None };
/// let teacher = LinearHead { x: &xt, weight: &wt, bias: None };
/// let fused = LinearJsd::default().forward(student, teacher, None)?.item()?;
/// let unfused = Jsd::default().forward(&linear(&xs, &ws, None)?, &linear(&xt, &wt, None)?, None)?.item()?;
/// assert!((fused - unfused).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinearJsd {
    /// β ∈ [0, 1] (default 0.5): 0 is the forward KL(teacher ‖ student), 1 the reverse KL.
    pub beta: f32,
    /// The temperature T > 0 both heads' logits are divided by (default 1).
    pub temperature: f32,
    /// Rows whose label equals this do not count (default −100).
    pub ignore_index: i64,
    /// How the row losses are reduced (default mean over the counted rows: `batchmean`).
    pub reduction: Reduction,
    /// The most bytes of the three scratch buffers of whole rows of logits (default
    /// [`DEFAULT_JSD_SCRATCH_BYTES`], 32 MiB: 64 rows of a 32 000 vocabulary); chunks of rows
    /// shrink to fit, never below one aligned step of rows. Chunks of fewer rows than a block
    /// of the logit GEMM (32 on software adapters, 64 on GPUs) run the GEMM at a fraction of
    /// its speed.
    pub max_scratch_bytes: u64,
    /// The GEMM that computes the logits. `Auto` takes the register-blocked GEMM on software
    /// adapters (W's shards are bound, not copied into textures, so the memory stays within the
    /// scratch cap); `LinearKernel::Staged` is an [`Error::InvalidArgument`] here.
    pub kernel: LinearKernel,
    /// The element type of the gradients: dX in x_s's, dW and db in W_s's (default), or f32.
    pub outputs: Outputs,
}

impl Default for LinearJsd {
    fn default() -> Self {
        LinearJsd {
            beta: 0.5,
            temperature: 1.0,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            max_scratch_bytes: DEFAULT_JSD_SCRATCH_BYTES,
            kernel: LinearKernel::Auto,
            outputs: Outputs::AsInputs,
        }
    }
}

impl LinearJsd {
    /// The loss: one value per row for [`Reduction::None`] (the leading shape), else a scalar.
    pub fn forward(
        &self,
        student: LinearHead<'_>,
        teacher: LinearHead<'_>,
        labels: Option<&Indices>,
    ) -> Result<Tensor> {
        student.x.device().op(OP, || {
            let (s, t) = (Operands::new(student)?, Operands::new(teacher)?);
            Job::new(self, s.head(), t.head(), labels)?.run(None).map(|(loss, _)| loss)
        })
    }

    /// The loss and the student's gradients for the upstream gradient `grad_output` of the
    /// loss (one value, or the leading shape for [`Reduction::None`]), in one pass over the
    /// vocabulary.
    pub fn forward_backward(
        &self,
        student: LinearHead<'_>,
        teacher: LinearHead<'_>,
        labels: Option<&Indices>,
        grad_output: &Tensor,
    ) -> Result<(Tensor, LinearGrads)> {
        student.x.device().op(OP, || {
            let (s, t) = (Operands::new(student)?, Operands::new(teacher)?);
            let job = Job::new(self, s.head(), t.head(), labels)?;
            job.check_grad(grad_output)?;
            let grad = f32_operand(grad_output)?;
            let (loss, grads) = job.run(Some(&grad))?;
            let grads = grads.ok_or_else(|| Error::Wgpu("the backward returned no gradient".into()))?;
            Ok((loss, grads.typed(student.x.dtype, student.weight.dtype, self.outputs)?))
        })
    }

    /// The student's gradients `(dX, dW, db)` for `grad_output`: [`forward_backward`]'s.
    ///
    /// [`forward_backward`]: Self::forward_backward
    pub fn backward(
        &self,
        student: LinearHead<'_>,
        teacher: LinearHead<'_>,
        labels: Option<&Indices>,
        grad_output: &Tensor,
    ) -> Result<LinearGrads> {
        Ok(self.forward_backward(student, teacher, labels, grad_output)?.1)
    }

    fn jsd(&self) -> Jsd {
        Jsd {
            beta: self.beta,
            temperature: self.temperature,
            ignore_index: self.ignore_index,
            reduction: self.reduction,
            ..Jsd::default()
        }
    }
}

/// A head with its bias widened to f32 (the GEMMs read a bias as f32).
struct Operands<'a> {
    head: LinearHead<'a>,
    bias: Option<Tensor>,
}

impl<'a> Operands<'a> {
    fn new(head: LinearHead<'a>) -> Result<Operands<'a>> {
        Ok(Operands { head, bias: head.bias.map(f32_operand).transpose()? })
    }

    fn head(&self) -> LinearHead<'_> {
        LinearHead { bias: self.bias.as_ref(), ..self.head }
    }
}

/// A validated call and its chunking.
struct Job<'a> {
    o: &'a LinearJsd,
    jsd: Jsd,
    dev: &'a Device,
    s: LinearHead<'a>,
    t: LinearHead<'a>,
    labels: Option<&'a Indices>,
    n: usize,
    v: usize,
    lead: Vec<usize>,
    /// Rows of a chunk: whole rows of the vocabulary in each scratch buffer.
    chunk: usize,
    /// W's rows bound at once (both heads), and the longest k of a gradient GEMM.
    shard: usize,
    max_k: usize,
}

impl<'a> Job<'a> {
    fn new(
        o: &'a LinearJsd,
        s: LinearHead<'a>,
        t: LinearHead<'a>,
        labels: Option<&'a Indices>,
    ) -> Result<Job<'a>> {
        let dev = s.x.device();
        let mut others = vec![s.weight.device(), t.x.device(), t.weight.device()];
        others.extend(s.bias.iter().chain(t.bias.iter()).map(|b| b.device()));
        others.extend(labels.map(|l| l.device()));
        same_device(OP, dev, &others)?;
        let jsd = o.jsd();
        jsd.check()?;
        let (hs, v, lead) = head_shape(s, "the student")?;
        let (ht, vt, lead_t) = head_shape(t, "the teacher")?;
        if vt != v || lead_t != lead {
            return Err(Error::shape(
                OP,
                format!(
                    "the heads must share the rows and the vocabulary: student x {:?}, W {:?}; teacher x {:?}, W {:?}",
                    s.x.shape, s.weight.shape, t.x.shape, t.weight.shape
                ),
            ));
        }
        if let Some(l) = labels
            && l.shape != lead
        {
            return Err(Error::shape(
                OP,
                format!("x {:?} needs labels {lead:?}, got {:?}", s.x.shape, l.shape),
            ));
        }
        i32::try_from(o.ignore_index).map_err(|_| {
            Error::invalid(OP, format!("ignore_index {} does not fit in i32", o.ignore_index))
        })?;
        if o.kernel == LinearKernel::Staged {
            return Err(Error::invalid(
                OP,
                "LinearJsd does not run the texture-fed GEMMs (LinearKernel::Staged)",
            ));
        }
        let n = crate::ops::saturating_product(lead);
        if hs == 0 || ht == 0 {
            return Err(Error::Empty { op: OP, what: "zero input features" });
        }
        if v == 0 && n > 0 {
            return Err(Error::Empty { op: OP, what: "no classes" });
        }
        check_u32(OP, n)?;
        check_u32(OP, n.saturating_mul(v))?;
        let limit = dev.binding_limit();
        // W's shards and the gradient GEMMs' pieces start on whole blocks of rows.
        let block = block_step(&[s.weight.dtype, t.weight.dtype]);
        let widest = s.weight.dtype.bytes(hs as u64).max(t.weight.dtype.bytes(ht as u64));
        let shard = ((limit / widest).min(u32::MAX as u64) as usize) / block * block;
        // Chunks of x's rows start where x_s, x_t (their types) and dX (f32) are aligned.
        let align = dev.limits().min_storage_buffer_offset_alignment as u64;
        let step_for = |bytes: u64| (align / gcd(bytes, align)) as usize;
        let row_step = [s.x.dtype.bytes(hs as u64), t.x.dtype.bytes(ht as u64), hs as u64 * 4]
            .into_iter()
            .map(step_for)
            .max()
            .unwrap_or(1);
        let x_bytes = s.x.dtype.bytes(hs as u64).max(hs as u64 * 4).max(t.x.dtype.bytes(ht as u64));
        let x_rows = (limit / x_bytes) as usize;
        let max_k = grad_max_k(dev, block);
        let by_scratch = (o.max_scratch_bytes.min(limit) / (v.max(1) as u64 * 4 * 3)) as usize;
        let fit = by_scratch.min(x_rows).min(max_k).min(n.max(1).div_ceil(row_step) * row_step);
        // Whole blocks of the logit GEMM's rows where they fit (a chunk of 10 rows runs the
        // 32-row blocks of the software adapters' GEMM at a third of their speed).
        let gemm_rows = (if crate::ops::is_software(dev) { 32 } else { 64 }).max(row_step);
        let chunk = if fit >= gemm_rows { fit / gemm_rows * gemm_rows } else { fit / row_step * row_step };
        // Each scratch buffer holds whole rows of logits: at least `row_step` of them, within a
        // binding, and the three within the caller's cap.
        if shard == 0 {
            return Err(Error::limit(
                format!("{OP}: {block} rows of W in one binding"),
                block as u64 * widest,
                limit,
            ));
        }
        let least = row_step as u64 * v as u64 * 4;
        if least > limit || chunk == 0 && o.max_scratch_bytes >= 3 * least {
            return Err(Error::limit(
                format!("{OP}: a scratch buffer of {row_step} rows of logits"),
                least,
                limit,
            ));
        }
        if chunk == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "max_scratch_bytes {} is below three scratch buffers of {row_step} rows of logits, {} bytes",
                    o.max_scratch_bytes,
                    3 * least
                ),
            ));
        }
        let per_row = n as u64 * 4;
        if per_row > limit {
            return Err(Error::limit(
                format!("{OP}: the losses of every row in one binding"),
                per_row,
                limit,
            ));
        }
        Ok(Job { o, jsd, dev, s, t, labels, n, v, lead: lead.to_vec(), chunk, shard, max_k })
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

    fn checks(&self) -> Vec<ValueCheck> {
        let heads = [self.s, self.t];
        let tensors = heads.iter().flat_map(|h| [Some(h.x), Some(h.weight), h.bias]).flatten();
        tensors.flat_map(|t| t.checks.iter().cloned()).collect()
    }

    /// The column ranges of W's shards, each at most `max_k` long (the k of the dX GEMM).
    fn pieces(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut c = 0;
        while c < self.v {
            let end = ((c / self.shard + 1) * self.shard).min(self.v).min(c + self.max_k);
            out.push(c..end);
            c = end;
        }
        out
    }

    /// The loss, and with an upstream gradient the student's f32 gradients.
    fn run(&self, grad: Option<&Tensor>) -> Result<(Tensor, Option<LinearGrads>)> {
        let dev = self.dev;
        let (n, v) = (self.n, self.v);
        let mut checks = self.checks();
        checks.extend(grad.iter().flat_map(|g| g.checks.iter().cloned()));
        let grads = match grad {
            Some(_) => Some(LinearGrads::with_checks(
                Tensor::empty(dev, self.s.x.shape.clone())?,
                Tensor::empty(dev, self.s.weight.shape.clone())?,
                Tensor::empty(dev, vec![v])?,
                &checks,
            )),
            None => None,
        };
        let loss = Storage::alloc(dev, n.max(1) as u64 * 4)?;
        let counted = Storage::alloc(dev, n.max(1) as u64 * 4)?;
        if n == 0 || v == 0 {
            if let Some(g) = &grads {
                g.record_zero();
            }
            return Ok((self.reduced(&loss, &counted, 0, checks)?, grads));
        }
        let denom = match (grad, self.labels, self.o.reduction) {
            (Some(_), Some(l), Reduction::Mean) => Some(self.jsd.counted(dev, l, n)?),
            _ => None,
        };
        let rows = self.chunk.min(n);
        let tile = rows as u64 * v as u64 * 4;
        let (s_logits, t_logits) = (Storage::alloc(dev, tile)?, Storage::alloc(dev, tile)?);
        let d_logits = if grad.is_some() { Some(Storage::alloc(dev, tile)?) } else { None };
        let gemms = match grad {
            Some(_) => Some(GradGemms::new(dev, self.s.x.dtype, self.s.weight.dtype, false)?),
            None => None,
        };
        let pieces = self.pieces();
        for (index, r0) in (0..n).step_by(self.chunk).enumerate() {
            let rn = self.chunk.min(n - r0);
            self.logits(self.s, &s_logits, r0, rn, &pieces)?;
            self.logits(self.t, &t_logits, r0, rn, &pieces)?;
            let as_tensor = |buf: &std::sync::Arc<Storage>| Tensor::new(buf.clone(), vec![rn, v]);
            let (st, tt) = (as_tensor(&s_logits), as_tensor(&t_logits));
            let rows = self.jsd.chunk(&st, &tt, self.labels, r0)?;
            rows.record_loss(&loss, &counted)?;
            if let (Some(g), Some(d), Some(gemms), Some(grads)) = (grad, &d_logits, &gemms, &grads) {
                rows.record_grad(g, denom.as_ref(), n, d)?;
                for (k, p) in pieces.iter().enumerate() {
                    let piece = GradPiece {
                        g: d.buffer(),
                        offset: p.start as u64 * 4,
                        bytes: rn as u64 * v as u64 * 4,
                        ld: v as u64,
                        x: self.s.x,
                        w: self.s.weight,
                        rows: r0..r0 + rn,
                        cols: p.clone(),
                        accumulate_dx: k > 0,
                        accumulate_dw: index > 0,
                        flags: None,
                    };
                    gemms.record(dev, &piece, grads)?;
                }
            }
        }
        Ok((self.reduced(&loss, &counted, n, checks)?, grads))
    }

    /// The logit GEMM: the option, with `Auto` kept off the texture-fed GEMMs on software
    /// adapters (their staged copies of W's shards would exceed the scratch cap).
    fn gemm_kernel(&self) -> LinearKernel {
        match self.o.kernel {
            LinearKernel::Auto if crate::ops::is_software(self.dev) => LinearKernel::Blocked,
            k => k,
        }
    }

    /// `head`'s logits of rows `r0..r0 + rn` into `out` (rows of V), shard by shard of W.
    fn logits(
        &self,
        head: LinearHead<'_>,
        out: &Storage,
        r0: usize,
        rn: usize,
        pieces: &[Range<usize>],
    ) -> Result<()> {
        let h = *head.x.shape.last().unwrap_or(&0) as u64;
        let v = self.v as u64;
        for p in pieces {
            // The GEMM reads the bias at the columns it writes, n_base + j.
            let bias = Bind::all(BIAS, head.bias.map_or(&self.dev.inner.dummy, |b| b.storage.buffer()));
            Gemm {
                x: head.x,
                x_first: r0 as u64 * h,
                w: head.weight,
                w_first: p.start as u64 * h,
                bias,
                has_bias: head.bias.is_some(),
                y: Bind::range(Y, out.buffer(), 0, rn as u64 * v * 4),
                m: rn as u64,
                n: p.len() as u64,
                k: h,
                ldy: v,
                n_base: p.start as u64,
            }
            .record(self.dev, self.gemm_kernel(), OP, &head.x.shape)?;
        }
        Ok(())
    }

    /// The row losses reduced as the options say.
    fn reduced(
        &self,
        loss: &std::sync::Arc<Storage>,
        counted: &Storage,
        n: usize,
        checks: Vec<ValueCheck>,
    ) -> Result<Tensor> {
        let dev = self.dev;
        match self.o.reduction {
            Reduction::None => Ok(Tensor { checks, ..Tensor::new(loss.clone(), self.lead.clone()) }),
            Reduction::Sum => reduce(dev, loss, None, n, Finish::Sum, 0.0, checks),
            Reduction::Mean if n == 0 => reduce(dev, loss, None, 0, Finish::MeanCount, 0.0, checks),
            Reduction::Mean => reduce(dev, loss, Some(counted), n, Finish::MeanWeights, 0.0, checks),
        }
    }
}

/// A head's H, V and leading shape, checked: x `(.., H)`, W `(V, H)`, b `(V)`.
fn head_shape<'x>(head: LinearHead<'x>, which: &str) -> Result<(usize, usize, &'x [usize])> {
    let Some((&h, lead)) = head.x.shape.split_last() else {
        return Err(Error::shape(OP, format!("{which}'s x must be (.., H), got a 0-d tensor")));
    };
    let &[v, wh] = head.weight.shape.as_slice() else {
        return Err(Error::shape(
            OP,
            format!("{which}'s weight must be (V, H), got {:?}", head.weight.shape),
        ));
    };
    if wh != h {
        return Err(Error::shape(
            OP,
            format!(
                "{which}'s x {:?} has {h} features, its weight {:?} expects {wh}",
                head.x.shape, head.weight.shape
            ),
        ));
    }
    if let Some(b) = head.bias
        && b.shape != [v]
    {
        return Err(Error::shape(OP, format!("{which}'s bias must be ({v}), got {:?}", b.shape)));
    }
    Ok((h, v, lead))
}
