//! `linear`: `y = x·Wᵀ + b` with W stored `(out, in)` as in PyTorch (`shaders/linear.wgsl`).

use std::sync::Arc;

use super::convert::f32_operand;
use super::linear_staged as staged;
use super::{Outputs, check_u32};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::gpu::pipeline::Pipeline;
use crate::gpu::spec::{Binding, InputPath, Reads};
use crate::kernels::KernelId;
use crate::kernels::gemm::{BLOCK_COLS, BLOCK_ROWS, GRAD_COLS, GRAD_ROWS};
use crate::kernels::linear::{A, B, BIAS, C, FLAGS, GradParams, Params, W, X, Y, grad_trips};
use crate::kernels::linear_staged::{self as staged_kernel, Params as StagedParams};
use crate::tensor::{Tensor, ValueCheck, same_device};

/// Elements of a block that starts every piece of a GEMM operand: 256 bytes of the narrowest of
/// `dtypes` (64 f32s, 128 halves). A storage binding's offset must be a multiple of the
/// adapter's offset alignment, at most 256 bytes, so a piece starting a whole number of blocks
/// (of rows, or of columns) into a row-major operand is aligned whatever the row length.
pub(crate) fn block_step(dtypes: &[DType]) -> usize {
    256 / dtypes.iter().map(|d| d.size()).min().unwrap_or(4)
}

/// The most k one gradient-GEMM (or column-sum) invocation may loop over on `dev`: a multiple
/// of `step` (a [`block_step`]), so that pieces of k start at aligned offsets.
pub(crate) fn grad_max_k(dev: &Device, step: usize) -> usize {
    let k = super::budget::largest_fitting(dev, step as u64, u32::MAX as u64, grad_trips);
    // The minimum budget always fits 128 (checked by a unit test).
    k.unwrap_or(step as u64) as usize
}

/// How a GEMM reads its staged operands (x, w or b): from storage buffers, each in its type.
pub(crate) fn gemm_reads(operands: &[(Binding, DType)]) -> Reads {
    operands.iter().fold(Reads::new(InputPath::Storage), |r, &(b, d)| r.with(b, d))
}

/// One `linear` GEMM, `y (=|+=) x·Wᵀ (+ b)`, over `m` rows of x and `n` rows of W (both `k`
/// wide) bound from the given elements (x and W of their element types, at offsets aligned to
/// the binding alignment), writing `y` (bound as [`Y`]) at columns `n_base..` of rows `ldy`
/// apart. k goes in pieces that fit the loop budget, added into y in order (the first writes
/// the bias).
pub(crate) struct Gemm<'a> {
    pub(crate) x: &'a Tensor,
    pub(crate) x_first: u64,
    pub(crate) w: &'a Tensor,
    pub(crate) w_first: u64,
    pub(crate) bias: Bind<'a>,
    pub(crate) has_bias: bool,
    pub(crate) y: Bind<'a>,
    pub(crate) m: u64,
    pub(crate) n: u64,
    pub(crate) k: u64,
    pub(crate) ldy: u64,
    pub(crate) n_base: u64,
}

