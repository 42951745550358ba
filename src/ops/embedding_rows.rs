//! The embedding losses over rows of D values (the last dim) (`shaders/embedding_rows.wgsl`):
//! `cosine_embedding` (two inputs and a ±1 target per row) and `triplet_margin` (anchor, positive
//! and negative). Each row's loss is written, then reduced by the fixed-order reduction when
//! asked; the backward gives every input's gradient.
//!
//! A row is spread over as many threads as the loop budget needs (`RowStrategy::plan`), each
//! looping over its share of the values (twice forward, three times backward), so on a software
//! adapter a row may hold up to 256 × a third of its budget (over 5 million) values. Sums run on
//! values scaled by a power of two per row (exact), so magnitudes up to f32's largest neither
//! overflow nor underflow in them.

use super::convert::f32_operand;
use super::reduce::reduce_items;
use super::{Outputs, Reduction, RowStrategy, Rows, check_u32, item_grad, reduction_and_outputs};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch, row_chunks};
use crate::gpu::spec::Binding;
use crate::kernels::KernelId;
use crate::kernels::embedding_rows::{D1, D2, D3, G, KERNEL, LOSS, Params, X1, X2, X3, Y};
use crate::tensor::{Storage, Tensor, same_device};

/// Cosine embedding loss, as PyTorch's `F.cosine_embedding_loss(input1, input2, target,
/// margin=0, reduction)`: with `cos = ⟨x1, x2⟩ / √((|x1|² + 1e-12)·(|x2|² + 1e-12))` per row,
/// `1 − cos` where the target is 1, `max(0, cos − margin)` where it is −1, and 0 for any other
/// target (as PyTorch). Inputs `(N, D)` with targets `(N)`, or `(D)` with a target `()`.
///
/// ```
/// use wgpu_loss::{CosineEmbedding, Device};
/// let dev = Device::new()?;
/// let x1 = dev.tensor(&[1.0, 0.0, 1.0, 1.0], &[2, 2])?;
/// let x2 = dev.tensor(&[0.0, 1.0, 1.0, 1.0], &[2, 2])?;
/// let t = dev.tensor(&[1.0, -1.0], &[2])?;
/// // Row 0: orthogonal, 1 − 0; row 1: parallel, max(0, 1 − 0): mean 1.
/// assert!((CosineEmbedding::default().forward(&x1, &x2, &t)?.item()? - 1.0).abs() < 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CosineEmbedding {
    /// The margin of the −1 targets (default 0).
    pub margin: f32,
    /// How the rows' losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

/// Triplet margin loss, as PyTorch's `F.triplet_margin_loss(anchor, positive, negative,
/// margin=1, p=2, eps=1e-6, swap=False, reduction)`: `max(0, margin + d(a, p) − d(a, n))` per
/// row with `d(u, v) = |u − v + eps|_p` over the last dim; with `swap`, `d(a, n)` is
/// `min(d(a, n), d(p, n))`. The three inputs have one shape `(…, D)`; `none` gives `(…)`. The
/// margin must be > 0 (as PyTorch). Any p ≥ 0 is taken: `f32::INFINITY` is the max norm (its
/// gradient shared evenly by the elements at the max, as PyTorch's), 0 counts the non-zero
/// differences (gradient 0, as PyTorch's).
#[derive(Clone, Copy, Debug)]
pub struct TripletMargin {
    /// The margin, > 0 (default 1).
    pub margin: f32,
    /// The norm's degree (default 2).
    pub p: f32,
    /// Added to each difference before its norm (default 1e-6).
    pub eps: f32,
    /// Whether the distance to the negative is the smaller of the anchor's and the positive's.
    pub swap: bool,
    /// How the rows' losses are reduced (default mean).
    pub reduction: Reduction,
    /// The element type of the gradients: each its input's (default), or f32 unrounded.
    pub outputs: Outputs,
}

impl Default for TripletMargin {
    fn default() -> Self {
        TripletMargin {
            margin: 1.0,
            p: 2.0,
            eps: 1e-6,
            swap: false,
            reduction: Reduction::Mean,
            outputs: Outputs::AsInputs,
        }
    }
}

/// The `LOSS` constant of `shaders/embedding_rows.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CosineEmbedding = 0,
    TripletMargin = 1,
}

