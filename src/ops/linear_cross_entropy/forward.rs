//! The split-V forward: each thread owns a block of rows and a slice of the vocabulary, folds
//! its logits into online log-sum-exp partials, and a second kernel merges each row's partials
//! in slice order.

use std::ops::Range;
use std::sync::Arc;

use super::options::OP;
use super::output::{LinearCrossEntropyOutput, SHARD_STATE_WORDS, Source, TokenOutputs};
use super::plan::{Job, Prep};
use crate::error::Result;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::staging::input;
use crate::kernels::KernelId;
use crate::kernels::gemm::{LCE_BLOCK, LCE_BLOCK_SMALL, LCE_BLOCK_STAGED};
use crate::kernels::linear_cross_entropy::{
    BIAS, DENOMS, LOSS, PART_WORDS, PARTS, Params, ROW_STATS, STAT_PLANES, TARGETS, TOKEN_OUT, TOKEN_PLANES,
    W, X, fold_trips, partials_trips,
};
use crate::ops::budget::{exceeded, fits, largest_fitting};
use crate::ops::linear::gemm_reads;
use crate::ops::reduce::{Finish, reduce};
use crate::ops::{Reduction, check_u32};
use crate::tensor::{Indices, Storage, Tensor};

/// One partial: (max, t, Σ w·(z − x0), target logit), (x0, Σ w, x0 set, entropy sum), argmax
/// and an unused word.
const PART_BYTES: u64 = 4 * PART_WORDS;