impl Gemm<'_> {
    pub(crate) fn record(
        &self,
        dev: &Device,
        kernel: LinearKernel,
        op: &'static str,
        shape: &[usize],
    ) -> Result<()> {
        let (xd, wd) = (self.x.dtype, self.w.dtype);
        if kernel.staged(dev, self.x, self.w, &[(xd, self.k), (wd, self.k)])? {
            let params = StagedParams {
                m: self.m as u32,
                n: self.n as u32,
                k: self.k as u32,
                lda: self.k as u32,
                ldb: self.k as u32,
                ldc: self.ldy as u32,
                c_base: self.n_base as u32,
                has_bias: self.has_bias as u32,
                ..StagedParams::default()
            };
            return staged::record(
                dev,
                staged::Entry::Forward,
                staged::Operand::of(self.x, self.x_first, self.m * self.k),
                staged::Operand::of(self.w, self.w_first, self.n * self.k),
                Bind { binding: staged_kernel::BIAS, ..self.bias },
                Bind { binding: staged_kernel::C, ..self.y },
                params,
            );
        }
        let (id, (tile_m, tile_n)) = kernel.resolve(dev);
        let reads = gemm_reads(&[(X, xd), (W, wd)]);
        // The blocked kernel specialises the pieces after the first, which add into y.
        let specialised = id == KernelId::LinearBlocked;
        let pipeline = |accumulate: bool| {
            let constants: &[(&'static str, f64)] =
                if specialised { &[("ACCUMULATE", accumulate as u8 as f64)] } else { &[] };
            id.pipeline_for(dev, reads, "linear", constants)
        };
        let first = pipeline(false)?;
        let trips = |k: u64| first.entry.trips.at(&[k]);
        let step = block_step(&[xd, wd]) as u64;
        let piece = super::budget::largest_fitting(dev, step, self.k, trips)
            .ok_or_else(|| super::budget::exceeded(dev, op, shape, trips(step)))?;
        let tiles_n = self.n.div_ceil(tile_n);
        let rest = if piece < self.k { pipeline(true)? } else { Arc::clone(&first) };
        for k0 in (0..self.k).step_by(piece as usize) {
            let kk = piece.min(self.k - k0);
            let pipe = if k0 == 0 { &first } else { &rest };
            let params = Params {
                m: self.m as u32,
                n: self.n as u32,
                k: kk as u32,
                has_bias: self.has_bias as u32,
                ldy: self.ldy as u32,
                n_base: self.n_base as u32,
                tiles_n: tiles_n as u32,
                accumulate: (k0 > 0) as u32,
                ldk: self.k as u32,
                _pad: [0; 3],
            };
            let (x_len, w_len) = (self.m * self.k - k0, self.n * self.k - k0);
            dispatch(
                dev,
                pipe,
                bytemuck::bytes_of(&params),
                &[
                    Bind::range(X, self.x.storage.buffer(), xd.bytes(self.x_first + k0), xd.bytes(x_len)),
                    Bind::range(W, self.w.storage.buffer(), wd.bytes(self.w_first + k0), wd.bytes(w_len)),
                    self.bias,
                    self.y,
                ],
                self.m.div_ceil(tile_m) * tiles_n,
                &[kk],
            )?;
        }
        Ok(())
    }
}

/// `r` (bytes) of `buf` bound at `b`.
fn range(b: Binding, buf: &wgpu::Buffer, r: std::ops::Range<u64>) -> Bind<'_> {
    Bind::range(b, buf, r.start, r.end - r.start)
}

/// The grid of the gradient GEMMs' blocks.
const GRAD_BLOCK: (u64, u64) = (8 * GRAD_ROWS as u64, 8 * GRAD_COLS as u64);

/// The gradient GEMMs of `linear` fed from a tile of output gradients G held in a scratch buffer
/// (the LM heads' recomputed logits): dX (+)= G·W, dW (+)= Gᵀ·X and db (+)= Σ_rows G.
pub(crate) struct GradGemms {
    grad_input: Arc<Pipeline>,
    grad_weight: Arc<Pipeline>,
    colsum: Arc<Pipeline>,
    /// Run dX and dW on the staged GEMMs (pieces without the gradient filter).
    staged: bool,
}

/// One piece of a tile of G: its rows are rows `rows` of x (and of dX), its columns rows
/// `cols` of W (and of dW, db); it starts `offset` bytes into `g`, whose rows are `ld` floats
/// apart and which holds `bytes` bytes of the tile.
pub(crate) struct GradPiece<'a> {
    pub(crate) g: &'a wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) bytes: u64,
    pub(crate) ld: u64,
    pub(crate) x: &'a Tensor,
    pub(crate) w: &'a Tensor,
    pub(crate) rows: std::ops::Range<usize>,
    pub(crate) cols: std::ops::Range<usize>,
    /// Add into dX (an earlier piece of the same rows wrote it), or write it.
    pub(crate) accumulate_dx: bool,
    /// Add into dW and db (an earlier chunk of rows wrote them), or write them.
    pub(crate) accumulate_dw: bool,
    /// One flag per 64 columns of the tile from `flag_base` (the gradient filter), or none.
    pub(crate) flags: Option<(&'a wgpu::Buffer, u32)>,
}

impl GradGemms {
    /// The pipelines for x and W of these element types; `staged`: dX and dW of pieces without
    /// the filter run on the staged GEMMs (rows of whole texels: the caller checked).
    pub(crate) fn new(dev: &Device, x: DType, w: DType, staged: bool) -> Result<GradGemms> {
        Ok(GradGemms {
            staged,
            grad_input: KernelId::LinearGradInput.pipeline_for(dev, gemm_reads(&[(B, w)]), "gemm", &[])?,
            grad_weight: KernelId::LinearGradWeight.pipeline_for(dev, gemm_reads(&[(B, x)]), "gemm", &[])?,
            colsum: KernelId::LinearGradWeight.pipeline(dev, "colsum", &[])?,
        })
    }

