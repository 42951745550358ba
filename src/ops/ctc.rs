//! The connectionist temporal classification loss, as PyTorch's `F.ctc_loss`
//! (`shaders/ctc.wgsl`): the alpha (forward) and beta (backward) recursions over each sequence's
//! extended labels in log space, one workgroup per sequence stepping through time, and the
//! gradient PyTorch returns.
//!
//! Work is split so that every dispatch fits the device: sequences in chunks whose alpha and
//! beta tables (`T × (2·S + 1)` floats a sequence) fit one binding, and time in chunks whose
//! log-probabilities fit one binding and whose steps fit the loop budget of a software adapter.
//! The order of every sum depends on the shape alone, so results are bitwise repeatable.

use super::convert::f32_operand;
use super::reduce::reduce_items;
use super::{Outputs, Reduction, budget, check_u32, item_grad, reduction_and_outputs};
use crate::dtype::DType;
use crate::error::{Error, NO_IGNORE_INDEX, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, gcd};
use crate::gpu::spec::Reads;
use crate::gpu::staging::{Input, input};
use crate::kernels::KernelId;
use crate::kernels::ctc::{
    ALPHA, ALPHA_IN, BETA, CHAINS, DLP, EDGE_BYTES, G, LOSS, LP, MAX_P, MAX_WG, NLL, ODD, Params, SCALES,
    SEQS, STATUS, TARGETS, WG, fill_trips, grad_step_trips, recursion_layout, step_trips,
};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// The CTC loss, as PyTorch's `F.ctc_loss(log_probs, targets, input_lengths, target_lengths,
/// blank=0, reduction='mean', zero_infinity=False)`.
///
/// - `log_probs` are `(T, N, C)` log-probabilities (or `(T, C)` for one unbatched sequence),
///   usually a `log_softmax` over C.
/// - `targets` are class ids (int64 or int32): `(N, S)` padded rows, or all sequences' targets
///   concatenated in one dim (`(S)` for an unbatched sequence).
/// - `input_lengths` (each in `0..=T`) and `target_lengths` (each ≥ 0, at most S for padded
///   rows) have one value per sequence, on the host, as PyTorch's tuples of ints.
///
/// The loss of a sequence is `−log p(target | log_probs)` over every alignment; an impossible
/// one (too few frames) is `+inf`, or 0 with `zero_infinity`. `Mean` divides each sequence's loss
/// by its target length (at least 1), then averages over the batch, as PyTorch. A target outside
/// `[0, C)` is an [`Error::TargetOutOfRange`] when the result is read.
///
/// `backward` returns PyTorch's gradient: `exp(log_probs) − γ` (γ the posterior occupation of
/// each class at each step) times the upstream gradient for `t` below the input length, 0
/// beyond, NaN for a sequence whose loss is `+inf` (0 with `zero_infinity`). That is the
/// gradient with respect to the logits of which `log_probs` is the `log_softmax`, which is what
/// PyTorch's autograd gives and its users compare against.
///
/// ```
/// use wgpu_loss::{Ctc, Device};
/// let dev = Device::new()?;
/// // Two steps of uniform log-probabilities over {blank, a}: the target "a" has the
/// // alignments "a a", "blank a" and "a blank", each of probability 1/4.
/// let lp = dev.tensor(&[0.5f32.ln(); 4], &[2, 1, 2])?;
/// let targets = dev.indices(&[1i64], &[1, 1])?;
/// let loss = Ctc::default().forward(&lp, &targets, &[2], &[1])?.item()?;
/// assert!((loss - 0.75f32.ln().abs()).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctc {
    /// The blank class (default 0).
    pub blank: usize,
    /// Whether an impossible sequence's `+inf` loss (and NaN gradient) becomes 0.
    pub zero_infinity: bool,
    /// How the sequences' losses are reduced (default mean: each over its target length).
    pub reduction: Reduction,
    /// The element type of the gradient: the log-probabilities' (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// One validated call: the shape, each sequence's row of `seqs`, and the plan.
