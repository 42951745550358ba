//! The LM head with W split by vocabulary rows over several devices or processes, in the style
//! of Megatron's vocabulary-parallel cross-entropy. The protocol, for shards `k = 0 .. K` holding
//! the classes `start_k .. start_k + V_k` (in order, together the whole vocabulary), every rank
//! holding x, the targets (global class ids) and the options (class weights of the whole
//! vocabulary, token weights):
//!
//! 1. **State** (each shard, on its device): [`LinearCrossEntropy::shard_state`] computes its
//!    classes' logits tile by tile and folds them into one [`ShardState`] per row — ten words
//!    (its max m, Σ e^(z − m) less the max's term, Σ w·(z − x0) and Σ w over its classes, its
//!    x0, the target's logit if the target is one of its classes, Σ e^(z − m)·(z − m), its
//!    argmax). `O(N)` words: what an all-gather (MPI, NCCL through the caller's framework)
//!    carries.
//! 2. **Combine** (on the host of every rank, after the all-gather):
//!    [`LinearCrossEntropy::combine`] merges the states of
//!    each row in shard order — the same online merge as the split-V fold, in f32, so every rank
//!    that runs it gets the same bits — and finishes the loss, the log-sum-exp and the per-token
//!    outputs ([`Combined`]).
//! 3. **Backward** (each shard, on its device): [`LinearCrossEntropy::shard_backward`] needs only
//!    the combined row statistics (and the upstream gradients) to give the shard's dW and db and
//!    its share of dX, `G_k·W_k`; the caller sums the shares of dX over the shards (an
//!    all-reduce).

use super::options::{LinearCrossEntropy, OP};
use super::output::{SHARD_STATE_WORDS, ShardState, TokenGrads, VocabShard};
use super::plan::{Job, Operands};
use crate::error::{Error, Result};
use crate::kernels::linear_cross_entropy::STAT_PLANES;
use crate::ops::Reduction;
use crate::ops::linear::LinearGrads;
use crate::tensor::{Indices, Tensor};

/// The combined results of a vocabulary-split head (host vectors, one value per row unless
/// said), as [`LinearCrossEntropy::forward`] and its token outputs would give them on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    /// The loss: one value per row for `Reduction::None`, else one value.
    pub loss: Vec<f32>,
    pub lse: Vec<f32>,
    /// The target's log-probability (0 for ignored rows).
    pub logprob: Vec<f32>,
    /// The softmax's entropy (0 for ignored rows).
    pub entropy: Vec<f32>,
    /// The first index of the row's largest logit (−1 for a NaN row).
    pub argmax: Vec<i64>,
    /// 1 where the argmax is the target (0 elsewhere and for ignored rows).
    pub correct: Vec<f32>,
    /// The mean of `correct` over the counted rows (NaN when none counts).
    pub accuracy: f32,
    /// Four planes of N for the shards' backward: lse, max, log Σ exp(z − max), entropy.
    stats: Vec<f32>,
}

/// A row's merged state, as the kernel's `Run`.
#[derive(Clone, Copy, Debug)]
struct Run {
    m: f32,
    t: f32,
    zsum: f32,
    zt: f32,
    x0: f32,
    wsum: f32,
    x0_set: f32,
    ent: f32,
    arg: u32,
    bad: bool,
}

const NO_COLUMN: u32 = u32::MAX;
const NEG_BIG: f32 = -1.0e30;

impl Run {
    fn empty() -> Run {
        Run {
            m: NEG_BIG,
            t: -1.0,
            zsum: 0.0,
            zt: 0.0,
            x0: 0.0,
            wsum: 0.0,
            x0_set: 0.0,
            ent: 0.0,
            arg: NO_COLUMN,
            bad: false,
        }
    }

    fn from_words(w: &[u32]) -> Run {
        let f = |k: usize| f32::from_bits(w[k]);
        if f(0).is_nan() {
            return Run { bad: true, ..Run::empty() };
        }
        Run {
            m: f(0),
            t: f(1),
            zsum: f(2),
            zt: f(3),
            x0: f(4),
            wsum: f(5),
            x0_set: f(6),
            ent: f(7),
            arg: w[8],
            bad: false,
        }
    }

    /// The kernel's `run_merge`: b's classes follow a's.
    fn merge(a: Run, b: Run) -> Run {
        let x0 = if a.x0_set != 0.0 { a.x0 } else { b.x0 };
        let zsum = (a.zsum + (a.x0 - x0) * a.wsum) + (b.zsum + (b.x0 - x0) * b.wsum);
        let (hi, lo) = if a.m >= b.m { (a, b) } else { (b, a) };
        let (m, t) = (hi.m, hi.t + (lo.t + 1.0) * (lo.m - hi.m).exp());
        let ent_to = |r: Run| (r.m - m).exp() * (r.ent + (r.m - m) * (r.t + 1.0));
        let arg = if b.m > a.m || (b.m == a.m && b.arg < a.arg) { b.arg } else { a.arg };
        Run {
            m,
            t,
            zsum,
            zt: a.zt + b.zt,
            x0,
            wsum: a.wsum + b.wsum,
            x0_set: a.x0_set.max(b.x0_set),
            ent: ent_to(a) + ent_to(b),
            arg,
            bad: a.bad || b.bad,
        }
    }