    /// Records the three GEMMs of `p` into `grads` (f32 storage).
    pub(crate) fn record(&self, dev: &Device, p: &GradPiece<'_>, grads: &LinearGrads) -> Result<()> {
        // The staged GEMMs read G's rows from whole texels.
        if self.staged && p.flags.is_none() && p.ld.is_multiple_of(4) && (p.offset / 4).is_multiple_of(4) {
            self.record_staged(dev, p, grads)?;
        } else {
            self.record_blocked(dev, p, grads)?;
        }
        // db (+)= Σ_rows G, over the piece's columns.
        let (rn, pn) = (p.rows.len() as u64, p.cols.len() as u64);
        let params = GradParams {
            m: 1,
            n: pn as u32,
            k: rn as u32,
            lda: p.ld as u32,
            ldc: pn as u32,
            tiles_n: 1,
            accumulate: p.accumulate_dw as u32,
            filter: p.flags.is_some() as u32,
            flag_base: p.flags.map_or(0, |(_, b)| b),
            ..GradParams::default()
        };
        let db_cols = p.cols.start as u64 * 4..p.cols.end as u64 * 4;
        dispatch(
            dev,
            &self.colsum,
            bytemuck::bytes_of(&params),
            &[
                Bind::range(A, p.g, p.offset, p.bytes - p.offset),
                range(C, grads.bias.storage.buffer(), db_cols),
                Bind::all(FLAGS, p.flags.map_or(&dev.inner.dummy, |(f, _)| f)),
            ],
            pn.div_ceil(64),
            &[rn],
        )
    }

    /// dX and dW of `p` on the staged GEMMs: G along its rows for dX (W across), G and x across
    /// their rows for dW.
    fn record_staged(&self, dev: &Device, p: &GradPiece<'_>, grads: &LinearGrads) -> Result<()> {
        let h = *p.x.shape.last().unwrap_or(&0) as u64;
        let (rn, pn) = (p.rows.len() as u64, p.cols.len() as u64);
        let g = staged::Operand {
            buffer: p.g,
            dtype: DType::F32,
            first: p.offset / 4,
            elements: (rn - 1) * p.ld + pn,
        };
        let no_bias = Bind::all(staged_kernel::BIAS, &dev.inner.dummy);
        let (x0, w0) = (p.rows.start as u64 * h, p.cols.start as u64 * h);
        // Both sum over G's rows or columns into rows of h: only m, k and the flag differ.
        let shape = StagedParams {
            n: h as u32,
            lda: p.ld as u32,
            ldb: h as u32,
            ldc: h as u32,
            ..StagedParams::default()
        };
        staged::record(
            dev,
            staged::Entry::GradInput,
            g,
            staged::Operand::of(p.w, w0, pn * h),
            no_bias,
            Bind::range(staged_kernel::C, grads.input.storage.buffer(), x0 * 4, rn * h * 4),
            StagedParams { m: rn as u32, k: pn as u32, accumulate: p.accumulate_dx as u32, ..shape },
        )?;
        staged::record(
            dev,
            staged::Entry::GradWeight,
            g,
            staged::Operand::of(p.x, x0, rn * h),
            no_bias,
            Bind::range(staged_kernel::C, grads.weight.storage.buffer(), w0 * 4, pn * h * 4),
            StagedParams { m: pn as u32, k: rn as u32, accumulate: p.accumulate_dw as u32, ..shape },
        )
    }

