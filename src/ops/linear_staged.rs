//! Recording the staged GEMMs (`kernels/linear_staged.rs`): both operands copied into textures,
//! then one dispatch per GEMM.

use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::device::Device;
use crate::gpu::dispatch::{Bind, dispatch};
use crate::gpu::spec::InputPath;
use crate::gpu::staging::{Staging, input};
use crate::kernels::KernelId;
use crate::kernels::linear_staged::{A, B, Params, TILE, trips};
use crate::tensor::Tensor;

/// A staged GEMM's entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `y (m, n) = x (m, k) · W (n, k)ᵀ`.
    Forward,
    /// `dX (m, k) = dY (m, n) · W (n, k)`.
    GradInput,
    /// `dW (n, k) = dY (m, n)ᵀ · x (m, k)`.
    GradWeight,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Forward => "forward",
            Entry::GradInput => "grad_input",
            Entry::GradWeight => "grad_weight",
        }
    }
}

/// One operand: `elements` values of `buffer` from element `first`, of type `dtype`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) dtype: DType,
    pub(crate) first: u64,
    pub(crate) elements: u64,
}

impl Operand<'_> {
    /// `elements` values of `t` from element `first`.
    pub(crate) fn of(t: &Tensor, first: u64, elements: u64) -> Operand<'_> {
        Operand { buffer: t.storage.buffer(), dtype: t.dtype, first, elements }
    }
}

/// Whether rows of `len` elements of `dtype` start on whole texels (four f32s, eight halves),
/// as the staged GEMMs need of every operand's rows.
pub(crate) fn whole_texels(dtype: DType, len: u64) -> bool {
    len.is_multiple_of(16 / dtype.size() as u64)
}

/// Whether the staged GEMMs run on `dev`: the software adapters, staging inputs in textures,
/// with each operand's `(buffer, elements from 0, dtype)` stageable there.
pub(crate) fn available(dev: &Device, operands: &[Operand<'_>]) -> Result<bool> {
    if !super::is_software(dev) || !dev.texture_inputs() {
        return Ok(false);
    }
    Ok(KernelId::LinearStaged.reads(dev, &staging(operands))?.path == InputPath::Texture)
}

/// The operands as the staging planner sees them (A, then B).
fn staging<'a>(operands: &[Operand<'a>]) -> Vec<Staging<'a>> {
    [A, B]
        .iter()
        .zip(operands)
        .map(|(&b, o)| (b, o.buffer, (o.first + o.elements) as usize, o.dtype))
        .collect()
}

/// Records `entry` over `a` and `b` into `c` (and `bias`): `params` gives the shape, strides,
/// C's placement and flags, and each operand's base relative to its `first` element (where its
/// staged copy starts).
pub(crate) fn record(
    dev: &Device,
    entry: Entry,
    a: Operand<'_>,
    b: Operand<'_>,
    bias: Bind<'_>,
    c: Bind<'_>,
    params: Params,
) -> Result<()> {
    let reads = KernelId::LinearStaged.reads(dev, &staging(&[a, b]))?;
    if reads.path != InputPath::Texture {
        return Err(crate::error::Error::Wgpu("internal: linear_staged's operands cannot be staged".into()));
    }
    let pipeline = KernelId::LinearStaged.pipeline_for(dev, reads, entry.name(), &[])?;
    let a_in = input(dev, reads, A, a.buffer, a.first, a.elements);
    let b_in = input(dev, reads, B, b.buffer, b.first, b.elements);
    let (tm, tn) = (TILE.0 as u64, TILE.1 as u64);
    let (m, n) = (params.m as u64, params.n as u64);
    let tiles_n = n.div_ceil(tn);
    let params = Params { tiles_n: tiles_n as u32, ..params };
    dispatch(
        dev,
        &pipeline,
        bytemuck::bytes_of(&params),
        &[a_in.bind(), b_in.bind(), bias, c],
        m.div_ceil(tm) * tiles_n,
        &[params.k as u64],
    )
}

/// The longest sum one staged dispatch may run on `dev`: a multiple of 4 within the loop
/// budget.
pub(crate) fn max_k(dev: &Device) -> u64 {
    let k = dev.loop_budget().saturating_sub(trips(0)).saturating_mul(4);
    debug_assert!(trips(k) <= dev.loop_budget());
    k
}
