//! One validated call of the LM-head loss: its inputs, the layout of its bindings, the target
//! pass and the backward's tiling.

use std::ops::Range;
use std::sync::Arc;

use super::options::{LinearCrossEntropy, OP};
use super::output::{TokenGrads, VocabShard};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, gcd};
use crate::kernels::KernelId;
use crate::kernels::linear_cross_entropy::{
    COUNTED, Params, ROW_STATS, STAT_PLANES, STATUS, TARGETS, TOKEN_PLANES, TOKEN_W, WEIGHT, WT,
    tile_grad_trips,
};
use crate::ops::budget::{exceeded, fits, largest_fitting};
use crate::ops::convert::f32_operand;
use crate::ops::linear::LinearKernel;
use crate::ops::linear::block_step;
use crate::ops::reduce::{Finish, reduce};
use crate::ops::{Reduction, check_u32, is_software};
use crate::tensor::{Indices, Storage, Tensor, ValueCheck, same_device};

/// Validated inputs and the layout of one call.
pub(super) struct Job<'a> {
    pub(super) o: &'a LinearCrossEntropy,
    pub(super) dev: &'a Device,
    pub(super) x: &'a Tensor,
    pub(super) w: &'a Tensor,
    pub(super) bias: Option<&'a Tensor>,
    pub(super) targets: &'a Indices,
    pub(super) n: usize,
    pub(super) h: usize,
    /// W's rows: the vocabulary, or a vocabulary shard's classes.
    pub(super) v: usize,
    /// The vocabulary's classes and the class of W's row 0 (`v` and 0 unless W is a shard).
    pub(super) classes: usize,
    pub(super) class_base: usize,
    /// The targets' shape (and the loss's for `None`).
    pub(super) lead: Vec<usize>,
    pub(super) ignore: i32,
    /// Rows of W bound at once: a multiple of `block`, so shard offsets are aligned.
    pub(super) shard: usize,
    /// The rows of W that start every shard, tile and piece: 64 for f32, 128 for halves.
    pub(super) block: usize,
    /// Rows of x between aligned offsets.
    pub(super) row_step: usize,
    /// The most rows of x one binding holds (a multiple of `row_step`).
    pub(super) x_rows: usize,
    pub(super) budget: u64,
    pub(super) software: bool,
    /// Whether the GEMMs read x, W and the gradient tiles staged in textures (`partials_staged`
    /// and the staged GEMMs). The scratch budget is then shared four ways: the partials or a
    /// tile of logits, its staged copy, and the staged chunk of x and shard of W each get a
    /// quarter.
    pub(super) staged: bool,
    /// The longest k a gradient GEMM thread may loop over (within the loop budget).
    pub(super) max_k: usize,
}

/// A backward tiling: chunks of `rows` rows × tiles of `cols` columns, or whole rows.
#[derive(Clone, Copy, Debug)]
pub(super) struct TilePlan {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) whole_rows: bool,
}

/// What every pass needs: the target check, the denominators `[Σ s·w[t], Σ s, Σ w]` over the
/// counted rows (s the token weights, 1 without), and the row statistics, five planes of N
/// (lse, max, log Σ, entropy, s), the last written by the target pass.
pub(super) struct Prep {
    pub(super) check: ValueCheck,
    pub(super) denoms: Arc<Storage>,
    pub(super) stats: Arc<Storage>,
}

/// The call's operands as its kernels read them: x and W in their own element types (the GEMMs
/// decode halves as they load), the bias and the class weights as f32 (small: widened inside
/// the open frame when half).
pub(super) struct Operands<'a> {
    pub(super) x: &'a Tensor,
    pub(super) weight: &'a Tensor,
    pub(super) bias: Option<Tensor>,
    pub(super) options: LinearCrossEntropy,
}