    /// dX and dW of `p` on the blocked gradient GEMMs (with the filter's flags).
    fn record_blocked(&self, dev: &Device, p: &GradPiece<'_>, grads: &LinearGrads) -> Result<()> {
        let h = *p.x.shape.last().unwrap_or(&0) as u64;
        let (rn, pn) = (p.rows.len() as u64, p.cols.len() as u64);
        let (gm, gn) = GRAD_BLOCK;
        let g_tile = Bind::range(A, p.g, p.offset, p.bytes - p.offset);
        let flags = Bind::all(FLAGS, p.flags.map_or(&dev.inner.dummy, |(f, _)| f));
        let shape = GradParams {
            n: h as u32,
            lda: p.ld as u32,
            ldb: h as u32,
            ldc: h as u32,
            tiles_n: h.div_ceil(gn) as u32,
            filter: p.flags.is_some() as u32,
            flag_base: p.flags.map_or(0, |(_, b)| b),
            ..GradParams::default()
        };
        let x_rows = |d: DType| d.bytes(p.rows.start as u64 * h)..d.bytes(p.rows.end as u64 * h);
        let w_rows = |d: DType| d.bytes(p.cols.start as u64 * h)..d.bytes(p.cols.end as u64 * h);
        let (dx, dw) = (grads.input.storage.buffer(), grads.weight.storage.buffer());
        let params = GradParams { m: rn as u32, k: pn as u32, accumulate: p.accumulate_dx as u32, ..shape };
        dispatch(
            dev,
            &self.grad_input,
            bytemuck::bytes_of(&params),
            &[
                g_tile,
                range(B, p.w.storage.buffer(), w_rows(p.w.dtype)),
                range(C, dx, x_rows(DType::F32)),
                flags,
            ],
            rn.div_ceil(gm) * h.div_ceil(gn),
            &[pn],
        )?;
        let params = GradParams { m: pn as u32, k: rn as u32, accumulate: p.accumulate_dw as u32, ..shape };
        dispatch(
            dev,
            &self.grad_weight,
            bytemuck::bytes_of(&params),
            &[
                g_tile,
                range(B, p.x.storage.buffer(), x_rows(p.x.dtype)),
                range(C, dw, w_rows(DType::F32)),
                flags,
            ],
            pn.div_ceil(gm) * h.div_ceil(gn),
            &[rn],
        )?;
        Ok(())
    }
}

/// The gradients of `linear` with respect to its input, weight and bias.
#[derive(Clone, Debug)]
pub struct LinearGrads {
    /// `dX = dY·W`, the input's shape.
    pub input: Tensor,
    /// `dW = dYᵀ·X`, `(out, in)`.
    pub weight: Tensor,
    /// `db = Σ_rows dY`, `(out)`.
    pub bias: Tensor,
}

impl LinearGrads {
    /// The three gradients, each carrying `checks` (validations of the inputs they came from).
    pub(crate) fn with_checks(input: Tensor, weight: Tensor, bias: Tensor, checks: &[ValueCheck]) -> Self {
        let mark = |t: Tensor| Tensor { checks: checks.to_vec(), ..t };
        LinearGrads { input: mark(input), weight: mark(weight), bias: mark(bias) }
    }

    /// The f32 gradients in the element types `outputs` asks for: dX in x's type (`x`), dW
    /// and db in W's (`w`), or all f32.
    pub(crate) fn typed(self, x: DType, w: DType, outputs: Outputs) -> Result<LinearGrads> {
        Ok(LinearGrads {
            input: outputs.apply(self.input, x)?,
            weight: outputs.apply(self.weight, w)?,
            bias: outputs.apply(self.bias, w)?,
        })
    }

    /// Records zeroing all three: the gradients of an empty sum.
    pub(crate) fn record_zero(&self) {
        self.input.device().record(|enc| {
            for t in [&self.input, &self.weight, &self.bias] {
                enc.clear_buffer(t.storage.buffer(), 0, Some((t.numel() as u64 * 4).div_ceil(4) * 4));
            }
        });
    }
}

/// Which GEMM kernel runs `linear`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LinearKernel {
    /// `Staged` on software adapters where it applies, else `Blocked` there; `Tiled`
    /// elsewhere (the default).
    #[default]
    Auto,
    /// 64 × 64 tiles staged in workgroup memory, 4 × 4 per thread (for GPUs).
    Tiled,
    /// 16 × 16 per thread straight from memory, no barriers (for software adapters).
    Blocked,
    /// Both operands copied into textures and read four values a texel, 8 × 16 per thread
    /// (software adapters that stage inputs in textures). Every row of x and of W (and, for
    /// the gradients, of dY) must start on a whole texel: a multiple of 4 elements in f32, of
    /// 8 in half types; the sum must fit the loop budget. Elsewhere it is an
    /// [`Error::InvalidArgument`].
    Staged,
}

/// `linear` with a chosen [`LinearKernel`]. x and W of any element type are read in their own
/// type by the GEMMs (halves decoded as they load) and summed in f32.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linear {
    /// The GEMM kernel.
    pub kernel: LinearKernel,
    /// The element type of y and of the gradients: each its operand's (y: x's; dW and db:
    /// W's), or f32 unrounded.
    pub outputs: Outputs,
}

