//! Large inputs staged in textures on the software adapters (see [`InputPath::Texture`]), and
//! the choice of input path.

use super::device::Device;
use super::dispatch::{Bind, Res};
use super::lock::lock;
use super::pool::texture_bytes;
use super::recording;
use super::spec::{Binding, InputPath, KernelSpec};
use crate::error::Result;

#[cfg(doc)]
use super::spec::BindingKind;

impl Device {
    /// The input path for `kernel` given the buffers (and their element counts) it would stage.
    ///
    /// An operation that stages inputs starts a new submission when the pending one already
    /// holds staged copies: on lavapipe ten mse calls recorded into one submission took 81 ms
    /// each, against 50 ms submitted one by one.
    pub(crate) fn input_path(
        &self,
        kernel: &KernelSpec,
        staged: &[(&wgpu::Buffer, usize)],
    ) -> Result<InputPath> {
        let ok = self.texture_inputs()
            && !kernel.staged().is_empty()
            && staged.iter().all(|(b, n)| stageable(b, *n));
        if !ok {
            return Ok(InputPath::Storage);
        }
        if self.pending_staged() {
            self.flush()?;
        }
        Ok(InputPath::Texture)
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

/// Whether `buffer` can be staged through textures for `elements` f32 values: the copy reads
/// whole 16-byte texels, so the buffer must extend to the next multiple of 16 bytes.
pub(crate) fn stageable(buffer: &wgpu::Buffer, elements: usize) -> bool {
    buffer.size() >= (elements as u64 * 4).div_ceil(16) * 16
}

/// The input at `binding` (a [`BindingKind::Staged`] one): `elements` f32 values of `buffer` from byte `offset` (a multiple of 16
/// when staged), either bound in place or copied into a texture TEX_W texels wide inside the
/// pending encoder.
pub(crate) fn input<'a>(
    dev: &Device,
    path: InputPath,
    binding: Binding,
    buffer: &'a wgpu::Buffer,
    offset: u64,
    elements: u64,
) -> Input<'a> {
    if path == InputPath::Storage {
        return Input::Buffer(Bind::range(binding, buffer, offset, elements * 4));
    }
    let width = dev.texture_width() as u64;
    let texels = elements.div_ceil(4).max(1);
    let (full_rows, rest) = (texels / width, texels % width);
    let height = full_rows + (rest > 0) as u64;
    let pooled = recording::take_released_texture(dev.owner(), width as u32, height as u32)
        .or_else(|| lock(&dev.inner.pool).take_texture(width as u32, height as u32));
    let texture = pooled.unwrap_or_else(|| {
        dev.wgpu_device().create_texture(&wgpu::TextureDescriptor {
            label: Some("wgpu-loss staged input"),
            size: wgpu::Extent3d { width: width as u32, height: height as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
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