impl<'a> Operands<'a> {
    pub(super) fn new(
        options: &LinearCrossEntropy,
        x: &'a Tensor,
        weight: &'a Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Operands<'a>> {
        let class_weight = options.weight.as_ref().map(f32_operand).transpose()?;
        let token_weight = options.token_weight.as_ref().map(f32_operand).transpose()?;
        Ok(Operands {
            x,
            weight,
            bias: bias.map(f32_operand).transpose()?,
            options: LinearCrossEntropy { weight: class_weight, token_weight, ..options.clone() },
        })
    }

    pub(super) fn job<'t>(&'t self, targets: &'t Indices) -> Result<Job<'t>> {
        Job::new(&self.options, self.x, self.weight, self.bias.as_ref(), targets, None)
    }
}

fn round_down(a: usize, m: usize) -> usize {
    a / m * m
}

impl<'a> Job<'a> {
    pub(super) fn new(
        o: &'a LinearCrossEntropy,
        x: &'a Tensor,
        w: &'a Tensor,
        bias: Option<&'a Tensor>,
        targets: &'a Indices,
        shard: Option<VocabShard>,
    ) -> Result<Self> {
        let dev = x.device();
        let (h, v, lead) = check_shapes(o, x, w, bias, targets, shard)?;
        let (classes, class_base) = shard.map_or((v, 0), |s| (s.global_vocab, s.start));
        check_u32(OP, classes)?;
        check_options(o)?;
        let ignore = i32::try_from(o.ignore_index).map_err(|_| {
            Error::invalid(OP, format!("ignore_index {} does not fit in i32", o.ignore_index))
        })?;
        let n = crate::ops::saturating_product(lead);
        if h == 0 {
            return Err(Error::Empty { op: OP, what: "zero input features" });
        }
        if v == 0 && n > 0 {
            return Err(Error::Empty { op: OP, what: "no classes" });
        }
        check_u32(OP, n)?;
        check_u32(OP, v)?;
        let limit = dev.binding_limit();
        // W's rows are bound in shards and its columns of logits taken in pieces of whole
        // blocks (64 f32 rows, 128 half ones): every piece starts at an aligned offset.
        let block = block_step(&[w.dtype]);
        let w_row_bytes = w.dtype.bytes(h as u64);
        let mut shard = round_down((limit / w_row_bytes).min(u32::MAX as u64) as usize, block);
        // Chunks of x's rows start where x (its type) and dX (f32) are both aligned.
        let x_row_bytes = x.dtype.bytes(h as u64).max(h as u64 * 4);
        let x_rows_max = (limit / x_row_bytes) as usize;
        let align = dev.limits().min_storage_buffer_offset_alignment as u64;
        let row_step =
            (align / gcd(x.dtype.bytes(h as u64), align)).max(align / gcd(h as u64 * 4, align)) as usize;
        let mut x_rows = round_down(x_rows_max, row_step);
        if shard == 0 || x_rows == 0 {
            let what = format!("{OP}: {block} rows of W in one binding");
            return Err(Error::limit(what, block as u64 * w_row_bytes, limit));
        }
        // One rule for the scratch cap, forward and backward alike: it holds at least the
        // smallest tile of logits, a block of aligned rows by a block of columns.
        let least = (row_step * block * 4) as u64;
        if o.max_scratch_bytes < least {
            return Err(Error::invalid(
                OP,
                format!(
                    "max_scratch_bytes {} is below the smallest tile of logits, {least} bytes ({row_step} rows × {block} columns of f32)",
                    o.max_scratch_bytes
                ),
            ));
        }
        if least > limit {
            return Err(Error::limit(
                format!("{OP}: the smallest tile of logits in one binding"),
                least,
                limit,
            ));
        }
        // Staged, the budget is shared four ways; a budget too small for that reads storage.
        let (xd, wd, h64) = (x.dtype, w.dtype, h as u64);
        let staged = o.kernel.staged(dev, x, w, &[(xd, h64), (wd, h64)])?
            && o.max_scratch_bytes.min(limit) / 4 >= least.max((block as u64) * w_row_bytes);
        if o.kernel == LinearKernel::Staged && !staged {
            return Err(Error::invalid(
                OP,
                format!(
                    "LinearKernel::Staged shares max_scratch_bytes four ways: {} is below four blocks of W's rows",
                    o.max_scratch_bytes
                ),
            ));
        }
        let share = if staged { 4 } else { 1 };
        if staged {
            // The staged copies of a chunk of x and a shard of W: a quarter of the scratch
            // budget each, never below one aligned block.
            let quarter = o.max_scratch_bytes.min(limit) / share;
            shard = shard.min(round_down((quarter / w_row_bytes) as usize, block).max(block));
            x_rows = x_rows.min(round_down((quarter / x_row_bytes) as usize, row_step).max(row_step));
        }
        // Per-row buffers are bound whole; the largest are the statistics and the per-token
        // outputs, 5 words a row.
        let stats_bytes = n as u64 * 4 * STAT_PLANES.max(TOKEN_PLANES);
        if stats_bytes > limit {
            return Err(Error::limit(
                format!("{OP}: the statistics of {n} rows in one binding"),
                stats_bytes,
                limit,
            ));
        }
        Ok(Job {
            o,
            classes,
            class_base,
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
            budget: o.max_scratch_bytes.min(limit) / share,
            software: is_software(dev),
            staged,
            max_k: crate::ops::linear::grad_max_k(dev, block),
            block,
        })
    }