    /// log Σ exp(z − m) from t as the prelude's `log1p_state`.
    fn log_sum(&self) -> f32 {
        if (0.0..=1.0).contains(&self.t) { self.t.ln_1p() } else { (1.0 + self.t).ln() }
    }
}

impl LinearCrossEntropy {
    /// Step 1 of the vocabulary-parallel protocol (see the module): the per-row state of the
    /// shard `shard` whose W rows are `w_shard` `(V_k, H)` (and bias `(V_k)`), for hidden
    /// states x `(.., H)` and the targets as global class ids; class weights, if any, are the
    /// whole vocabulary's. Read back to the host.
    pub fn shard_state(
        &self,
        x: &Tensor,
        w_shard: &Tensor,
        b_shard: Option<&Tensor>,
        targets: &Indices,
        shard: VocabShard,
    ) -> Result<ShardState> {
        let words = self.on_shard((x, w_shard, b_shard, targets, shard), |job| {
            let words = job.shard_states()?;
            Ok(Indices { storage: words, shape: vec![job.n * SHARD_STATE_WORDS], checks: Vec::new() })
        })?;
        let rows = targets.numel();
        let words: Vec<u32> =
            words.to_vec()?.into_iter().map(|w| w as u32).take(rows * SHARD_STATE_WORDS).collect();
        Ok(ShardState { shard, rows, classes: w_shard.shape.first().copied().unwrap_or(0), words })
    }

    /// Step 2: merges the shards' states (in order of their classes, which must cover the
    /// vocabulary once) row by row and finishes the loss, the log-sum-exp and the per-token
    /// outputs, with these options (class and token weights read back from their devices).
    pub fn combine(&self, targets: &Indices, states: &[ShardState]) -> Result<Combined> {
        let n = targets.numel();
        let vocab = check_cover(states, n)?;
        // The options' weights, as the shards' states were made with (shard_state checks the same).
        if let Some(c) = &self.weight
            && c.shape != [vocab]
        {
            return Err(Error::shape(OP, format!("the class weights must be ({vocab}), got {:?}", c.shape)));
        }
        if let Some(t) = &self.token_weight
            && t.shape != targets.shape
        {
            return Err(Error::shape(
                OP,
                format!("token_weight must have the targets' shape {:?}, got {:?}", targets.shape, t.shape),
            ));
        }
        let targets = targets.to_vec()?;
        let cw = self.weight.as_ref().map(|w| w.to_vec()).transpose()?;
        let tw = self.token_weight.as_ref().map(|w| w.to_vec()).transpose()?;
        let class_w = |c: usize| cw.as_ref().map_or(1.0, |w| w[c]);
        let total_w: f32 = cw.as_ref().map_or(vocab as f32, |w| w.iter().sum());
        let (eps, vf) = (self.label_smoothing, vocab as f32);
        let mut out = Combined {
            loss: Vec::with_capacity(n),
            lse: Vec::with_capacity(n),
            logprob: Vec::with_capacity(n),
            entropy: Vec::with_capacity(n),
            argmax: Vec::with_capacity(n),
            correct: Vec::with_capacity(n),
            accuracy: 0.0,
            stats: vec![0.0; 4 * n],
        };
        let (mut ce_rows, mut zl_rows) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut weight_sum, mut scale_sum, mut counted, mut right) = (0f64, 0f64, 0f64, 0f64);
        for r in 0..n {
            let row = |s: &ShardState| {
                Run::from_words(&s.words[r * SHARD_STATE_WORDS..(r + 1) * SHARD_STATE_WORDS])
            };
            let run = states.iter().map(row).fold(Run::empty(), Run::merge);
            let log_sum = run.log_sum();
            let lse = run.m + log_sum;
            let entropy = log_sum - run.ent / (run.t + 1.0);
            let nan = |v: f32| if run.bad { f32::NAN } else { v };
            out.lse.push(nan(lse));
            for (k, v) in [lse, run.m, log_sum, entropy].into_iter().enumerate() {
                out.stats[k * n + r] = nan(v);
            }
            let t = targets[r];
            let counts = t as i64 != self.ignore_index;
            if counts && (t < 0 || t as usize >= vocab) {
                return Err(Error::TargetOutOfRange {
                    op: OP,
                    position: r,
                    value: t as i64,
                    classes: vocab,
                    ignore_index: self.ignore_index,
                });
            }
            let scale = tw.as_ref().map_or(1.0, |w| w[r]);
            out.argmax.push(if run.bad { -1 } else { run.arg as i64 });
            if !counts {
                ce_rows.push(0.0);
                zl_rows.push(0.0);
                out.logprob.push(0.0);
                out.entropy.push(0.0);
                out.correct.push(0.0);
                continue;
            }
            let t = t as usize;
            let mut ce = class_w(t) * (log_sum - (run.zt - run.m));
            if eps > 0.0 {
                let above_x0 = (run.m - run.x0) + log_sum;
                ce = (1.0 - eps) * ce + eps / vf * (above_x0 * total_w - run.zsum);
            }
            ce_rows.push(nan(scale * ce));
            zl_rows.push(nan(scale * self.z_loss * lse * lse));
            weight_sum += (scale * class_w(t)) as f64;
            scale_sum += scale as f64;
            counted += 1.0;
            out.logprob.push(nan((run.zt - run.m) - log_sum));
            out.entropy.push(nan(entropy));
            let hit = !run.bad && run.arg as usize == t;
            right += hit as u8 as f64;
            out.correct.push(hit as u8 as f32);
        }
        out.accuracy = if counted == 0.0 { f32::NAN } else { (right / counted) as f32 };
        let sum = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>();
        out.loss = match self.reduction {
            Reduction::None => ce_rows.iter().zip(&zl_rows).map(|(a, b)| a + b).collect(),
            Reduction::Sum => vec![(sum(&ce_rows) + sum(&zl_rows)) as f32],
            Reduction::Mean if weight_sum == 0.0 => vec![f32::NAN],
            Reduction::Mean => vec![(sum(&ce_rows) / weight_sum + sum(&zl_rows) / scale_sum) as f32],
        };
        Ok(out)
    }

    /// Step 3: the shard's gradients for the upstream gradient of the loss (and of the
    /// per-token outputs) given the combined statistics: dW and db of the shard's classes and
    /// the shard's share of dX (the caller sums the shares over the shards).
    #[allow(clippy::too_many_arguments)]
    pub fn shard_backward(
        &self,
        x: &Tensor,
        w_shard: &Tensor,
        b_shard: Option<&Tensor>,
        targets: &Indices,
        shard: VocabShard,
        combined: &Combined,
        grad_output: &Tensor,
        tokens: TokenGrads<'_>,
    ) -> Result<LinearGrads> {
        self.on_shard((x, w_shard, b_shard, targets, shard), |job| {
            job.check_grad(grad_output)?;
            if combined.lse.len() != job.n {
                return Err(Error::shape(
                    OP,
                    format!("the combined rows are {}, x has {}", combined.lse.len(), job.n),
                ));
            }
            let (grad, bits) = job.upstream(grad_output, tokens)?;
            let prep = job.prepare()?;
            let plan = job.tile_plan(false)?;
            // The statistics' planes as the kernel reads them; the last (token weights) comes
            // from this call's target pass.
            let mut planes = combined.stats.clone();
            planes.resize(STAT_PLANES as usize * job.n, 0.0);
            let stats = x.device().tensor(&planes, &[STAT_PLANES as usize, job.n])?;
            let grads = job.grads(&prep, &grad, Some(&stats), plan, bits)?.0;
            grads.typed(x.dtype, w_shard.dtype, self.outputs)
        })
    }
}

