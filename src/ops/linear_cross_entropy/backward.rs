//! The backward by tiles of recomputed logits: each tile's logits are recomputed into one
//! scratch buffer, turned into their gradient in place, and fed to the gradient GEMMs of
//! `linear` (dX over tiles, dW and db over row chunks, always in the same order).

use std::ops::Range;
use std::sync::Arc;

use super::options::OP;
use super::output::LinearCrossEntropyOutput;
use super::plan::{Job, Prep, TilePlan};
use crate::error::Result;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::pipeline::Pipeline;
use crate::kernels::KernelId;
use crate::kernels::linear as gemm_bindings;
use crate::kernels::linear_cross_entropy::{
    DENOMS, FLAGS, GRAD, LOSS, Params, ROW_STATS, SCRATCH, STAT_PLANES, TARGETS,
};
use crate::ops::Reduction;
use crate::ops::linear::{Gemm, GradGemms, GradPiece, LinearGrads};
use crate::tensor::{Storage, Tensor};

/// What every tile of one backward shares: its buffers and pipelines.
struct Tiles<'t> {
    prep: &'t Prep,
    grad: &'t Tensor,
    /// Per-row losses and statistics (lse, max, log Σ): written by whole-row tiles, the
    /// statistics read otherwise.
    loss_rows: Arc<Storage>,
    stats: Arc<Storage>,
    scratch: Arc<Storage>,
    /// One flag per 64 columns of a tile (the gradient filter).
    flags: Arc<Storage>,
    whole: bool,
    filter: bool,
    /// Which per-token gradients follow the loss's in `grad` (1 logprob, 2 entropy).
    token_grads: u32,
    tile_grad: Arc<Pipeline>,
    gemms: GradGemms,
    grads: &'t LinearGrads,
}

/// One tile: rows `r0..r0 + rn` (the `chunk`-th chunk of rows) × vocabulary columns `cols`
/// (the `index`-th tile of the chunk).
#[derive(Clone)]
struct Tile {
    chunk: usize,
    index: usize,
    r0: usize,
    rn: usize,
    cols: Range<usize>,
}

impl Tile {
    fn bytes(&self) -> u64 {
        (self.rn * self.cols.len()) as u64 * 4
    }
}

