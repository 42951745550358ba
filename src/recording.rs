//! How one library operation records its GPU work so that a failure stays its own.
//!
//! [`Device::op`] runs an operation with a *frame* on the calling thread: an encoder of its
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

use crate::device::Device;
use crate::error::{Error, Result};
use crate::pool::BufferKind;

/// One operation's recording on this thread.
struct Frame {
    device: usize,
    encoder: Option<wgpu::CommandEncoder>,
    /// Whether it copies inputs into staging textures.
    staged: bool,
    released: Vec<Released>,
}

enum Released {
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
fn frame_of<R>(dev: &Device, f: impl FnOnce(Option<&mut Frame>) -> R) -> R {
    FRAMES.with(|frames| match frames.try_borrow_mut() {
        Ok(mut frames) => f(frames.iter_mut().rev().find(|fr| fr.device == dev.id())),
        Err(_) => f(None),
    })
}

/// Runs `f` on the encoder of `dev`'s operation open on this thread; gives `f` back when there
/// is none.
pub(crate) fn with_frame<R, F: FnOnce(&mut wgpu::CommandEncoder) -> R>(dev: &Device, f: F) -> Result<R, F> {
    frame_of(dev, |frame| match frame {
        Some(frame) => Ok(f(frame.encoder.get_or_insert_with(|| dev.new_encoder()))),
        None => Err(f),
    })
}

/// Marks `dev`'s open operation as staging inputs in textures (no-op outside one).
pub(crate) fn mark_staged(dev: &Device) {
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
    dev: &Device,
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
        crate::device::lock(&dev.inner.pool).hand_back(size);
    }
    Ok(())
}

/// The same for a staging texture of `bytes` bytes.
pub(crate) fn defer_texture(dev: &Device, texture: wgpu::Texture, bytes: u64) -> Result<(), wgpu::Texture> {
    frame_of(dev, |frame| match frame {
        Some(frame) => {
            frame.released.push(Released::Texture(texture));
            Ok(())
        }
        None => Err(texture),
    })?;
    crate::device::lock(&dev.inner.pool).hand_back(bytes);
    Ok(())
}

/// A buffer of `kind` and exactly `size` bytes that `dev`'s operation open on this thread
/// dropped earlier, to reuse inside the same operation.
pub(crate) fn take_released(dev: &Device, kind: BufferKind, size: u64) -> Option<wgpu::Buffer> {
    frame_of(dev, |frame| {
        let released = &mut frame?.released;
        let at = released
            .iter()
            .position(|r| matches!(r, Released::Buffer(k, b) if *k == kind && b.size() == size))?;
        match released.swap_remove(at) {
            Released::Buffer(_, b) => Some(b),
            Released::Texture(..) => None,
        }
    })
}

/// The same for a staging texture of `width` × `height` texels.
pub(crate) fn take_released_texture(dev: &Device, width: u32, height: u32) -> Option<wgpu::Texture> {
    frame_of(dev, |frame| {
        let released = &mut frame?.released;
        let at = released
            .iter()
            .position(|r| matches!(r, Released::Texture(t) if t.width() == width && t.height() == height))?;
        match released.swap_remove(at) {
            Released::Texture(t) => Some(t),
            Released::Buffer(..) => None,
        }
    })
}

/// Pops this thread's frame for `dev` when dropped (also on unwinding), returning what it held.
struct FrameGuard<'a> {
    dev: &'a Device,
    done: bool,
}

impl FrameGuard<'_> {
    fn open(dev: &Device) -> FrameGuard<'_> {
        FRAMES.with(|frames| {
            frames.borrow_mut().push(Frame {
                device: dev.id(),
                encoder: None,
                staged: false,
                released: Vec::new(),
            })
        });
        FrameGuard { dev, done: false }
    }

    fn close(mut self) -> Frame {
        self.done = true;
        self.take()
    }

    fn take(&self) -> Frame {
        let frame = FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let at = frames.iter().rposition(|fr| fr.device == self.dev.id());
            at.map(|i| frames.remove(i))
        });
        frame.unwrap_or(Frame { device: self.dev.id(), encoder: None, staged: false, released: Vec::new() })
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

/// Puts what a closed frame kept into the pool (already counted as handed back).
fn give_back(dev: &Device, released: Vec<Released>) {
    let mut pool = crate::device::lock(&dev.inner.pool);
    for r in released {
        match r {
            Released::Buffer(kind, buffer) => pool.give(kind, buffer),
            Released::Texture(texture) => pool.give_texture(texture),
        }
    }
}

impl Device {
    /// Runs the operation `name`: `f` records into an encoder of its own inside error scopes.
    /// On success the commands are queued for the next submission; if `f` fails, or wgpu
    /// reports an error in what it recorded, they are discarded and the error returned, named
    /// after the operation. Nested calls on the same device and thread join the outer frame.
    /// A lost device is [`Error::DeviceLost`] before anything is recorded.
    pub(crate) fn op<R>(&self, name: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let nested = FRAMES.with(|frames| frames.borrow().iter().any(|fr| fr.device == self.id()));
        if nested {
            return f();
        }
        self.ensure_alive()?;
        let scopes = Scopes::push(self.wgpu_device());
        let guard = FrameGuard::open(self);
        let result = f();
        let frame = guard.close();
        let commands = match result {
            Ok(_) => frame.encoder.map(|e| e.finish()),
            Err(_) => None,
        };
        let caught = scopes.pop();
        let outcome = match (result, caught) {
            // wgpu's messages name the call, not the operation.
            (Err(Error::Wgpu(message)), _) if !message.starts_with(name) => {
                Err(Error::Wgpu(format!("{name}: {message}")))
            }
            (Err(e), _) => Err(e),
            (Ok(_), Some(message)) => Err(Error::Wgpu(format!("{name}: {message}"))),
            (Ok(r), None) => {
                if let Some(commands) = commands {
                    self.enqueue(commands, frame.staged);
                }
                Ok(r)
            }
        };
        give_back(self, frame.released);
        match outcome {
            // An error that came from losing the device is reported as that.
            Err(e) if e.is_gpu_error() => Err(self.lost_after_error().unwrap_or(e)),
            outcome => outcome,
        }
    }
}