    pub(super) fn check_grad(&self, grad: &Tensor) -> Result<()> {
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

    /// The upstream gradient as the gradient tiles read it: the loss's (one value, or N), then
    /// the per-token gradients `tokens` holds, N each, logprob's before entropy's, all f32; and
    /// the kernel's bits saying which follow (1 logprob, 2 entropy).
    pub(super) fn upstream(&self, grad: &Tensor, tokens: TokenGrads<'_>) -> Result<(Tensor, u32)> {
        let grad = f32_operand(grad)?;
        let given = [tokens.logprob, tokens.entropy];
        if given.iter().all(Option::is_none) {
            return Ok((grad, 0));
        }
        let n = self.n as u64;
        let head = grad.numel() as u64;
        let mut checks = grad.checks.clone();
        let all = Storage::alloc(self.dev, (head + 2 * n).max(1) * 4)?;
        let mut parts = vec![(grad.storage.clone(), 0, head)];
        let mut bits = 0;
        for (k, g) in given.into_iter().enumerate() {
            let Some(g) = g else { continue };
            same_device(OP, self.dev, &[g.device()])?;
            if g.shape != self.lead {
                let which = if k == 0 { "logprob" } else { "entropy" };
                return Err(Error::shape(
                    OP,
                    format!(
                        "the {which} gradient must have the targets' shape {:?}, got {:?}",
                        self.lead, g.shape
                    ),
                ));
            }
            let g = f32_operand(g)?;
            checks.extend(g.checks.iter().cloned());
            parts.push((g.storage.clone(), head + k as u64 * n, n));
            bits |= 1 << k;
        }
        self.dev.record(|enc| {
            for (src, at, len) in &parts {
                if *len > 0 {
                    enc.copy_buffer_to_buffer(src.buffer(), 0, all.buffer(), at * 4, len * 4);
                }
            }
        });
        Ok((Tensor { checks, ..Tensor::new(all, grad.shape.clone()) }, bits))
    }

    /// The override that compiles the softcap and the temperature into the entries that read
    /// logits (`partials*`, `tile_grad`): only where this call has one, since their code is
    /// most of those entries' size and llvmpipe compiles both sides of a uniform branch.
    pub(super) fn capped(&self) -> (&'static str, f64) {
        ("CAPPED", (self.o.softcap.is_some() || self.o.temperature != 1.0) as u8 as f64)
    }

    /// The uniform's fields that every entry shares.
    pub(super) fn params(&self) -> Params {
        Params {
            k: self.h as u32,
            has_bias: self.bias.is_some() as u32,
            classes: self.classes as u32,
            class_base: self.class_base as u32,
            has_weight: self.o.weight.is_some() as u32,
            ignore_index: self.ignore,
            smoothing: self.o.label_smoothing,
            softcap: self.o.softcap.unwrap_or(0.0),
            temperature: self.o.temperature,
            has_token_weight: self.o.token_weight.is_some() as u32,
            z_loss: self.o.z_loss,
            mean: (self.o.reduction == Reduction::Mean) as u32,
            rows: self.n as u32,
            ..Params::default()
        }
    }

    pub(super) fn dummy(&self) -> &'a wgpu::Buffer {
        &self.dev.inner.dummy
    }

    pub(super) fn bias_buf(&self) -> &'a wgpu::Buffer {
        self.bias.map_or(self.dummy(), |b| b.storage.buffer())
    }