/// A shard's operands: x, its W rows and bias, the targets and its place in the vocabulary.
type ShardOperands<'a> = (&'a Tensor, &'a Tensor, Option<&'a Tensor>, &'a Indices, VocabShard);

impl LinearCrossEntropy {
    /// Runs `f` on the shard's job, as one operation of x's device.
    fn on_shard<T>(
        &self,
        (x, w_shard, b_shard, targets, shard): ShardOperands<'_>,
        f: impl FnOnce(&Job) -> Result<T>,
    ) -> Result<T> {
        x.device().op(OP, || {
            let ops = Operands::new(self, x, w_shard, b_shard)?;
            let job = Job::new(&ops.options, ops.x, ops.weight, ops.bias.as_ref(), targets, Some(shard))?;
            f(&job)
        })
    }
}

/// Checks that the states cover classes 0 .. V once, in order, each of `rows` rows; returns V.
fn check_cover(states: &[ShardState], rows: usize) -> Result<usize> {
    let Some(first) = states.first() else {
        return Err(Error::invalid(OP, "combine needs the state of at least one shard"));
    };
    let vocab = first.shard.global_vocab;
    let mut next = 0;
    for s in states {
        if s.shard.global_vocab != vocab
            || s.shard.start != next
            || s.rows != rows
            || s.words.len() != rows * SHARD_STATE_WORDS
        {
            return Err(Error::shape(
                OP,
                format!(
                    "shard states must cover classes 0..{vocab} in order, {rows} rows each; got one of classes {}..{} over {} rows",
                    s.shard.start,
                    s.shard.start + s.classes,
                    s.rows
                ),
            ));
        }
        next += s.classes;
    }
    if next != vocab {
        return Err(Error::shape(
            OP,
            format!("the shards cover classes 0..{next} of a vocabulary of {vocab}"),
        ));
    }
    Ok(vocab)
}