/// One validated call.
struct Job<'a> {
    op: &'static str,
    kind: Kind,
    inputs: Vec<&'a Tensor>,
    /// cosine_embedding's targets.
    target: Option<&'a Tensor>,
    params: Params,
    swap: bool,
    /// The `NORM` constant: 0 a p-norm, 1 the max norm, 2 the count of non-zeros.
    norm: u32,
    reduction: Reduction,
    out_shape: Vec<usize>,
}

impl Job<'_> {
    fn rows(&self) -> usize {
        self.params.rows as usize
    }

    fn cols(&self) -> u64 {
        self.params.cols as u64
    }

    fn check_devices(&self, extra: Option<&Tensor>) -> Result<()> {
        let dev = self.inputs[0].device();
        let others: Vec<&Device> =
            self.inputs.iter().chain(self.target.iter()).chain(extra.iter()).map(|t| t.device()).collect();
        same_device(self.op, dev, &others)
    }

    /// Dispatches `entry` over row chunks: `per_element` buffers hold `cols` f32 a row,
    /// `per_row` ones one, `whole` are bound whole.
    fn run(
        &self,
        entry: &'static str,
        g_per_row: bool,
        per_element: &[(Binding, &wgpu::Buffer)],
        per_row: &[(Binding, &wgpu::Buffer)],
        whole: &[(Binding, &wgpu::Buffer)],
        scale: f32,
    ) -> Result<()> {
        let dev: &Device = self.inputs[0].device();
        let bound = KERNEL.entry(entry).map(|e| e.trips).ok_or_else(|| Error::invalid(self.op, entry))?;
        let rows = Rows { outer: self.rows(), cols: self.cols() as usize, inner: 1 };
        let plan = RowStrategy::Auto.plan(self.op, dev, &self.inputs[0].shape, &rows, bound)?;
        let constants = [
            ("WG", plan.wg as f64),
            ("TREE", plan.tree() as u8 as f64),
            ("LOSS", self.kind as u32 as f64),
            ("SWAP", self.swap as u8 as f64),
            ("G_PER_ROW", g_per_row as u8 as f64),
            ("NORM", self.norm as f64),
        ];
        let pipe = KernelId::EmbeddingRows.pipeline(dev, entry, &constants)?;
        let row = self.cols() * 4;
        let row_bytes: Vec<u64> = per_element.iter().map(|_| row).chain(per_row.iter().map(|_| 4)).collect();
        for chunk in row_chunks(dev, "a row of values", self.rows(), &row_bytes, 1)? {
            let (first, len) = (chunk.start as u64, chunk.len() as u64);
            let mut binds: Vec<Bind<'_>> =
                per_element.iter().map(|&(b, buf)| Bind::range(b, buf, first * row, len * row)).collect();
            binds.extend(per_row.iter().map(|&(b, buf)| Bind::range(b, buf, first * 4, len * 4)));
            binds.extend(whole.iter().map(|&(b, buf)| Bind::all(b, buf)));
            let params = Params { rows: len as u32, scale, tpr: plan.tpr, ..self.params };
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

    /// The inputs as f32, with the device's dummy for triplet's third where cosine has none.
    fn f32_inputs(&self) -> Result<Vec<Tensor>> {
        self.inputs.iter().map(|t| f32_operand(t)).collect()
    }

    fn forward(&self) -> Result<Tensor> {
        let dev = self.inputs[0].device();
        dev.op(self.op, || {
            self.check_devices(None)?;
            let xs = self.f32_inputs()?;
            let y = self.target.map(f32_operand).transpose()?;
            let loss = Storage::alloc(dev, (self.rows() as u64 * 4).max(4))?;
            if self.rows() > 0 {
                let dummy = &dev.inner.dummy;
                let x = |k: usize| xs.get(k).map_or(dummy, |t| t.storage.buffer());
                let per_element: Vec<(Binding, &wgpu::Buffer)> = [X1, X2, X3]
                    .into_iter()
                    .enumerate()
                    .filter(|&(k, _)| k < xs.len())
                    .map(|(k, b)| (b, x(k)))
                    .collect();
                let mut per_row = vec![(LOSS, loss.buffer())];
                let mut whole = vec![];
                match &y {
                    Some(y) => per_row.push((Y, y.storage.buffer())),
                    None => whole.push((Y, dummy)),
                }
                if xs.len() < 3 {
                    whole.push((X3, dummy));
                }
                self.run("forward", false, &per_element, &per_row, &whole, 0.0)?;
            }
            let mut checks: Vec<_> = self.inputs.iter().flat_map(|t| t.checks.iter().cloned()).collect();
            checks.extend(self.target.iter().flat_map(|t| t.checks.iter().cloned()));
            reduce_items(dev, loss, self.rows(), self.out_shape.clone(), self.reduction, checks)
        })
    }

    /// The gradient in each input, in its element type under `outputs`.
    fn backward(&self, grad: &Tensor, outputs: Outputs) -> Result<Vec<Tensor>> {
        let dev = self.inputs[0].device();
        dev.op(self.op, || {
            self.check_devices(Some(grad))?;
            let (per_row, scale) = item_grad(self.op, grad, self.reduction, &self.out_shape, self.rows())?;
            let xs = self.f32_inputs()?;
            let y = self.target.map(f32_operand).transpose()?;
            let g = f32_operand(grad)?;
            let shape = self.inputs[0].shape.clone();
            let grads: Vec<Tensor> =
                xs.iter().map(|_| Tensor::empty(dev, shape.clone())).collect::<Result<_>>()?;
            if self.rows() > 0 {
                let dummy = &dev.inner.dummy;
                // An output the loss does not write still needs a buffer of its own.
                let unused = Storage::alloc(dev, 4)?;
                let mut per_element: Vec<(Binding, &wgpu::Buffer)> = Vec::new();
                let mut whole: Vec<(Binding, &wgpu::Buffer)> = Vec::new();
                for (k, (x, d)) in [(X1, D1), (X2, D2), (X3, D3)].into_iter().enumerate() {
                    match (xs.get(k), grads.get(k)) {
                        (Some(xt), Some(dt)) => {
                            per_element.push((x, xt.storage.buffer()));
                            per_element.push((d, dt.storage.buffer()));
                        }
                        _ => {
                            whole.push((x, dummy));
                            whole.push((d, unused.buffer()));
                        }
                    }
                }
                let mut rows = vec![];
                match &y {
                    Some(y) => rows.push((Y, y.storage.buffer())),
                    None => whole.push((Y, dummy)),
                }
                if per_row {
                    rows.push((G, g.storage.buffer()));
                } else {
                    whole.push((G, g.storage.buffer()));
                }
                self.run("backward", per_row, &per_element, &rows, &whole, scale)?;
            }
            let mut checks: Vec<_> = self.inputs.iter().flat_map(|t| t.checks.iter().cloned()).collect();
            checks.extend(grad.checks.iter().cloned());
            grads
                .into_iter()
                .zip(&self.inputs)
                .map(|(d, x)| outputs.apply(Tensor { checks: checks.clone(), ..d }, x.dtype))
                .collect()
        })
    }
}

/// Checks that `inputs` (named in `names`) share one shape; returns its (rows, D).
fn same_shapes(op: &'static str, inputs: &[&Tensor], names: &[&str]) -> Result<(usize, usize)> {
    for (t, name) in inputs.iter().zip(names).skip(1) {
        if t.shape != inputs[0].shape {
            return Err(Error::shape(
                op,
                format!(
                    "{} {:?} and {name} {:?} differ (nothing is broadcast)",
                    names[0], inputs[0].shape, t.shape
                ),
            ));
        }
    }
    let shape = &inputs[0].shape;
    let Some(&cols) = shape.last() else {
        return Err(Error::shape(
            op,
            format!("{} must have a last dim of values, got a 0-d tensor", names[0]),
        ));
    };
    check_u32(op, inputs[0].numel())?;
    Ok((shape[..shape.len() - 1].iter().product(), cols))
}

impl CosineEmbedding {
    fn job<'a>(&self, input1: &'a Tensor, input2: &'a Tensor, target: &'a Tensor) -> Result<Job<'a>> {
        let op = "cosine_embedding";
        let (rows, cols) = same_shapes(op, &[input1, input2], &["input1", "input2"])?;
        if input1.shape.len() > 2 {
            return Err(Error::shape(op, format!("inputs must be (N, D) or (D), got {:?}", input1.shape)));
        }
        let rows_shape = &input1.shape[..input1.shape.len() - 1];
        if target.shape != rows_shape {
            return Err(Error::shape(
                op,
                format!(
                    "target {:?} must hold one value per row of the inputs {:?}",
                    target.shape, input1.shape
                ),
            ));
        }
        Ok(Job {
            op,
            kind: Kind::CosineEmbedding,
            inputs: vec![input1, input2],
            target: Some(target),
            params: Params {
                rows: rows as u32,
                cols: cols as u32,
                margin: self.margin,
                p: 2.0,
                eps: 0.0,
                scale: 0.0,
                tpr: 1,
                _pad: 0,
            },
            swap: false,
            norm: 0,
            reduction: self.reduction,
            out_shape: rows_shape.to_vec(),
        })
    }

    /// The loss: a 0-d tensor when reduced, one value per row for `None`.
    pub fn forward(&self, input1: &Tensor, input2: &Tensor, target: &Tensor) -> Result<Tensor> {
        self.job(input1, input2, target)?.forward()
    }

    /// The gradients in `input1` and `input2`, given the upstream gradient `grad_output` (one
    /// value for a reduced loss, one per row for `None`).
    pub fn backward(
        &self,
        input1: &Tensor,
        input2: &Tensor,
        target: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mut grads = self.job(input1, input2, target)?.backward(grad_output, self.outputs)?.into_iter();
        Ok((grads.next().expect("two gradients"), grads.next().expect("two gradients")))
    }

    /// Sets the margin.
    pub fn margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }
}