impl Job<'_> {
    /// dX, dW, db by tiles of recomputed logits; with the forward's row statistics absent
    /// (whole rows) also the loss. `token_grads` says which per-token gradients follow the
    /// loss's in `grad` (the kernel's bits: 1 logprob, 2 entropy).
    pub(super) fn grads(
        &self,
        prep: &Prep,
        grad: &Tensor,
        stats: Option<&Tensor>,
        plan: TilePlan,
        token_grads: u32,
    ) -> Result<(LinearGrads, Option<LinearCrossEntropyOutput>)> {
        let dev = self.dev;
        let (n, v) = (self.n, self.v);
        let mut checks = self.checks(prep);
        checks.extend(grad.checks.iter().cloned());
        let grads = LinearGrads::with_checks(
            Tensor::empty(dev, self.x.shape.clone())?,
            Tensor::empty(dev, self.w.shape.clone())?,
            Tensor::empty(dev, vec![v])?,
            &checks,
        );
        if n == 0 || v == 0 {
            grads.record_zero();
            return Ok((grads, None));
        }
        let tiles = Tiles { token_grads, ..self.tile_run(prep, grad, stats, plan, &grads)? };
        let columns = self.tiles(plan);
        for (chunk, r0) in (0..n).step_by(plan.rows).enumerate() {
            let rn = plan.rows.min(n - r0);
            for (index, cols) in columns.iter().enumerate() {
                let tile = Tile { chunk, index, r0, rn, cols: cols.clone() };
                self.tile_logits(&tiles, &tile)?;
                self.tile_gradient(&tiles, &tile)?;
                for (piece, p) in self.pieces(&tile.cols).iter().enumerate() {
                    self.accumulate(&tiles, &tile, piece, p)?;
                }
            }
        }
        let out = if tiles.whole {
            Some(self.finish_loss(prep, tiles.loss_rows, tiles.stats, None)?)
        } else {
            None
        };
        Ok((grads, out))
    }

    /// The buffers and pipelines of a backward.
    fn tile_run<'t>(
        &self,
        prep: &'t Prep,
        grad: &'t Tensor,
        stats: Option<&Tensor>,
        plan: TilePlan,
        grads: &'t LinearGrads,
    ) -> Result<Tiles<'t>> {
        let (dev, n) = (self.dev, self.n as u64);
        let whole = stats.is_none();
        let filter = self.o.filter_eps.is_some();
        // Every tile reads this call's statistics: the forward's lse, max and log Σ (copied in,
        // unless the forward wrote them there) next to this call's token weights.
        let loss_rows = match stats {
            Some(s) => {
                if !Arc::ptr_eq(&s.storage, &prep.stats) {
                    let (src, dst) = (s.storage.buffer(), prep.stats.buffer());
                    // lse, max, log Σ and entropy; the token weights are this call's.
                    let bytes = n * 4 * (STAT_PLANES - 1);
                    dev.record(|enc| enc.copy_buffer_to_buffer(src, 0, dst, 0, bytes));
                }
                Storage::alloc(dev, 4)?
            }
            None => Storage::alloc(dev, n * 4)?,
        };
        let stats = prep.stats.clone();
        let constants = [("HAVE_LSE", (!whole) as u8 as f64), ("FILTER", filter as u8 as f64), self.capped()];
        Ok(Tiles {
            prep,
            grad,
            loss_rows,
            stats,
            scratch: Storage::alloc(dev, (plan.rows * plan.cols) as u64 * 4)?,
            flags: Storage::alloc(dev, plan.cols.div_ceil(64) as u64 * 4)?,
            whole,
            filter,
            token_grads: 0,
            tile_grad: KernelId::LinearCrossEntropy.pipeline(dev, "tile_grad", &constants)?,
            gemms: GradGemms::new(dev, self.x.dtype, self.w.dtype, self.staged)?,
            grads,
        })
    }

    /// The tile's logits into the scratch, shard by shard of W.
    fn tile_logits(&self, t: &Tiles<'_>, tile: &Tile) -> Result<()> {
        let (h64, tl) = (self.h as u64, tile.cols.len() as u64);
        for p in &self.pieces(&tile.cols) {
            let bias = match self.bias {
                Some(b) => {
                    Bind::range(gemm_bindings::BIAS, b.storage.buffer(), tile.cols.start as u64 * 4, tl * 4)
                }
                None => Bind::all(gemm_bindings::BIAS, self.dummy()),
            };
            Gemm {
                x: self.x,
                x_first: tile.r0 as u64 * h64,
                w: self.w,
                w_first: p.start as u64 * h64,
                bias,
                has_bias: self.bias.is_some(),
                y: Bind::range(gemm_bindings::Y, t.scratch.buffer(), 0, tile.bytes()),
                m: tile.rn as u64,
                n: p.len() as u64,
                k: h64,
                ldy: tl,
                n_base: (p.start - tile.cols.start) as u64,
            }
            .record(self.dev, self.o.kernel, OP, &self.x.shape)?;
        }
        Ok(())
    }

    /// The tile's logits turned into their gradient in place (and, for whole rows, the loss and
    /// log-sum-exp of each row first), with the filter's flags.
    fn tile_gradient(&self, t: &Tiles<'_>, tile: &Tile) -> Result<()> {
        let tl = tile.cols.len() as u64;
        if t.filter {
            self.dev.record(|enc| enc.clear_buffer(t.flags.buffer(), 0, Some(tl.div_ceil(64) * 4)));
        }
        let params = Params {
            filter_eps: self.o.filter_eps.unwrap_or(0.0),
            m: tile.rn as u32,
            n: tl as u32,
            row_base: tile.r0 as u32,
            v_base: tile.cols.start as u32,
            g_mode: (self.o.reduction != Reduction::None) as u32,
            ld: tl as u32,
            token_grads: t.token_grads,
            ..self.params()
        };
        dispatch(
            self.dev,
            &t.tile_grad,
            bytemuck::bytes_of(&params),
            &[
                self.weight_bind(),
                Bind::all(TARGETS, self.targets.storage.buffer()),
                Bind::all(LOSS, t.loss_rows.buffer()),
                Bind::all(ROW_STATS, t.stats.buffer()),
                Bind::all(DENOMS, t.prep.denoms.buffer()),
                Bind::all(GRAD, t.grad.storage.buffer()),
                Bind::range(SCRATCH, t.scratch.buffer(), 0, tile.bytes()),
                Bind::all(FLAGS, t.flags.buffer()),
            ],
            tile.rn as u64,
            &[tl, t.whole as u64, t.filter as u64],
        )
    }

    /// The tile's gradient G over the columns `p` (one shard of W) into the gradients:
    /// dX (+)= G·W over the tiles and shards in order, dW (+)= Gᵀ·X and db (+)= Σ_rows G over
    /// the row chunks in order.
    fn accumulate(&self, t: &Tiles<'_>, tile: &Tile, piece: usize, p: &Range<usize>) -> Result<()> {
        let piece = GradPiece {
            g: t.scratch.buffer(),
            offset: (p.start - tile.cols.start) as u64 * 4,
            bytes: tile.bytes(),
            ld: tile.cols.len() as u64,
            x: self.x,
            w: self.w,
            rows: tile.r0..tile.r0 + tile.rn,
            cols: p.clone(),
            accumulate_dx: tile.index > 0 || piece > 0,
            accumulate_dw: tile.chunk > 0,
            flags: t.filter.then(|| (t.flags.buffer(), (p.start - tile.cols.start) as u32)),
        };
        t.gemms.record(self.dev, &piece, t.grads)
    }
}