    pub(super) fn weight_bind(&self) -> Bind<'a> {
        Bind::all(WEIGHT, self.o.weight.as_ref().map_or(self.dummy(), |c| c.storage.buffer()))
    }

    fn token_bind(&self) -> Bind<'a> {
        Bind::all(TOKEN_W, self.o.token_weight.as_ref().map_or(self.dummy(), |t| t.storage.buffer()))
    }

    pub(super) fn checks(&self, prep: &Prep) -> Vec<ValueCheck> {
        let mut checks = self.x.checks.clone();
        checks.extend(self.w.checks.iter().cloned());
        checks.extend(self.bias.iter().flat_map(|b| b.checks.iter().cloned()));
        checks.extend(self.o.weight.iter().flat_map(|c| c.checks.iter().cloned()));
        checks.extend(self.o.token_weight.iter().flat_map(|c| c.checks.iter().cloned()));
        checks.push(prep.check.clone());
        checks
    }

    /// The column ranges of W's shards that `cols` covers, each at most `max_k` long (the k of
    /// the dX GEMM).
    pub(super) fn pieces(&self, cols: &Range<usize>) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut c = cols.start;
        while c < cols.end {
            let end = ((c / self.shard + 1) * self.shard).min(cols.end).min(c + self.max_k);
            out.push(c..end);
            c = end;
        }
        out
    }

    /// The target pass (checks ids, per-row w\[t\] and counted) and the denominators.
    pub(super) fn prepare(&self) -> Result<Prep> {
        let dev = self.dev;
        let n = self.n;
        let check = ValueCheck::new(OP, self.targets, self.classes, self.o.ignore_index)?;
        let wt = Storage::alloc(dev, n as u64 * 4)?;
        let counted = Storage::alloc(dev, n as u64 * 4)?;
        let stats = Storage::alloc(dev, n.max(1) as u64 * 4 * STAT_PLANES)?;
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
                Bind::all(ROW_STATS, stats.buffer()),
                self.token_bind(),
            ],
            (n as u64).div_ceil(64),
            &[],
        )?;
        let weight_sum = reduce(dev, &wt, None, n, Finish::Sum, 0.0, Vec::new())?;
        let count = reduce(dev, &counted, None, n, Finish::Sum, 0.0, Vec::new())?;
        let total = match &self.o.weight {
            Some(c) => Some(reduce(dev, &c.storage, None, self.classes, Finish::Sum, 0.0, Vec::new())?),
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
        Ok(Prep { check, denoms, stats })
    }

    /// The backward tiling for the scratch budget. With `whole_rows` asked, whole rows of
    /// logits if at least one GEMM block of rows fits; else `rows × cols` tiles inside shards.
    pub(super) fn tile_plan(&self, whole_rows: bool) -> Result<TilePlan> {
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
        let block = self.block;
        let max_cols = self.shard.min(self.v.div_ceil(block).max(1) * block);
        let by_budget = round_down(floats / block, step);
        if by_budget == 0 {
            return Err(Error::limit(
                format!(
                    "linear_cross_entropy's scratch (max_scratch_bytes) for {block} columns of aligned rows"
                ),
                (step * block * 4) as u64,
                self.budget,
            ));
        }
        let rows = n_up
            .min(self.x_rows)
            .min(by_budget)
            .min(round_down((floats / max_cols.min(1024)).max(step), step))
            .min(round_down(self.max_k, step).max(step));
        let filter = self.o.filter_eps.is_some();
        let by_trips =
            largest_fitting(self.dev, block as u64, max_cols as u64, |c| tile_grad_trips(c, false, filter))
                .ok_or_else(|| {
                exceeded(self.dev, OP, &self.x.shape, tile_grad_trips(block as u64, false, filter))
            })?;
        let cols = round_down(floats / rows, block).min(max_cols).min(by_trips as usize);
        Ok(TilePlan { rows, cols, whole_rows: false })
    }

    /// The column tiles of a plan: the whole vocabulary, or `cols`-wide tiles inside each shard.
    pub(super) fn tiles(&self, plan: TilePlan) -> Vec<Range<usize>> {
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
}

/// Checks devices and shapes: x `(.., H)`, W `(V, H)`, b and class weights `(V)`, targets the
/// leading shape; returns H, V and the leading shape.
fn check_shapes<'x>(
    o: &LinearCrossEntropy,
    x: &'x Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    targets: &Indices,
    shard: Option<VocabShard>,
) -> Result<(usize, usize, &'x [usize])> {
    let mut devices = vec![w.device(), targets.device()];
    devices.extend(bias.map(|b| b.device()));
    devices.extend(o.weight.as_ref().map(|c| c.device()));
    devices.extend(o.token_weight.as_ref().map(|c| c.device()));
    same_device(OP, x.device(), &devices)?;
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
    let classes = match shard {
        Some(s) if s.start.checked_add(v).is_none_or(|end| end > s.global_vocab) => {
            return Err(Error::shape(
                OP,
                format!(
                    "a shard of {v} classes from class {} does not fit a vocabulary of {}",
                    s.start, s.global_vocab
                ),
            ));
        }
        Some(s) => s.global_vocab,
        None => v,
    };
    if let Some(c) = &o.weight
        && c.shape != [classes]
    {
        return Err(Error::shape(OP, format!("the class weights must be ({classes}), got {:?}", c.shape)));
    }
    if let Some(s) = &o.token_weight
        && s.shape != lead
    {
        return Err(Error::shape(
            OP,
            format!("token_weight must have the targets' shape {lead:?}, got {:?}", s.shape),
        ));
    }
    if targets.shape != lead {
        return Err(Error::shape(
            OP,
            format!("x {:?} needs targets {lead:?}, got {:?}", x.shape, targets.shape),
        ));
    }
    Ok((h, v, lead))
}

/// Checks the scalar options against their domains.
fn check_options(o: &LinearCrossEntropy) -> Result<()> {
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
    if !(o.temperature.is_finite() && o.temperature > 0.0) {
        return Err(Error::invalid(OP, format!("temperature must be finite and > 0, got {}", o.temperature)));
    }
    if !(o.z_loss.is_finite() && o.z_loss >= 0.0) {
        return Err(Error::invalid(OP, format!("z_loss must be finite and ≥ 0, got {}", o.z_loss)));
    }
    if let Some(eps) = o.filter_eps
        && !(eps.is_finite() && eps >= 0.0)
    {
        return Err(Error::invalid(OP, format!("the filter's eps must be finite and ≥ 0, got {eps}")));
    }
    Ok(())
}