impl TripletMargin {
    fn job<'a>(&self, anchor: &'a Tensor, positive: &'a Tensor, negative: &'a Tensor) -> Result<Job<'a>> {
        let op = "triplet_margin";
        if !(self.margin > 0.0 && self.margin.is_finite()) {
            return Err(Error::invalid(op, format!("margin must be greater than 0, got {}", self.margin)));
        }
        if !(self.p >= 0.0 && self.eps.is_finite()) {
            return Err(Error::invalid(
                op,
                format!(
                    "p must be >= 0 (inf: the max norm) and eps finite, got p {} and eps {}",
                    self.p, self.eps
                ),
            ));
        }
        let inputs = [anchor, positive, negative];
        let (rows, cols) = same_shapes(op, &inputs, &["anchor", "positive", "negative"])?;
        Ok(Job {
            op,
            kind: Kind::TripletMargin,
            inputs: inputs.to_vec(),
            target: None,
            params: Params {
                rows: rows as u32,
                cols: cols as u32,
                margin: self.margin,
                p: if self.p.is_finite() { self.p } else { 0.0 },
                eps: self.eps,
                scale: 0.0,
                tpr: 1,
                _pad: 0,
            },
            swap: self.swap,
            norm: if self.p.is_infinite() {
                1
            } else if self.p == 0.0 {
                2
            } else {
                0
            },
            reduction: self.reduction,
            out_shape: anchor.shape[..anchor.shape.len() - 1].to_vec(),
        })
    }

    /// The loss: a 0-d tensor when reduced, one value per row for `None`.
    pub fn forward(&self, anchor: &Tensor, positive: &Tensor, negative: &Tensor) -> Result<Tensor> {
        self.job(anchor, positive, negative)?.forward()
    }

    /// The gradients in the anchor, the positive and the negative, given the upstream gradient
    /// `grad_output` (one value for a reduced loss, one per row for `None`).
    pub fn backward(
        &self,
        anchor: &Tensor,
        positive: &Tensor,
        negative: &Tensor,
        grad_output: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let grads = self.job(anchor, positive, negative)?.backward(grad_output, self.outputs)?;
        let [a, p, n]: [Tensor; 3] = grads.try_into().expect("three gradients");
        Ok((a, p, n))
    }

    /// Sets the margin (> 0).
    pub fn margin(mut self, margin: f32) -> Self {
        self.margin = margin;
        self
    }

    /// Sets the norm's degree.
    pub fn p(mut self, p: f32) -> Self {
        self.p = p;
        self
    }

    /// Sets eps.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Sets whether the positive's distance to the negative may stand for the anchor's.
    pub fn swap(mut self, swap: bool) -> Self {
        self.swap = swap;
        self
    }
}

reduction_and_outputs!(CosineEmbedding, TripletMargin);
