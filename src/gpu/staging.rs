//! Large inputs staged in textures on the software adapters (see [`InputPath::Texture`]), and
//! the choice of input path.

use super::device::Device;
use super::dispatch::{Bind, Res};
use super::lock::lock;
use super::pipeline::staged_format;
use super::pool::texture_bytes;
use super::recording;
use super::spec::{Binding, InputPath, KernelSpec, Reads};
use crate::dtype::DType;
use crate::error::Result;

#[cfg(doc)]
use super::spec::BindingKind;

/// An input a kernel would stage: its binding, its buffer, its element count and type.
pub(crate) type Staging<'a> = (Binding, &'a wgpu::Buffer, usize, DType);

impl Device {
    /// How `kernel` reads the inputs it would stage: through textures on the software adapters
    /// when every buffer can be staged, else from storage buffers; each with its element type.
    ///
    /// An operation that stages inputs starts a new submission when the pending one already
    /// holds staged copies: on lavapipe ten mse calls recorded into one submission took 81 ms
    /// each, against 50 ms submitted one by one.
    pub(crate) fn reads(&self, kernel: &KernelSpec, staged: &[Staging<'_>]) -> Result<Reads> {
        let ok = self.texture_inputs()
            && !kernel.staged().is_empty()
            && staged.iter().all(|&(_, b, n, dtype)| stageable(b, dtype.bytes(n as u64)));
        let path = if ok { InputPath::Texture } else { InputPath::Storage };
        if ok && self.pending_staged() {
            self.flush()?;
        }
        Ok(staged.iter().fold(Reads::new(path), |reads, &(binding, _, _, dtype)| reads.with(binding, dtype)))
    }
}

/// A kernel input: a buffer range bound directly, or a copy of it staged in a texture (which
/// returns to the device's pool when the input is dropped, after the dispatch is recorded;
/// commands run in recording order, so the next user's copy lands after this one's reads).
pub(crate) enum Input<'a> {
    Buffer(Bind<'a>),
    Texture(Binding, Staged),
}

pub(crate) struct Staged {
    texture: Option<wgpu::Texture>,
    view: wgpu::TextureView,
    dev: Device,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _gate = self.dev.gate();
        if let Some(t) = self.texture.take() {
            let bytes = texture_bytes(&t);
            if let Err(t) = recording::defer_texture(self.dev.owner(), t, bytes) {
                let mut pool = lock(&self.dev.inner.pool);
                pool.hand_back(bytes);
                pool.give_texture(t);
            }
        }
    }
}

impl Input<'_> {
    pub(crate) fn bind(&self) -> Bind<'_> {
        match self {
            Input::Buffer(b) => *b,
            Input::Texture(binding, staged) => Bind { binding: *binding, res: Res::Texture(&staged.view) },
        }
    }
}

/// Whether `buffer` can be staged through textures for `bytes` bytes of values: the copy reads
/// whole 16-byte texels, so the buffer must extend to the next multiple of 16 bytes.
pub(crate) fn stageable(buffer: &wgpu::Buffer, bytes: u64) -> bool {
    buffer.size() >= bytes.div_ceil(16) * 16
}

/// The input at `binding` (a [`BindingKind::Staged`] one): `elements` values of `buffer`, of the
/// element type `reads` gives it, from element `first` (at a multiple of 16 bytes when staged),
/// either bound in place or copied into a texture TEX_W texels wide inside the pending encoder
/// (rgba32float for f32, rgba32uint holding eight halves a texel for f16 and bf16).
pub(crate) fn input<'a>(
    dev: &Device,
    reads: Reads,
    binding: Binding,
    buffer: &'a wgpu::Buffer,
    first: u64,
    elements: u64,
) -> Input<'a> {
    let dtype = reads.dtype(&binding);
    let (offset, bytes) = (dtype.bytes(first), dtype.bytes(elements));
    if reads.path == InputPath::Storage {
        return Input::Buffer(Bind::range(binding, buffer, offset, bytes));
    }
    let format = staged_format(dtype);
    let width = dev.texture_width() as u64;
    let texels = bytes.div_ceil(16).max(1);
    let (full_rows, rest) = (texels / width, texels % width);
    let height = full_rows + (rest > 0) as u64;
    // Less than a row: a one-row texture just wide enough (a power of two, for reuse), which
    // the accessors address the same way.
    let w = if height == 1 { texels.next_power_of_two().clamp(64, width) } else { width };
    let (w, h) = (w as u32, height as u32);
    let pooled = recording::take_released_texture(dev.owner(), format, w, h)
        .or_else(|| lock(&dev.inner.pool).take_texture(format, w, h));
    let texture = pooled.unwrap_or_else(|| {
        dev.wgpu_device().create_texture(&wgpu::TextureDescriptor {
            label: Some("wgpu-loss staged input"),
            size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    });
    let copy = |enc: &mut wgpu::CommandEncoder, from: u64, y: u64, w: u64, h: u64| {
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: from,
                    bytes_per_row: Some((width * 16) as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: y as u32, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d { width: w as u32, height: h as u32, depth_or_array_layers: 1 },
        );
    };
    recording::mark_staged(dev.owner());
    dev.record(|enc| {
        if full_rows > 0 {
            copy(enc, offset, 0, width, full_rows);
        }
        if rest > 0 {
            copy(enc, offset + full_rows * width * 16, full_rows, rest, 1);
        }
    });
    lock(&dev.inner.pool).lend(texture_bytes(&texture));
    let view = texture.create_view(&Default::default());
    Input::Texture(binding, Staged { texture: Some(texture), view, dev: dev.clone() })
}