impl Linear {
    /// `x·Wᵀ + b`; see [`linear`].
    pub fn forward(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        x.device().op("linear", || {
            let bias = bias.map(f32_operand).transpose()?;
            self.outputs.apply(run(self.kernel, x, weight, bias.as_ref())?, x.dtype)
        })
    }

    /// Sets the element type of the outputs.
    pub fn outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }
}

impl LinearKernel {
    /// Whether the staged GEMMs run `linear` (or its gradients) of x and W on `dev`: chosen or
    /// picked by `Auto`, and applicable (an error when chosen and not applicable). `rows` are
    /// the lengths of every operand row the GEMMs read (k, and n for dY).
    pub(crate) fn staged(self, dev: &Device, x: &Tensor, w: &Tensor, rows: &[(DType, u64)]) -> Result<bool> {
        if !matches!(self, LinearKernel::Auto | LinearKernel::Staged) {
            return Ok(false);
        }
        let whole =
            [staged::Operand::of(x, 0, x.numel() as u64), staged::Operand::of(w, 0, w.numel() as u64)];
        let fits = rows.iter().all(|&(d, len)| staged::whole_texels(d, len) && len <= staged::max_k(dev))
            && staged::available(dev, &whole)?;
        if self == LinearKernel::Staged && !fits {
            return Err(Error::invalid(
                "linear",
                "LinearKernel::Staged needs a software adapter staging inputs in textures and rows of \
                 whole texels (a multiple of 4 elements in f32, of 8 in half types)",
            ));
        }
        Ok(fits)
    }

    /// The forward kernel on `dev` and the (rows, columns) of y one workgroup computes.
    pub(crate) fn resolve(self, dev: &Device) -> (KernelId, (u64, u64)) {
        let blocked = match self {
            LinearKernel::Auto => super::is_software(dev),
            LinearKernel::Tiled => false,
            LinearKernel::Blocked | LinearKernel::Staged => true,
        };
        if blocked {
            let rows = 8 * BLOCK_ROWS as u64;
            (KernelId::LinearBlocked, (rows, 8 * BLOCK_COLS as u64))
        } else {
            (KernelId::Linear, (64, 64))
        }
    }
}

impl Linear {
    /// The gradients of `y = x·Wᵀ + b` for the upstream gradient `grad_y` (the shape of y):
    /// `dX = dY·W`, `dW = dYᵀ·X` and `db = Σ_rows dY`, each a GEMM (or a column sum) over the
    /// rows in a fixed order, so the result is bitwise reproducible. Rows beyond the binding
    /// limit are processed in chunks (dW and db accumulate chunk by chunk); W, dW and one row
    /// of each operand must each fit in one binding.
    ///
    /// ```
    /// use wgpu_loss::Linear;
    /// let dev = wgpu_loss::Device::new()?;
    /// let x = dev.tensor(&[1.0, 2.0], &[1, 2])?;
    /// let w = dev.tensor(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
    /// let g = dev.tensor(&[1.0, 1.0, 1.0], &[1, 3])?;
    /// let grads = Linear::default().backward(&x, &w, &g)?;
    /// assert_eq!(grads.input.to_vec()?, [2.0, 2.0]);
    /// assert_eq!(grads.weight.to_vec()?, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    /// assert_eq!(grads.bias.to_vec()?, [1.0, 1.0, 1.0]);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn backward(&self, x: &Tensor, weight: &Tensor, grad_y: &Tensor) -> Result<LinearGrads> {
        x.device().op("linear", || {
            record_backward(self.kernel, x, weight, &f32_operand(grad_y)?)?.typed(
                x.dtype,
                weight.dtype,
                self.outputs,
            )
        })
    }
}