struct Job<'a> {
    log_probs: &'a Tensor,
    blank: u32,
    targets: &'a Indices,
    steps: usize,
    batch: usize,
    classes: usize,
    /// Per sequence: input length, target length, first target.
    rows: Vec<[u32; 3]>,
    /// The longest target.
    max_labels: usize,
    out_shape: Vec<usize>,
}

const OP: &str = "ctc";

impl Ctc {
    fn job<'a>(
        &self,
        log_probs: &'a Tensor,
        targets: &'a Indices,
        input_lengths: &[i64],
        target_lengths: &[i64],
    ) -> Result<Job<'a>> {
        same_device(OP, log_probs.device(), &[targets.device()])?;
        let (steps, batch, classes, batched) = match log_probs.shape[..] {
            [t, n, c] => (t, n, c, true),
            [t, c] => (t, 1, c, false),
            _ => {
                return Err(Error::shape(
                    OP,
                    format!("log_probs must be (T, N, C) or (T, C), got {:?}", log_probs.shape),
                ));
            }
        };
        if self.blank >= classes {
            return Err(Error::invalid(OP, format!("blank {} must be a class in 0..{classes}", self.blank)));
        }
        if input_lengths.len() != batch || target_lengths.len() != batch {
            return Err(Error::shape(
                OP,
                format!(
                    "{batch} sequences, but {} input lengths and {} target lengths",
                    input_lengths.len(),
                    target_lengths.len()
                ),
            ));
        }
        // Padded rows (N, S) when batched with 2-D targets; else concatenated.
        let padded = match (batched, targets.shape.len()) {
            (true, 2) if targets.shape[0] == batch => Some(targets.shape[1]),
            (true, 1) | (false, 1) => None,
            _ => {
                return Err(Error::shape(
                    OP,
                    format!(
                        "targets {:?} must be (N, S) padded or concatenated in one dim for log_probs {:?}",
                        targets.shape, log_probs.shape
                    ),
                ));
            }
        };
        let mut rows = Vec::with_capacity(batch);
        let mut offset = 0usize;
        for (n, (&il, &tl)) in input_lengths.iter().zip(target_lengths).enumerate() {
            if il < 0 || il as usize > steps {
                return Err(Error::invalid(OP, format!("input_lengths[{n}] = {il} must be in 0..={steps}")));
            }
            if tl < 0 || padded.is_some_and(|s| tl as usize > s) {
                let most = padded.map_or(String::new(), |s| format!(" and at most the targets' {s} columns"));
                return Err(Error::invalid(OP, format!("target_lengths[{n}] = {tl} must be >= 0{most}")));
            }
            let first = padded.map_or(offset, |s| n * s);
            offset += tl as usize;
            rows.push([il as u32, tl as u32, check_u32(OP, first)?]);
        }
        // Concatenated targets hold exactly the sequences' labels, as PyTorch requires.
        if padded.is_none() && offset != targets.numel() {
            return Err(Error::shape(
                OP,
                format!(
                    "concatenated targets must hold the sum of the target lengths, {offset} ids; they hold {}",
                    targets.numel()
                ),
            ));
        }
        check_u32(OP, log_probs.numel())?;
        let max_labels = rows.iter().map(|r| r[1] as usize).max().unwrap_or(0);
        let out_shape = if batched { vec![batch] } else { vec![] };
        Ok(Job {
            log_probs,
            blank: self.blank as u32,
            targets,
            steps,
            batch,
            classes,
            rows,
            max_labels,
            out_shape,
        })
    }

    /// The loss: a 0-d tensor when reduced, one value per sequence for `None` (`()` unbatched).
    pub fn forward(
        &self,
        log_probs: &Tensor,
        targets: &Indices,
        input_lengths: &[i64],
        target_lengths: &[i64],
    ) -> Result<Tensor> {
        let job = self.job(log_probs, targets, input_lengths, target_lengths)?;
        let dev = log_probs.device();
        dev.op(OP, || {
            let seqs = job.seqs(dev, self.loss_divisor())?;
            let lp = f32_operand(log_probs)?;
            let (status, check) = job.status()?;
            let nll = Storage::alloc(dev, (job.batch as u64 * 4).max(4))?;
            let loss = Storage::alloc(dev, (job.batch as u64 * 4).max(4))?;
            let plan = job.plan(dev, &lp)?;
            for chunk in &plan.sequences {
                let tables = job.tables(dev, &plan, chunk)?;
                job.alpha(dev, &plan, chunk, &lp, &seqs, &tables.0, self.zero_infinity, false)?;
                job.sequence_loss(dev, chunk, &seqs, &tables.0, (&nll, &loss, &status), self.zero_infinity)?;
            }
            let mut checks = log_probs.checks.clone();
            checks.extend(check);
            reduce_items(dev, loss, job.batch, job.out_shape.clone(), self.reduction, checks)
        })
    }

    /// PyTorch's gradient in `log_probs` (see the type's docs) for the upstream gradient
    /// `grad_output` (one value for a reduced loss, one per sequence for `None`), in the
    /// log-probabilities' element type unless `outputs` says f32.
    ///
    /// This runs the alpha recursion again; [`Ctc::forward_backward`] gives the loss and the
    /// gradient with one.
    pub fn backward(
        &self,
        log_probs: &Tensor,
        targets: &Indices,
        input_lengths: &[i64],
        target_lengths: &[i64],
        grad_output: &Tensor,
    ) -> Result<Tensor> {
        let job = self.job(log_probs, targets, input_lengths, target_lengths)?;
        let dev = log_probs.device();
        dev.op(OP, || Ok(self.train_step(&job, grad_output)?.grad))
    }

    /// The loss ([`Ctc::forward`]'s) and its gradient for the upstream gradient `grad_output`
    /// ([`Ctc::backward`]'s) in one pass: the alpha recursion runs once for both, as PyTorch's
    /// autograd keeps its forward's alpha for the backward. A training step with a reduced loss
    /// passes a 0-d `grad_output` of 1.
    ///
    /// ```
    /// use wgpu_loss::{Ctc, Device};
    /// let dev = Device::new()?;
    /// let lp = dev.tensor(&[0.5f32.ln(); 4], &[2, 1, 2])?;
    /// let targets = dev.indices(&[1i64], &[1, 1])?;
    /// let one = dev.tensor(&[1.0f32], &[])?;
    /// let (loss, grad) = Ctc::default().forward_backward(&lp, &targets, &[2], &[1], &one)?;
    /// assert!((loss.item()? - 0.75f32.ln().abs()).abs() < 1e-6);
    /// assert_eq!(grad.shape(), &[2, 1, 2]);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn forward_backward(
        &self,
        log_probs: &Tensor,
        targets: &Indices,
        input_lengths: &[i64],
        target_lengths: &[i64],
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let job = self.job(log_probs, targets, input_lengths, target_lengths)?;
        let dev = log_probs.device();
        dev.op(OP, || {
            let step = self.train_step(&job, grad_output)?;
            let (batch, shape) = (job.batch, job.out_shape.clone());
            let loss =
                reduce_items(log_probs.device(), step.losses, batch, shape, self.reduction, step.checks)?;
            Ok((loss, step.grad))
        })
    }

    /// Each sequence's divisor of its loss: its target length (at least 1) for the mean.
    fn loss_divisor(&self) -> impl Fn([u32; 3]) -> f32 {
        let mean = self.reduction == Reduction::Mean;
        move |r: [u32; 3]| if mean { r[1].max(1) as f32 } else { 1.0 }
    }

    /// Alpha (every step kept), each sequence's loss, then the gradient for `grad_output`.
    fn train_step(&self, job: &Job<'_>, grad_output: &Tensor) -> Result<TrainStep> {
        let log_probs = job.log_probs;
        let dev = log_probs.device();
        same_device(OP, dev, &[grad_output.device()])?;
        let (per_seq, _) = item_grad(OP, grad_output, self.reduction, &job.out_shape, job.batch)?;
        let n = job.batch as f32;
        let grad_divisor = |r: [u32; 3]| match self.reduction {
            Reduction::Mean => n * r[1].max(1) as f32,
            _ => 1.0,
        };
        let seqs = job.seqs(dev, grad_divisor)?;
        let loss_seqs = job.seqs(dev, self.loss_divisor())?;
        let lp = f32_operand(log_probs)?;
        let g = f32_operand(grad_output)?;
        let (status, check) = job.status()?;
        let nll = Storage::alloc(dev, (job.batch as u64 * 4).max(4))?;
        let loss = Storage::alloc(dev, (job.batch as u64 * 4).max(4))?;
        let dlp = Tensor::empty(dev, log_probs.shape.clone())?;
        let plan = job.plan(dev, &lp)?;
        for chunk in &plan.sequences {
            let (alpha, beta) = job.tables(dev, &plan, chunk)?;
            job.alpha(dev, &plan, chunk, &lp, &seqs, &alpha, self.zero_infinity, true)?;
            job.sequence_loss(dev, chunk, &loss_seqs, &alpha, (&nll, &loss, &status), self.zero_infinity)?;
            let grads = Grads { alpha: &alpha, beta: &beta, nll: &nll, g: &g, dlp: &dlp, per_seq };
            job.gradient(dev, &plan, chunk, &lp, &seqs, grads, self.zero_infinity)?;
        }
        let mut checks = log_probs.checks.clone();
        checks.extend(check);
        let mut grad_checks = checks.clone();
        grad_checks.extend(grad_output.checks.iter().cloned());
        let grad = self.outputs.apply(Tensor { checks: grad_checks, ..dlp }, log_probs.dtype)?;
        Ok(TrainStep { losses: loss, checks, grad })
    }

    /// Sets the blank class.
    pub fn blank(mut self, blank: usize) -> Self {
        self.blank = blank;
        self
    }

    /// Sets whether impossible sequences count 0.
    pub fn zero_infinity(mut self, zero_infinity: bool) -> Self {
        self.zero_infinity = zero_infinity;
        self
    }
}

