//! How one library operation records its GPU work so that a failure stays its own.
//!
//! `Device::op` (in `operation.rs`) runs an operation with a *frame* on the calling thread: an encoder of its
//! own, wgpu error scopes (which wgpu keeps per thread, so threads sharing a device do not see
//! each other's errors), and a list of buffers and textures the operation dropped. When the
//! operation succeeds, its commands are finished and queued for the next submission, then the
//! dropped buffers go back to the pool. When it fails, or wgpu reports a validation or memory
//! error in its commands, the commands are discarded and the error is the operation's own:
//! nothing it recorded reaches the queue, so the next operation runs on a clean device.
//!
//! Deferring the pool returns matters when threads share a device: a buffer an operation drops
//! may still be written by its own commands, which are queued only when the frame closes; until
//! then no other thread may take the buffer, or its commands could be queued first and the
//! buffer overwritten after.

use std::cell::RefCell;

use std::sync::Mutex;

use super::lock::lock;
use super::pool::{BufferKind, Pool};

/// What the frames of one device need of it: its identity (the same for every clone), the wgpu
/// device that makes encoders and error scopes, and the pool that takes back what a frame kept.
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub(crate) id: usize,
    /// Whether the pool is adversarial (`DeviceOptions::adversarial_pool`): a frame then hands
    /// back the most recently released buffer large enough, not the first of the exact size.
    pub(crate) adversarial: bool,
    pub(crate) device: &'a wgpu::Device,
    pub(crate) pool: &'a Mutex<Pool>,
}

/// One operation's recording on this thread.
pub(crate) struct Frame {
    device: usize,
    pub(crate) encoder: Option<wgpu::CommandEncoder>,
    /// Whether it copies inputs into staging textures.
    pub(crate) staged: bool,
    pub(crate) released: Vec<Released>,
}