fn record_backward(
    kernel: LinearKernel,
    x: &Tensor,
    weight: &Tensor,
    grad_y: &Tensor,
) -> Result<LinearGrads> {
    const OP: &str = "linear";
    let dev = x.device();
    same_device(OP, dev, &[weight.device(), grad_y.device()])?;
    let Some((&k, lead)) = x.shape.split_last() else {
        return Err(Error::shape(OP, "x must have at least one dimension"));
    };
    let &[n, wk] = weight.shape.as_slice() else {
        return Err(Error::shape(OP, format!("weight must be (out, in), got {:?}", weight.shape)));
    };
    let mut y_shape = lead.to_vec();
    y_shape.push(n);
    if wk != k || grad_y.shape != y_shape {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?}, weight {:?} and grad_y {:?} do not fit (grad_y must be {y_shape:?})",
                x.shape, weight.shape, grad_y.shape
            ),
        ));
    }
    let m = super::saturating_product(lead);
    check_u32(OP, m.saturating_mul(n.max(k)))?;
    check_u32(OP, n.saturating_mul(k))?;
    let dx = Tensor::empty(dev, x.shape.clone())?;
    let dw = Tensor::empty(dev, weight.shape.clone())?;
    let db = Tensor::empty(dev, vec![n])?;
    let mut checks = x.checks.clone();
    checks.extend(weight.checks.iter().chain(&grad_y.checks).cloned());
    if m == 0 || n == 0 {
        // Empty sums are zero.
        let grads = LinearGrads::with_checks(dx, dw, db, &checks);
        grads.record_zero();
        return Ok(grads);
    }
    let whole = |what: &'static str, rows: usize, row_bytes: u64| -> Result<()> {
        let chunks = row_chunks(dev, what, rows, &[row_bytes], 1)?;
        if chunks.len() > 1 {
            return Err(Error::limit(what, rows as u64 * row_bytes, dev.binding_limit()));
        }
        Ok(())
    };
    whole("linear's weight in one binding", n, weight.dtype.bytes(k as u64))?;
    let (n64, k64) = (n as u64, k as u64);
    let staged = kernel.staged(dev, x, weight, &[(DType::F32, n64), (x.dtype, k64), (weight.dtype, k64)])?;
    let shape = GradShape { m, n, k, staged };
    record_grad_input(dev, grad_y, weight, &dx, shape)?;
    record_grad_weight(dev, grad_y, x, &dw, &db, shape)?;
    Ok(LinearGrads::with_checks(dx, dw, db, &checks))
}

/// The sizes of a linear backward: `m` rows, `n` out features, `k` in features; and whether
/// the staged GEMMs run it.
#[derive(Clone, Copy)]
struct GradShape {
    m: usize,
    n: usize,
    k: usize,
    staged: bool,
}

/// The blocks of C one gradient-GEMM workgroup computes.
const GRAD_TILE: (u64, u64) = (8 * GRAD_ROWS as u64, 8 * GRAD_COLS as u64);

/// `dX = dY·W`: rows of dY and dX in chunks, W whole; each thread loops over dY's columns at
/// most `grad_max_k` at a time (within the loop budget, a multiple of 64 so that every piece
/// starts at an aligned offset), pieces added in order.
fn record_grad_input(
    dev: &Device,
    grad_y: &Tensor,
    weight: &Tensor,
    dx: &Tensor,
    s: GradShape,
) -> Result<()> {
    let GradShape { m, n, k, staged } = s;
    let (n64, k64) = (n as u64, k as u64);
    let (tile_m, tile_n) = GRAD_TILE;
    // Nothing to do without inputs.
    if k == 0 {
        return Ok(());
    }
    let wd = weight.dtype;
    if staged {
        for mc in row_chunks(dev, "one row of grad_y or x", m, &[n64 * 4, k64 * 4], 1)? {
            let (m0, mm) = (mc.start as u64, mc.len() as u64);
            let params = StagedParams {
                m: mm as u32,
                n: k as u32,
                k: n as u32,
                lda: n as u32,
                ldb: k as u32,
                ldc: k as u32,
                ..StagedParams::default()
            };
            staged::record(
                dev,
                staged::Entry::GradInput,
                staged::Operand::of(grad_y, m0 * n64, mm * n64),
                staged::Operand::of(weight, 0, n64 * k64),
                Bind::all(staged_kernel::BIAS, &dev.inner.dummy),
                Bind::range(staged_kernel::C, dx.storage.buffer(), m0 * k64 * 4, mm * k64 * 4),
                params,
            )?;
        }
        return Ok(());
    }
    let pipe = KernelId::LinearGradInput.pipeline_for(dev, gemm_reads(&[(B, wd)]), "gemm", &[])?;
    let max_k = grad_max_k(dev, block_step(&[wd]));
    for mc in row_chunks(dev, "one row of grad_y or x", m, &[n64 * 4, k64 * 4], 1)? {
        let mm = mc.len() as u64;
        let m0 = mc.start as u64;
        for n0 in (0..n).step_by(max_k) {
            let nn = max_k.min(n - n0) as u64;
            let n0 = n0 as u64;
            let params = GradParams {
                m: mm as u32,
                n: k as u32,
                k: nn as u32,
                lda: n as u32,
                ldb: k as u32,
                ldc: k as u32,
                tiles_n: k64.div_ceil(tile_n) as u32,
                accumulate: (n0 > 0) as u32,
                ..GradParams::default()
            };
            let a0 = (m0 * n64 + n0) * 4;
            dispatch(
                dev,
                &pipe,
                bytemuck::bytes_of(&params),
                &[
                    Bind::range(A, grad_y.storage.buffer(), a0, mm * n64 * 4 - n0 * 4),
                    Bind::range(B, weight.storage.buffer(), wd.bytes(n0 * k64), wd.bytes(nn * k64)),
                    Bind::range(C, dx.storage.buffer(), m0 * k64 * 4, mm * k64 * 4),
                    Bind::all(FLAGS, &dev.inner.dummy),
                ],
                mm.div_ceil(tile_m) * k64.div_ceil(tile_n),
                &[nn],
            )?;
        }
    }
    Ok(())
}

