//! [`Device::op`]: one library operation, recorded into a frame of its own (see `recording.rs`).

use super::compile_log;
use super::device::Device;
use super::recording::{FrameGuard, Scopes, give_back, is_open};
use crate::error::{Error, Result};

impl Device {
    /// Runs the operation `name`: `f` records into an encoder of its own inside error scopes.
    /// On success the commands are queued for the next submission; if `f` fails, or wgpu
    /// reports an error in what it recorded, they are discarded and the error returned, named
    /// after the operation. Nested calls on the same device and thread join the outer frame.
    /// A lost device is [`Error::DeviceLost`] before anything is recorded.
    pub(crate) fn op<R>(&self, name: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        if is_open(self.id()) {
            return f();
        }
        // Held to the end: the operation's recording, its queuing and its buffers' return.
        let _gate = self.gate();
        self.ensure_alive()?;
        let timing = compile_log::path().is_some();
        if timing {
            // Earlier work is not this operation's compile time.
            self.synchronize()?;
            compile_log::forget();
        }
        let scopes = Scopes::push(self.wgpu_device());
        let guard = FrameGuard::open(self.owner());
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
        give_back(self.owner(), frame.released);
        if timing && compile_log::pending() {
            let start = std::time::Instant::now();
            let waited = self.synchronize();
            compile_log::take(&format!("{:?}", self.info().backend), compile_log::since(start));
            waited?;
        }
        match outcome {
            // An error that came from losing the device is reported as that.
            Err(e) if e.is_gpu_error() => Err(self.lost_after_error().unwrap_or(e)),
            outcome => outcome,
        }
    }
}