impl Job<'_> {
    /// The per-row losses (already divided for `Mean`) reduced as asked, and the row
    /// statistics' first plane copied out as `lse`.
    pub(super) fn finish_loss(
        &self,
        prep: &Prep,
        rows: Arc<Storage>,
        stats: Arc<Storage>,
        tokens: Option<&Storage>,
    ) -> Result<LinearCrossEntropyOutput> {
        let checks = self.checks(prep);
        let n = self.n;
        let lse = Storage::alloc(self.dev, n as u64 * 4)?;
        if n > 0 {
            self.dev
                .record(|enc| enc.copy_buffer_to_buffer(stats.buffer(), 0, lse.buffer(), 0, n as u64 * 4));
        }
        let loss = match self.o.reduction {
            Reduction::None => Tensor { checks: checks.clone(), ..Tensor::new(rows, self.lead.clone()) },
            Reduction::Sum => reduce(self.dev, &rows, None, n, Finish::Sum, 0.0, checks.clone())?,
            // Rows hold their share of the mean already; no rows is a mean over nothing.
            Reduction::Mean if n == 0 => {
                reduce(self.dev, &rows, None, 0, Finish::MeanCount, 0.0, checks.clone())?
            }
            Reduction::Mean => reduce(self.dev, &rows, None, n, Finish::Sum, 0.0, checks.clone())?,
        };
        let tokens = tokens.map(|t| self.token_outputs(t, &checks)).transpose()?;
        Ok(LinearCrossEntropyOutput {
            loss,
            lse: Tensor { checks: checks.clone(), ..Tensor::new(lse, self.lead.clone()) },
            tokens,
            stats: Tensor { checks, ..Tensor::new(stats, vec![STAT_PLANES as usize, n]) },
            source: Source::default(),
        })
    }

    /// The per-token outputs, each plane of `planes` copied into a tensor of its own, and the
    /// token accuracy (correct over counted).
    fn token_outputs(&self, planes: &Storage, checks: &[crate::tensor::ValueCheck]) -> Result<TokenOutputs> {
        let (dev, n) = (self.dev, self.n as u64);
        let plane = |k: u64| -> Result<Arc<Storage>> {
            let out = Storage::alloc(dev, n.max(1) * 4)?;
            if n > 0 {
                dev.record(|enc| {
                    enc.copy_buffer_to_buffer(planes.buffer(), k * n * 4, out.buffer(), 0, n * 4)
                });
            }
            Ok(out)
        };
        let tensor =
            |s: Arc<Storage>| Tensor { checks: checks.to_vec(), ..Tensor::new(s, self.lead.clone()) };
        let (correct, counted) = (plane(3)?, plane(4)?);
        let accuracy = if n == 0 {
            reduce(dev, &correct, None, 0, Finish::MeanCount, 0.0, checks.to_vec())?
        } else {
            reduce(dev, &correct, Some(&counted), self.n, Finish::MeanWeights, 0.0, checks.to_vec())?
        };
        Ok(TokenOutputs {
            logprob: tensor(plane(0)?),
            entropy: tensor(plane(1)?),
            argmax: Indices { storage: plane(2)?, shape: self.lead.clone(), checks: checks.to_vec() },
            correct: tensor(correct),
            accuracy,
        })
    }

    /// Split-V forward: partials per (row, slice), then the fixed-order fold; with `tokens`
    /// the per-token outputs too (and the entropy plane of the statistics).
    pub(super) fn forward(&self, prep: &Prep, tokens: bool) -> Result<LinearCrossEntropyOutput> {
        let dev = self.dev;
        let n = self.n;
        let rows = Storage::alloc(dev, n as u64 * 4)?;
        let stats = prep.stats.clone();
        let token_out =
            if tokens { Some(Storage::alloc(dev, n.max(1) as u64 * 4 * TOKEN_PLANES)?) } else { None };
        if n == 0 {
            return self.finish_loss(prep, rows, stats, token_out.as_deref());
        }
        let s = self.slicing()?;
        check_u32(OP, n * s.stride * (PART_BYTES as usize / 4))?;
        let parts = Storage::alloc(dev, (n * s.stride) as u64 * PART_BYTES)?;
        let constants = [("TOKEN_OUTPUTS", tokens as u8 as f64)];
        self.record_partials(&s, &parts, &constants)?;
        // A written binding may not share the read-only stand-in buffer: its own, unwritten.
        let unused = Storage::alloc(dev, 4)?;
        let outs = [&*rows, &*stats, &*prep.denoms, token_out.as_deref().unwrap_or(&unused)];
        self.fold(&s, &parts, &constants, outs)?;
        self.finish_loss(prep, rows, stats, token_out.as_deref())
    }

    /// A vocabulary shard's per-row states (ten words a row, `SHARD_STATE_WORDS`): its split-V
    /// partials merged in slice order, not finished (the combine step merges the shards').
    pub(super) fn shard_states(&self) -> Result<Arc<Storage>> {
        let (dev, n) = (self.dev, self.n);
        let words = Storage::alloc(dev, (n * SHARD_STATE_WORDS).max(1) as u64 * 4)?;
        if n == 0 {
            return Ok(words);
        }
        let s = self.slicing()?;
        check_u32(OP, n * s.stride * (PART_BYTES as usize / 4))?;
        let parts = Storage::alloc(dev, (n * s.stride) as u64 * PART_BYTES)?;
        let constants = [("TOKEN_OUTPUTS", 1.0), ("STATE_OUT", 1.0)];
        self.record_partials(&s, &parts, &constants[..1])?;
        // Bindings the state fold does not touch, each its own (written ones may not share).
        let (loss, stats, denoms) =
            (Storage::alloc(dev, 4)?, Storage::alloc(dev, 4)?, Storage::alloc(dev, 16)?);
        self.fold(&s, &parts, &constants, [&loss, &stats, &denoms, &words])?;
        Ok(words)
    }

    /// The fold over each row's partials, writing `[loss, row stats, denominators, token out]`.
    fn fold(
        &self,
        s: &Slicing,
        parts: &Storage,
        constants: &[(&'static str, f64)],
        [loss, stats, denoms, token_out]: [&Storage; 4],
    ) -> Result<()> {
        let fold = KernelId::LinearCrossEntropy.pipeline(self.dev, "fold", constants)?;
        let params = Params { m: self.n as u32, part_stride: s.stride as u32, ..self.params() };
        dispatch(
            self.dev,
            &fold,
            bytemuck::bytes_of(&params),
            &[
                self.weight_bind(),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::all(PARTS, parts.buffer()),
                Bind::all(LOSS, loss.buffer()),
                Bind::all(ROW_STATS, stats.buffer()),
                Bind::all(DENOMS, denoms.buffer()),
                Bind::all(TOKEN_OUT, token_out.buffer()),
            ],
            (self.n as u64).div_ceil(64),
            &[s.stride as u64],
        )
    }

    /// How the vocabulary is sliced: enough threads to fill the adapter, no more partials than
    /// the scratch budget, and no thread looping past the loop budget (which outranks the
    /// memory cap: partials are `PART_BYTES` per row and slice).
    fn slicing(&self) -> Result<Slicing> {
        let (dev, n, v, h64) = (self.dev, self.n, self.v, self.h as u64);
        let (block, entry) = if self.staged {
            (LCE_BLOCK_STAGED, "partials_staged")
        } else if self.software {
            (LCE_BLOCK, "partials")
        } else {
            (LCE_BLOCK_SMALL, "partials_small")
        };
        // The staged entry loops over k four values a trip.
        let h_trips = if self.staged { h64.div_ceil(4) } else { h64 };
        let (block_rows, block_cols) = (block.0 as usize, block.1 as usize);
        let threads: usize = if self.software { 512 } else { 1 << 17 };
        let by_memory = (self.budget / (PART_BYTES * n as u64)).max(1) as usize;
        // A thread loops (k + 2) times per block of columns.
        let steps = largest_fitting(dev, 1, u32::MAX as u64, |steps| partials_trips(steps, h_trips))
            .ok_or_else(|| exceeded(dev, OP, &self.x.shape, partials_trips(1, h_trips)))?;
        let shards: Vec<Range<usize>> = self.pieces(&(0..v));
        // Staged, each dispatch covers one chunk of x and one shard of W (small copies): its
        // slices split the shard, and every later shard merges into the same slots.
        let (rows, cols) = if self.staged {
            (n.min(self.x_rows), shards.iter().map(|s| s.len()).max().unwrap_or(0))
        } else {
            (n, v)
        };
        let row_blocks = rows.div_ceil(block_rows);
        let slices = threads.div_ceil(row_blocks).min(cols.div_ceil(block_cols)).min(by_memory).max(1);
        let slice_w = cols.div_ceil(slices).div_ceil(block_cols) * block_cols;
        let slice_w = slice_w.min((steps as usize).saturating_mul(block_cols));
        let per_shard: Vec<usize> = shards.iter().map(|s| s.len().div_ceil(slice_w)).collect();
        let stride: usize =
            if self.staged { per_shard.iter().copied().max().unwrap_or(0) } else { per_shard.iter().sum() };
        if !fits(dev, fold_trips(stride as u64)) {
            return Err(exceeded(dev, OP, &self.x.shape, fold_trips(stride as u64)));
        }
        Ok(Slicing { entry, block_rows, block_cols, slice_w, shards, per_shard, stride, merge: self.staged })
    }

    /// The partials of every (row, slice), row chunk by row chunk and shard by shard of W.
    fn record_partials(&self, s: &Slicing, parts: &Storage, constants: &[(&'static str, f64)]) -> Result<()> {
        let (dev, n, h64) = (self.dev, self.n, self.h as u64);
        let (xd, wd) = (self.x.dtype, self.w.dtype);
        let reads = if self.staged {
            let staged = [
                (X, self.x.storage.buffer(), self.x.numel(), xd),
                (W, self.w.storage.buffer(), self.w.numel(), wd),
            ];
            KernelId::LinearCrossEntropy.reads(dev, &staged)?
        } else {
            gemm_reads(&[(X, xd), (W, wd)])
        };
        let constants = [constants, &[self.capped()]].concat();
        let pipe = KernelId::LinearCrossEntropy.pipeline_for(dev, reads, s.entry, &constants)?;
        let steps_run = (s.slice_w / s.block_cols) as u64;
        for r0 in (0..n).step_by(self.x_rows) {
            let rn = self.x_rows.min(n - r0);
            let mut part_base = 0;
            for (i, (shard, &sl)) in s.shards.iter().zip(&s.per_shard).enumerate() {
                let params = Params {
                    m: rn as u32,
                    n: shard.len() as u32,
                    row_base: r0 as u32,
                    v_base: shard.start as u32,
                    slices: sl as u32,
                    slice_w: s.slice_w as u32,
                    part_stride: s.stride as u32,
                    part_base: part_base as u32,
                    merge_parts: (s.merge && i > 0) as u32,
                    ..self.params()
                };
                if !s.merge {
                    part_base += sl;
                }
                // x's chunk and W's shard, bound in place or (staged) copied into textures.
                let x_in = input(dev, reads, X, self.x.storage.buffer(), r0 as u64 * h64, rn as u64 * h64);
                let w_first = shard.start as u64 * h64;
                let w_in = input(dev, reads, W, self.w.storage.buffer(), w_first, shard.len() as u64 * h64);
                dispatch(
                    dev,
                    &pipe,
                    bytemuck::bytes_of(&params),
                    &[
                        x_in.bind(),
                        w_in.bind(),
                        Bind::all(BIAS, self.bias_buf()),
                        self.weight_bind(),
                        Bind::all(TARGETS, self.targets.storage.buffer()),
                        Bind::all(PARTS, parts.buffer()),
                    ],
                    (rn.div_ceil(s.block_rows) * sl).div_ceil(64) as u64,
                    &[steps_run, h64],
                )?;
            }
        }
        Ok(())
    }
}

/// The split-V forward's slicing of the vocabulary.
struct Slicing {
    /// The partials entry point (its register block).
    entry: &'static str,
    block_rows: usize,
    block_cols: usize,
    /// Columns per slice, a multiple of `block_cols`.
    slice_w: usize,
    /// W's shards and their slices.
    shards: Vec<Range<usize>>,
    per_shard: Vec<usize>,
    /// Slices per row, over all shards (or, merging, of the widest shard).
    stride: usize,
    /// Every shard after the first merges its runs into the first's slots.
    merge: bool,
}