/// `dW = dYᵀ·X` and `db = Σ dY`: the rows are the sum's index, in chunks of at most
/// `grad_max_k` rows added in order.
fn record_grad_weight(
    dev: &Device,
    grad_y: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    db: &Tensor,
    s: GradShape,
) -> Result<()> {
    let GradShape { m, n, k, staged } = s;
    let (n64, k64) = (n as u64, k as u64);
    let (tile_m, tile_n) = GRAD_TILE;
    let xd = x.dtype;
    // The column sum of db loops over the same rows (within the blocked GEMM's bound).
    let max_k = grad_max_k(dev, block_step(&[xd]));
    let gemm = KernelId::LinearGradWeight.pipeline_for(dev, gemm_reads(&[(B, xd)]), "gemm", &[])?;
    let colsum = KernelId::LinearGradWeight.pipeline(dev, "colsum", &[])?;
    let weight_chunks: Vec<std::ops::Range<usize>> =
        row_chunks(dev, "one row of grad_y or x", m, &[n64 * 4, xd.bytes(k64)], 1)?
            .into_iter()
            .flat_map(|c| (c.start..c.end).step_by(max_k).map(move |r| r..(r + max_k).min(c.end)))
            .collect();
    for (i, mc) in weight_chunks.into_iter().enumerate() {
        let mm = mc.len() as u64;
        let m0 = mc.start as u64;
        let dy = Bind::range(A, grad_y.storage.buffer(), m0 * n64 * 4, mm * n64 * 4);
        let params = GradParams {
            m: n as u32,
            n: k as u32,
            k: mm as u32,
            lda: n as u32,
            ldb: k as u32,
            ldc: k as u32,
            tiles_n: k64.div_ceil(tile_n) as u32,
            accumulate: (i > 0) as u32,
            ..GradParams::default()
        };
        if k > 0 && staged {
            let params = StagedParams {
                m: n as u32,
                n: k as u32,
                k: mm as u32,
                lda: n as u32,
                ldb: k as u32,
                ldc: k as u32,
                accumulate: (i > 0) as u32,
                ..StagedParams::default()
            };
            staged::record(
                dev,
                staged::Entry::GradWeight,
                staged::Operand::of(grad_y, m0 * n64, mm * n64),
                staged::Operand::of(x, m0 * k64, mm * k64),
                Bind::all(staged_kernel::BIAS, &dev.inner.dummy),
                Bind::all(staged_kernel::C, dw.storage.buffer()),
                params,
            )?;
        } else if k > 0 {
            dispatch(
                dev,
                &gemm,
                bytemuck::bytes_of(&params),
                &[
                    dy,
                    Bind::range(B, x.storage.buffer(), xd.bytes(m0 * k64), xd.bytes(mm * k64)),
                    Bind::all(C, dw.storage.buffer()),
                    Bind::all(FLAGS, &dev.inner.dummy),
                ],
                n64.div_ceil(tile_m) * k64.div_ceil(tile_n),
                &[mm],
            )?;
        }
        let params = GradParams { m: 1, n: n as u32, k: mm as u32, ldc: n as u32, tiles_n: 1, ..params };
        dispatch(
            dev,
            &colsum,
            bytemuck::bytes_of(&params),
            &[dy, Bind::all(C, db.storage.buffer()), Bind::all(FLAGS, &dev.inner.dummy)],
            n64.div_ceil(64),
            &[mm],
        )?;
    }
    Ok(())
}