pub(crate) enum Released {
    Buffer(BufferKind, wgpu::Buffer),
    Texture(wgpu::Texture),
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The validation, out-of-memory and internal error scopes around a piece of recording.
pub(crate) struct Scopes {
    // Popped in reverse order of pushing.
    internal: wgpu::ErrorScopeGuard,
    memory: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl Scopes {
    pub(crate) fn push(device: &wgpu::Device) -> Scopes {
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        Scopes { internal, memory, validation }
    }

    /// The first error the scopes caught, as one line.
    pub(crate) fn pop(self) -> Option<String> {
        let validation = pollster::block_on(self.validation.pop());
        let memory = pollster::block_on(self.memory.pop());
        let internal = pollster::block_on(self.internal.pop());
        validation.or(memory).or(internal).map(|e| one_line(&e.to_string()))
    }
}

/// wgpu's multi-line error text ("Validation Error\n\nCaused by:\n  …") as one line.
pub(crate) fn one_line(text: &str) -> String {
    let parts: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "Caused by:").collect();
    parts.join(": ")
}

/// Runs `f` on `dev`'s frame on this thread, or on `None` when there is none (or while the frame
/// list is borrowed, which our own code never does when it records or drops).
fn frame_of<R>(dev: Owner<'_>, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
    FRAMES.with(|frames| match frames.try_borrow_mut() {
        Ok(mut frames) => f(frames.iter_mut().rev().find(|fr| fr.device == dev.id)),
        Err(_) => f(None),
    })
}

/// Runs `f` on the encoder of `dev`'s operation open on this thread; gives `f` back when there
/// is none.
pub(crate) fn with_frame<R, F: FnOnce(&mut wgpu::CommandEncoder) -> R>(dev: Owner<'_>, f: F) -> Result<R, F> {
    frame_of(dev, |frame| match frame {
        Some(frame) => Ok(f(frame.encoder.get_or_insert_with(|| new_encoder(dev.device)))),
        None => Err(f),
    })
}

/// Marks `dev`'s open operation as staging inputs in textures (no-op outside one).
pub(crate) fn mark_staged(dev: Owner<'_>) {
    frame_of(dev, |frame| {
        if let Some(frame) = frame {
            frame.staged = true;
        }
    });
}

/// Keeps `buffer` until `dev`'s operation open on this thread closes; gives it back when there
/// is none. The buffer counts as free at once: the same operation may take it again
/// ([`take_released`]), since its own commands are recorded in order.
pub(crate) fn defer_release(
    dev: Owner<'_>,
    kind: BufferKind,
    buffer: wgpu::Buffer,
) -> Result<(), (BufferKind, wgpu::Buffer)> {
    let size = buffer.size();
    frame_of(dev, |frame| match frame {
        Some(frame) => {
            frame.released.push(Released::Buffer(kind, buffer));
            Ok(())
        }
        None => Err((kind, buffer)),
    })?;
    if kind == BufferKind::Storage {
        lock(dev.pool).hand_back(size);
    }
    Ok(())
}

/// The same for a staging texture of `bytes` bytes.
pub(crate) fn defer_texture(dev: Owner<'_>, texture: wgpu::Texture, bytes: u64) -> Result<(), wgpu::Texture> {
    frame_of(dev, |frame| match frame {
        Some(frame) => {
            frame.released.push(Released::Texture(texture));
            Ok(())
        }
        None => Err(texture),
    })?;
    lock(dev.pool).hand_back(bytes);
    Ok(())
}

/// A buffer of `kind` and exactly `size` bytes that `dev`'s operation open on this thread
/// dropped earlier, to reuse inside the same operation (in an adversarial pool, the most recently
/// dropped one of at least `size` bytes).
pub(crate) fn take_released(dev: Owner<'_>, kind: BufferKind, size: u64) -> Option<wgpu::Buffer> {
    frame_of(dev, |frame| {
        let released = &mut frame?.released;
        let at = if dev.adversarial {
            released
                .iter()
                .rposition(|r| matches!(r, Released::Buffer(k, b) if *k == kind && b.size() >= size))?
        } else {
            released
                .iter()
                .position(|r| matches!(r, Released::Buffer(k, b) if *k == kind && b.size() == size))?
        };
        match released.remove(at) {
            Released::Buffer(_, b) => Some(b),
            Released::Texture(..) => None,
        }
    })
}

/// The same for a staging texture of `width` × `height` texels.
pub(crate) fn take_released_texture(
    dev: Owner<'_>,
    format: wgpu::TextureFormat,
    width: u32,
    height: u32,
) -> Option<wgpu::Texture> {
    frame_of(dev, |frame| {
        let released = &mut frame?.released;
        let at = released.iter().position(|r| {
            matches!(r, Released::Texture(t)
                    if t.format() == format && t.width() == width && t.height() == height)
        })?;
        match released.swap_remove(at) {
            Released::Texture(t) => Some(t),
            Released::Buffer(..) => None,
        }
    })
}

/// Pops this thread's frame for `dev` when dropped (also on unwinding), returning what it held.
pub(crate) struct FrameGuard<'a> {
    dev: Owner<'a>,
    done: bool,
}

impl<'a> FrameGuard<'a> {
    pub(crate) fn open(dev: Owner<'a>) -> FrameGuard<'a> {
        FRAMES.with(|frames| {
            frames.borrow_mut().push(Frame {
                device: dev.id,
                encoder: None,
                staged: false,
                released: Vec::new(),
            })
        });
        FrameGuard { dev, done: false }
    }

    pub(crate) fn close(mut self) -> Frame {
        self.done = true;
        self.take()
    }

    fn take(&self) -> Frame {
        let frame = FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let at = frames.iter().rposition(|fr| fr.device == self.dev.id);
            at.map(|i| frames.remove(i))
        });
        frame.unwrap_or(Frame { device: self.dev.id, encoder: None, staged: false, released: Vec::new() })
    }
}

impl Drop for FrameGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let frame = self.take();
            give_back(self.dev, frame.released);
        }
    }
}

/// Whether an operation of device `id` is open on this thread (a nested call joins it).
pub(crate) fn is_open(id: usize) -> bool {
    FRAMES.with(|frames| frames.borrow().iter().any(|fr| fr.device == id))
}

/// A new command encoder on `device`.
pub(crate) fn new_encoder(device: &wgpu::Device) -> wgpu::CommandEncoder {
    device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-loss") })
}

/// Puts what a closed frame kept into the pool (already counted as handed back).
pub(crate) fn give_back(dev: Owner<'_>, released: Vec<Released>) {
    let mut pool = lock(dev.pool);
    for r in released {
        match r {
            Released::Buffer(kind, buffer) => pool.give(kind, buffer),
            Released::Texture(texture) => pool.give_texture(texture),
        }
    }
}
