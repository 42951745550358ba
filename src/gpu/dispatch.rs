//! Recording one dispatch: bindings checked against the entry point's spec, the loop budget,
//! the workgroup grid, and chunks of rows that fit the binding limit.

use std::ops::Range;
use std::sync::Arc;

use super::device::Device;
use super::pipeline::Pipeline;
use super::recording::Scopes;
use super::spec::Binding;
use crate::error::{Error, Result};

/// One binding: a buffer range or a staged texture.
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub(crate) binding: Binding,
    pub(crate) res: Res<'a>,
}

#[derive(Clone, Copy)]
pub(crate) enum Res<'a> {
    /// `size: None` binds to the end of the buffer.
    Buffer {
        buffer: &'a wgpu::Buffer,
        offset: u64,
        size: Option<u64>,
    },
    Texture(&'a wgpu::TextureView),
}

impl<'a> Bind<'a> {
    /// The whole buffer.
    pub(crate) fn all(binding: Binding, buffer: &'a wgpu::Buffer) -> Self {
        Bind { binding, res: Res::Buffer { buffer, offset: 0, size: None } }
    }

    /// `bytes` bytes from `offset` (at least 4, rounded up to 4).
    pub(crate) fn range(binding: Binding, buffer: &'a wgpu::Buffer, offset: u64, bytes: u64) -> Self {
        Bind { binding, res: Res::Buffer { buffer, offset, size: Some(bytes.max(4).div_ceil(4) * 4) } }
    }
}

/// Workgroup grid for `groups` workgroups: x up to the adapter's per-dimension limit, the rest
/// in y. Kernels rebuild the linear index with `group_index` and ignore the excess.
pub(crate) fn grid(dev: &Device, groups: u64) -> Result<(u32, u32)> {
    let max = dev.limits().max_compute_workgroups_per_dimension as u64;
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x).max(1);
    if y > max {
        return Err(Error::limit("workgroups in one dispatch", groups, max * max));
    }
    Ok((x as u32, y as u32))
}

/// Records one dispatch of `pipeline` over `groups` workgroups, with `params` as the uniform at
/// slot 0 and, for each binding of its entry point's spec, the bind of `binds` for it (binds of
/// the kernel's other entry points are left out; a missing one is an error).
///
/// `extents` are the values the entry's [`LoopBound`](super::spec::LoopBound) is evaluated at,
/// giving the most loop iterations one invocation runs. A dispatch past the device's loop budget
/// is refused with [`Error::Limit`]: on Mesa's software adapters it would stop early and
/// silently leave its results unfinished. Planners split their work before it comes to that.
pub(crate) fn dispatch(
    dev: &Device,
    pipeline: &Arc<Pipeline>,
    params: &[u8],
    binds: &[Bind<'_>],
    groups: u64,
    extents: &[u64],
) -> Result<()> {
    if groups == 0 {
        return Ok(());
    }
    check_bindings_and_trips(dev, pipeline, binds, extents)?;
    let (gx, gy) = grid(dev, groups)?;
    let device = dev.wgpu_device();
    let uniform = uniform(dev, pipeline, params)?;
    let entries = entries(pipeline, &uniform, binds)?;
    // A binding wgpu refuses (a destroyed buffer, say) fails this dispatch before anything of it
    // is recorded.
    let scopes = Scopes::push(device);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(pipeline.kernel.name),
        layout: &pipeline.layout,
        entries: &entries,
    });
    if let Some(message) = scopes.pop() {
        return Err(dev.lost_after_error().unwrap_or(Error::Wgpu(message)));
    }
    dev.record(|enc| {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(pipeline.kernel.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
    });
    Ok(())
}

pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Splits `rows` rows into chunks such that, for every buffer bound per chunk (`row_bytes[i]`
/// bytes per row), the chunk's binding fits the device's binding limit and starts at an offset
/// aligned to `min_storage_buffer_offset_alignment`. Chunk lengths are multiples of `multiple`
/// (so that partitions used by reductions do not depend on the chunking).
pub(crate) fn row_chunks(
    dev: &Device,
    what: &'static str,
    rows: usize,
    row_bytes: &[u64],
    multiple: u64,
) -> Result<Vec<Range<usize>>> {
    let align = dev.limits().min_storage_buffer_offset_alignment as u64;
    let limit = dev.binding_limit();
    let mut step = multiple.max(1);
    let mut max_rows = u64::MAX;
    for &rb in row_bytes {
        if rb == 0 {
            continue;
        }
        let need = align / gcd(rb, align);
        step = step / gcd(step, need) * need;
        max_rows = max_rows.min(limit / rb);
    }
    if rows as u64 <= max_rows {
        return Ok(std::iter::once(0..rows).collect());
    }
    let chunk = max_rows / step * step;
    if chunk == 0 {
        let widest = row_bytes.iter().copied().max().unwrap_or(0);
        return Err(Error::limit(what, widest * step, limit));
    }
    let chunk = chunk as usize;
    Ok((0..rows).step_by(chunk).map(|r| r..(r + chunk).min(rows)).collect())
}

/// Refuses a bind that is none of the kernel's bindings, extents that do not fit the entry's
/// loop bound, and a dispatch whose loop bound exceeds the device's loop budget.
fn check_bindings_and_trips(
    dev: &Device,
    pipeline: &Pipeline,
    binds: &[Bind<'_>],
    extents: &[u64],
) -> Result<()> {
    if let Some(b) =
        binds.iter().find(|b| !pipeline.kernel.entries.iter().any(|e| e.bindings.contains(&b.binding)))
    {
        return Err(unbound(
            pipeline,
            &format!("`{}` (slot {}) is not one of its bindings", b.binding.name, b.binding.slot),
        ));
    }
    if extents.len() != pipeline.entry.trips.over.len() {
        return Err(unbound(pipeline, &format!("its loop bound takes {:?}", pipeline.entry.trips.over)));
    }
    let trips = pipeline.entry.trips.at(extents);
    if trips > dev.loop_budget() {
        return Err(Error::limit(
            format!(
                "`{}` ({}): loop iterations of one shader invocation",
                pipeline.kernel.name, pipeline.entry.name
            ),
            trips,
            dev.loop_budget(),
        ));
    }
    Ok(())
}

/// The uniform buffer holding `params`, written through a mapping at creation rather than
/// `create_buffer_init`, whose failure on a lost device is a panic: here it is an error.
fn uniform(dev: &Device, pipeline: &Pipeline, params: &[u8]) -> Result<wgpu::Buffer> {
    let device = dev.wgpu_device();
    let size = params.len().div_ceil(16).max(1) as u64 * 16;
    let uniform = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-loss params"),
        size,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: true,
    });
    {
        let mut view = uniform.get_mapped_range_mut(..).map_err(|e| {
            dev.lost_after_error().unwrap_or_else(|| Error::Wgpu(format!("{}: {e}", pipeline.kernel.name)))
        })?;
        let mut contents = params.to_vec();
        contents.resize(size as usize, 0);
        view.copy_from_slice(&contents);
    }
    uniform.unmap();
    Ok(uniform)
}

/// The bind group entries: the uniform at slot 0, then for each binding of the entry point the
/// bind given for it (binds of the kernel's other entry points are left out).
fn entries<'b>(
    pipeline: &Pipeline,
    uniform: &'b wgpu::Buffer,
    binds: &[Bind<'b>],
) -> Result<Vec<wgpu::BindGroupEntry<'b>>> {
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    for binding in pipeline.entry.bindings {
        let Some(b) = binds.iter().find(|b| b.binding == *binding) else {
            return Err(unbound(
                pipeline,
                &format!("`{}` (slot {}) is not bound", binding.name, binding.slot),
            ));
        };
        let resource = match b.res {
            Res::Buffer { buffer, offset, size } => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: size.and_then(wgpu::BufferSize::new),
            }),
            Res::Texture(view) => wgpu::BindingResource::TextureView(view),
        };
        entries.push(wgpu::BindGroupEntry { binding: binding.slot, resource });
    }
    Ok(entries)
}

/// A binding mistake of the library's own: a bug, reported rather than left to wgpu.
fn unbound(pipeline: &Pipeline, what: &str) -> Error {
    Error::Shader {
        kernel: pipeline.kernel.name,
        message: format!("entry point `{}`: {what}", pipeline.entry.name),
    }
}