reduction_and_outputs!(Ctc);

/// A training step's results: each sequence's loss (divided as the forward's) with the checks
/// the loss carries, and the gradient.
struct TrainStep {
    losses: std::sync::Arc<Storage>,
    checks: Vec<ValueCheck>,
    grad: Tensor,
}

/// How the work is split: sequence chunks (alpha and beta fit a binding) and time chunks (the
/// log-probabilities fit a binding, the steps the loop budget).
struct Plan {
    sequences: Vec<std::ops::Range<usize>>,
    times: Vec<std::ops::Range<usize>>,
    /// The time chunks of `beta_grad`, whose steps also loop over the workgroup and the labels.
    grad_times: Vec<std::ops::Range<usize>>,
    /// Whether lp and dlp are bound whole (they fit one binding), not a time chunk's rows.
    whole: bool,
    /// The row stride of alpha and beta: 2 × (the longest target) + 1.
    sp: usize,
    /// The recursions' threads a workgroup and extended labels a thread.
    layout: (u32, u32),
    /// How the kernels read the log-probabilities (staged in textures on the software adapters).
    reads: Reads,
}

/// `lp` as a plan's kernels read it: the whole input when it fits one binding (staged once),
/// else `None` and each time chunk's own rows.
struct LpSource<'a> {
    whole: Option<Input<'a>>,
    reads: Reads,
}