/// `F.linear(x, weight, bias)`: `x` is `(.., in)`, `weight` `(out, in)`, `bias` `(out)`; the
/// result is `(.., out)`. Any sizes work (ragged edges are masked); operands larger than the
/// binding limit are processed in blocks of rows of x and of W.
///
/// ```
/// let dev = wgpu_loss::Device::new()?;
/// let x = dev.tensor(&[1.0, 2.0], &[1, 2])?;
/// let w = dev.tensor(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
/// let b = dev.tensor(&[0.5, 0.5, 0.5], &[3])?;
/// assert_eq!(wgpu_loss::linear(&x, &w, Some(&b))?.to_vec()?, [1.5, 2.5, 3.5]);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Linear::default().forward(x, weight, bias)
}

fn run(kernel: LinearKernel, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear";
    let dev = x.device();
    let mut devices = vec![weight.device()];
    devices.extend(bias.map(|b| b.device()));
    same_device(OP, dev, &devices)?;
    let Some((&k, lead)) = x.shape.split_last() else {
        return Err(Error::shape(OP, "x must have at least one dimension"));
    };
    let &[n, wk] = weight.shape.as_slice() else {
        return Err(Error::shape(OP, format!("weight must be (out, in), got {:?}", weight.shape)));
    };
    if wk != k {
        return Err(Error::shape(
            OP,
            format!("x {:?} has {k} features, weight {:?} expects {wk}", x.shape, weight.shape),
        ));
    }
    if let Some(b) = bias
        && b.shape != [n]
    {
        return Err(Error::shape(OP, format!("bias must be ({n}), got {:?}", b.shape)));
    }
    let m = super::saturating_product(lead);
    let mut shape = lead.to_vec();
    shape.push(n);
    let y = Tensor::empty(dev, shape)?;
    check_u32(OP, n)?;
    check_u32(OP, k)?;
    if m == 0 || n == 0 {
        return Ok(y);
    }
    if k == 0 {
        // An empty sum: y is the bias (or zeros).
        return Err(Error::Empty { op: OP, what: "zero input features" });
    }
    let (k64, n64) = (k as u64, n as u64);
    let bias_buf = bias.map_or(&dev.inner.dummy, |b| b.storage.buffer());
    let staged = kernel.staged(dev, x, weight, &[(x.dtype, k64), (weight.dtype, k64)])?;
    for mc in row_chunks(dev, "one row of x or y", m, &[x.dtype.bytes(k64), n64 * 4], 1)? {
        for nc in row_chunks(dev, "one row of weight", n, &[weight.dtype.bytes(k64)], 1)? {
            let (mm, nn) = (mc.len() as u64, nc.len() as u64);
            let m0 = mc.start as u64;
            if staged {
                let operand = |t, first: u64, rows: u64| staged::Operand::of(t, first * k64, rows * k64);
                let params = StagedParams {
                    m: mm as u32,
                    n: nn as u32,
                    k: k as u32,
                    lda: k as u32,
                    ldb: k as u32,
                    ldc: n as u32,
                    c_base: nc.start as u32,
                    has_bias: bias.is_some() as u32,
                    ..StagedParams::default()
                };
                staged::record(
                    dev,
                    staged::Entry::Forward,
                    operand(x, m0, mm),
                    operand(weight, nc.start as u64, nn),
                    Bind::all(staged_kernel::BIAS, bias_buf),
                    Bind::range(staged_kernel::C, y.storage.buffer(), m0 * n64 * 4, mm * n64 * 4),
                    params,
                )?;
                continue;
            }
            Gemm {
                x,
                x_first: m0 * k64,
                w: weight,
                w_first: nc.start as u64 * k64,
                bias: Bind::all(BIAS, bias_buf),
                has_bias: bias.is_some(),
                y: Bind::range(Y, y.storage.buffer(), m0 * n64 * 4, mm * n64 * 4),
                m: mm,
                n: nn,
                k: k64,
                ldy: n64,
                n_base: nc.start as u64,
            }
            .record(dev, kernel, OP, &x.shape)?;
        }
    }
    let mut checks = x.checks.clone();
    checks.extend(weight.checks.iter().cloned());
    Ok(Tensor { checks, ..y })
}