/// The buffers the gradient reads and writes.
struct Grads<'a> {
    alpha: &'a Storage,
    beta: &'a Storage,
    nll: &'a Storage,
    g: &'a Tensor,
    dlp: &'a Tensor,
    per_seq: bool,
}

impl Job<'_> {
    /// The extended labels of the longest target, 2·S + 1.
    fn positions(&self) -> u64 {
        2 * self.max_labels as u64 + 1
    }

    /// The `seqs` rows: input length, target length, first target, divisor.
    fn seqs(&self, dev: &Device, divisor: impl Fn([u32; 3]) -> f32) -> Result<std::sync::Arc<Storage>> {
        let mut words: Vec<u32> =
            self.rows.iter().flat_map(|&r| [r[0], r[1], r[2], divisor(r).to_bits()]).collect();
        if words.is_empty() {
            words.extend([0; 4]);
        }
        Storage::upload(dev, bytemuck::cast_slice(&words))
    }

    fn status(&self) -> Result<(std::sync::Arc<Storage>, Option<ValueCheck>)> {
        let check = ValueCheck::new(OP, self.targets, self.classes, NO_IGNORE_INDEX)?;
        Ok((check.status.clone(), Some(check)))
    }

    fn plan(&self, dev: &Device, lp: &Tensor) -> Result<Plan> {
        let sp = table_stride(self.max_labels);
        let l = dev.limits();
        let max_wg = (l.max_compute_invocations_per_workgroup as u64)
            .min(l.max_compute_workgroup_size_x as u64)
            .min(l.max_compute_workgroup_storage_size as u64 / EDGE_BYTES)
            .min(MAX_WG);
        let layout = recursion_layout(sp as u64, max_wg).ok_or_else(|| {
            Error::limit(
                "ctc: a target's extended labels (2·S + 1, held in one workgroup's registers)",
                sp as u64,
                max_wg * MAX_P as u64,
            )
        })?;
        let elements = lp.numel().max(1);
        let reads = KernelId::Ctc.reads(dev, &[(LP, lp.storage.buffer(), elements, DType::F32)])?;
        let limit = dev.binding_limit();
        // Sequences: alpha (and beta) of a chunk in one binding.
        let table = (self.steps.max(1) * sp * 4) as u64;
        if table > limit {
            return Err(Error::limit("ctc: one sequence's alpha table (T × (2·S + 1) floats)", table, limit));
        }
        // The loops over a sequence's extended labels (its loss, its class chains, the gradient
        // along a chain) run 2·(2S + 1) + 1 times in one invocation.
        let label_trips = 2 * self.positions() + 1;
        if !budget::fits(dev, label_trips) {
            return Err(Error::limit(
                format!(
                    "ctc: a target of {} labels (4·S + 3 loop iterations of one invocation)",
                    self.max_labels
                ),
                label_trips,
                dev.loop_budget(),
            ));
        }
        // A chunk's class chains (two words per extended label) are bound whole too.
        let per_chunk = ((limit / table.max(sp as u64 * 8)) as usize).clamp(1, self.batch.max(1));
        let sequences =
            (0..self.batch).step_by(per_chunk).map(|n| n..(n + per_chunk).min(self.batch)).collect();
        // Time: one step's log-probabilities are one row. Bound whole when they fit one
        // binding; else in chunks that start on aligned offsets.
        let row = (self.batch * self.classes * 4) as u64;
        let whole = (self.steps as u64).saturating_mul(row) <= limit;
        let align = dev.limits().min_storage_buffer_offset_alignment as u64;
        let step = if whole || row == 0 { 1 } else { align / gcd(row, align) };
        let by_binding = if whole { u64::MAX } else { limit / row / step * step };
        if by_binding == 0 {
            return Err(Error::limit("ctc: the log-probabilities of one time step", row * step, limit));
        }
        let cap = (self.steps as u64).min(by_binding);
        let chunks = |trips: &dyn Fn(u64) -> u64| -> Result<Vec<std::ops::Range<usize>>> {
            let per = budget::largest_fitting(dev, step, cap, trips)
                .map(|s| s.min(by_binding))
                .ok_or_else(|| budget::exceeded(dev, OP, &self.log_probs.shape, trips(step)))?
                as usize;
            Ok((0..self.steps).step_by(per.max(1)).map(|t| t..(t + per).min(self.steps)).collect())
        };
        let times = chunks(&|s| step_trips(s, sp as u64))?;
        let grad_times = chunks(&|s| grad_step_trips(s, sp as u64, layout.0 as u64))?;
        Ok(Plan { sequences, times, grad_times, whole, sp, layout, reads })
    }

    /// Alpha and beta tables for a sequence chunk.
    fn tables(
        &self,
        dev: &Device,
        plan: &Plan,
        chunk: &std::ops::Range<usize>,
    ) -> Result<(std::sync::Arc<Storage>, std::sync::Arc<Storage>)> {
        let bytes = (chunk.len() * self.steps * plan.sp * 4).max(4) as u64;
        Ok((Storage::alloc(dev, bytes)?, Storage::alloc(dev, bytes)?))
    }

    fn params(&self, plan: &Plan, chunk: &std::ops::Range<usize>, time: &std::ops::Range<usize>) -> Params {
        Params {
            batch: self.batch as u32,
            classes: self.classes as u32,
            blank: self.blank,
            sp: plan.sp as u32,
            steps: self.steps as u32,
            t0: time.start as u32,
            t1: time.end as u32,
            n0: chunk.start as u32,
            seqs: chunk.len() as u32,
            store_all: 0,
            tb: if plan.whole { 0 } else { time.start as u32 },
            rows_per: 0,
        }
    }

    /// The steps of lp and dlp bound for a time chunk: all of them, or the chunk's.
    fn bound_steps(&self, plan: &Plan, time: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        if plan.whole { 0..self.steps } else { time.clone() }
    }

    /// `dlp`'s rows bound for a time chunk.
    fn dlp_rows<'a>(&self, plan: &Plan, dlp: &'a Tensor, time: &std::ops::Range<usize>) -> Bind<'a> {
        let row = (self.batch * self.classes * 4) as u64;
        let steps = self.bound_steps(plan, time);
        Bind::range(DLP, dlp.storage.buffer(), steps.start as u64 * row, (steps.len() as u64 * row).max(4))
    }

    /// `lp` for the time chunks of `plan`, read as `reads` says: bound (or staged) once when
    /// it fits one binding, else chunk by chunk.
    fn lp_source<'a>(&self, dev: &Device, plan: &Plan, reads: Reads, lp: &'a Tensor) -> LpSource<'a> {
        let whole = plan.whole.then(|| self.lp_rows(dev, reads, lp, &(0..self.steps)));
        LpSource { whole, reads }
    }

    /// `lp`'s rows of the steps `steps`, read as `reads` says.
    fn lp_rows<'a>(
        &self,
        dev: &Device,
        reads: Reads,
        lp: &'a Tensor,
        steps: &std::ops::Range<usize>,
    ) -> Input<'a> {
        let row = (self.batch * self.classes) as u64;
        let elements = (steps.len() as u64 * row).max(1);
        input(dev, reads, LP, lp.storage.buffer(), steps.start as u64 * row, elements)
    }

    /// `lp` bound for the time chunk `time`: `source`'s whole input, or `slot` holding the
    /// chunk's own.
    fn lp_for<'s, 'a>(
        &self,
        dev: &Device,
        source: &'s LpSource<'a>,
        lp: &'a Tensor,
        time: &std::ops::Range<usize>,
        slot: &'s mut Option<Input<'a>>,
    ) -> Bind<'s> {
        match &source.whole {
            Some(whole) => whole.bind(),
            None => slot.insert(self.lp_rows(dev, source.reads, lp, time)).bind(),
        }
    }

    /// The alpha recursion over every time chunk, keeping every step in `alpha` when
    /// `store_all` (the gradient reads them), else what the loss and later chunks read.
    #[allow(clippy::too_many_arguments)]
    fn alpha(
        &self,
        dev: &Device,
        plan: &Plan,
        chunk: &std::ops::Range<usize>,
        lp: &Tensor,
        seqs: &Storage,
        alpha: &Storage,
        zero_infinity: bool,
        store_all: bool,
    ) -> Result<()> {
        let pipe = KernelId::Ctc.pipeline_for(
            dev,
            plan.reads,
            "alpha_steps",
            &recursion_constants(plan, false, zero_infinity),
        )?;
        let source = self.lp_source(dev, plan, plan.reads, lp);
        for time in &plan.times {
            let params = Params { store_all: store_all as u32, ..self.params(plan, chunk, time) };
            let mut slot = None;
            let binds = [
                self.lp_for(dev, &source, lp, time, &mut slot),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::all(SEQS, seqs.buffer()),
                Bind::all(ALPHA, alpha.buffer()),
            ];
            let extents = [time.len() as u64, plan.sp as u64];
            dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, chunk.len() as u64, &extents)?;
        }
        Ok(())
    }

    fn sequence_loss(
        &self,
        dev: &Device,
        chunk: &std::ops::Range<usize>,
        seqs: &Storage,
        alpha: &Storage,
        (nll, loss, status): (&Storage, &Storage, &Storage),
        zero_infinity: bool,
    ) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let pipe = KernelId::Ctc.pipeline(dev, "sequence_loss", &constants(false, zero_infinity))?;
        let sp = table_stride(self.max_labels);
        let params = Params {
            batch: self.batch as u32,
            classes: self.classes as u32,
            blank: self.blank,
            sp: sp as u32,
            steps: self.steps as u32,
            t1: self.steps as u32,
            n0: chunk.start as u32,
            seqs: chunk.len() as u32,
            ..Params::default()
        };
        let binds = [
            Bind::all(TARGETS, self.targets.storage.buffer()),
            Bind::all(SEQS, seqs.buffer()),
            Bind::all(ALPHA, alpha.buffer()),
            Bind::all(NLL, nll.buffer()),
            Bind::all(LOSS, loss.buffer()),
            Bind::all(STATUS, status.buffer()),
        ];
        let groups = (chunk.len() as u64).div_ceil(WG);
        dispatch(dev, &pipe, bytemuck::bytes_of(&params), &binds, groups, &[0, self.positions()])
    }

    /// The gradient of a sequence chunk whose alpha (every step) and loss are computed: the
    /// class chains, `exp(lp)` times the scale everywhere (`grad_fill`), then the beta recursion
    /// from the last chunk of time to the first, writing each step's target classes.
    #[allow(clippy::too_many_arguments)]
    fn gradient(
        &self,
        dev: &Device,
        plan: &Plan,
        chunk: &std::ops::Range<usize>,
        lp: &Tensor,
        seqs: &Storage,
        grads: Grads<'_>,
        zero_infinity: bool,
    ) -> Result<()> {
        let switches = constants(grads.per_seq, zero_infinity);
        let row_scales = KernelId::Ctc.pipeline(dev, "row_scales", &switches)?;
        let fill = KernelId::Ctc.pipeline_for(dev, plan.reads, "grad_fill", &switches)?;
        // beta_grad reads the alpha table again, four labels at a time.
        let table = (chunk.len() * self.steps * plan.sp) as u64;
        let lp_elements = self.log_probs.numel().max(1);
        let grad_reads = KernelId::Ctc.reads(
            dev,
            &[
                (LP, lp.storage.buffer(), lp_elements, DType::F32),
                (ALPHA_IN, grads.alpha.buffer(), table.max(1) as usize, DType::F32),
            ],
        )?;
        let beta_grad = KernelId::Ctc.pipeline_for(
            dev,
            grad_reads,
            "beta_grad",
            &recursion_constants(plan, grads.per_seq, zero_infinity),
        )?;
        // The chains of each class's positions, once for the chunk, and the step's alpha + beta
        // of the labels.
        let words = (chunk.len() * plan.sp) as u64;
        let chains = Storage::alloc(dev, (words * 8).max(8))?;
        let odd = Storage::alloc(dev, (words * 4).max(4))?;
        let link = KernelId::Ctc.pipeline(dev, "class_chains", &constants(false, zero_infinity))?;
        let params = self.params(plan, chunk, &(0..0));
        let binds = [
            Bind::all(TARGETS, self.targets.storage.buffer()),
            Bind::all(SEQS, seqs.buffer()),
            Bind::all(CHAINS, chains.buffer()),
        ];
        let extents = [0, self.positions()];
        dispatch(dev, &link, bytemuck::bytes_of(&params), &binds, words.div_ceil(WG), &extents)?;
        // Rows a fill workgroup: at least WG · 8 elements, within the loop budget.
        let rows_per = budget::largest_fitting(dev, 1, (WG * 8).div_ceil(self.classes.max(1) as u64), |r| {
            fill_trips(r, self.classes as u64)
        })
        .ok_or_else(|| {
            budget::exceeded(dev, OP, &self.log_probs.shape, fill_trips(1, self.classes as u64))
        })?;
        let source = self.lp_source(dev, plan, plan.reads, lp);
        let longest = plan.times.iter().map(|t| t.len()).max().unwrap_or(0);
        let scales = Storage::alloc(dev, (longest * chunk.len() * 8).max(8) as u64)?;
        for time in &plan.times {
            let params = Params { rows_per: rows_per as u32, ..self.params(plan, chunk, time) };
            let rows = (time.len() * chunk.len()) as u64;
            let binds = [
                Bind::all(SEQS, seqs.buffer()),
                Bind::all(NLL, grads.nll.buffer()),
                Bind::all(G, grads.g.storage.buffer()),
                Bind::all(SCALES, scales.buffer()),
            ];
            dispatch(dev, &row_scales, bytemuck::bytes_of(&params), &binds, rows.div_ceil(WG), &[])?;
            let mut slot = None;
            let lp_bind = self.lp_for(dev, &source, lp, time, &mut slot);
            let binds = [lp_bind, Bind::all(SCALES, scales.buffer()), self.dlp_rows(plan, grads.dlp, time)];
            let groups = time.len() as u64 * (chunk.len() as u64).div_ceil(rows_per);
            let extents = [rows_per, self.classes as u64];
            dispatch(dev, &fill, bytemuck::bytes_of(&params), &binds, groups, &extents)?;
        }
        let alpha_in = input(dev, grad_reads, ALPHA_IN, grads.alpha.buffer(), 0, table.max(1));
        // The fill's lp serves beta_grad too when both read it the same way.
        let source = match source.reads == grad_reads {
            true => source,
            false => {
                drop(source);
                self.lp_source(dev, plan, grad_reads, lp)
            }
        };
        for time in plan.grad_times.iter().rev() {
            let params = self.params(plan, chunk, time);
            let mut slot = None;
            let lp_bind = self.lp_for(dev, &source, lp, time, &mut slot);
            let mut binds = vec![lp_bind, self.dlp_rows(plan, grads.dlp, time), alpha_in.bind()];
            binds.extend([
                Bind::all(SEQS, seqs.buffer()),
                Bind::all(NLL, grads.nll.buffer()),
                Bind::all(G, grads.g.storage.buffer()),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::all(BETA, grads.beta.buffer()),
                Bind::all(CHAINS, chains.buffer()),
                Bind::all(ODD, odd.buffer()),
            ]);
            let extents = [time.len() as u64, plan.sp as u64, plan.layout.0 as u64];
            dispatch(dev, &beta_grad, bytemuck::bytes_of(&params), &binds, chunk.len() as u64, &extents)?;
        }
        Ok(())
    }
}

/// The row stride of the alpha and beta tables for targets of up to `max_labels`: the extended
/// labels, 2·S + 1, rounded up to whole texels of four.
fn table_stride(max_labels: usize) -> usize {
    (2 * max_labels + 1).next_multiple_of(4)
}

/// The constants of a recursion's pipeline: its layout, and the gradient's switches.
fn recursion_constants(plan: &Plan, per_seq: bool, zero_infinity: bool) -> [(&'static str, f64); 4] {
    let (wg, p) = plan.layout;
    [
        ("WG", wg as f64),
        ("P", p as f64),
        ("G_PER_SEQ", per_seq as u8 as f64),
        ("ZERO_INFINITY", zero_infinity as u8 as f64),
    ]
}

/// The pipeline constants.
fn constants(per_seq: bool, zero_infinity: bool) -> [(&'static str, f64); 3] {
    [("WG", WG as f64), ("G_PER_SEQ", per_seq as u8 as f64), ("ZERO_INFINITY", zero_infinity as u8 as f64)]
}
