//! Mutex locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: our critical sections leave no broken state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The library's own lock around GL work.
///
/// wgpu's GL backend makes its context current under a lock that it waits for at most 6 s
/// (wgpu-hal's `CONTEXT_LOCK_TIMEOUT_SECS`) and then panics — and a thread waiting for a long
/// dispatch holds it for the whole wait. So a library call on another thread would panic only
/// because the first is busy. Every entry point of the library that reaches wgpu on a GL device
/// (an operation, an upload, a read and its wait, a flush, a buffer going back to the pool, a
/// wrap) holds this gate instead: a second thread blocks here, without a timeout, until the
/// first is done, and wgpu's lock is then always free. One gate for every GL device of the
/// process: devices opened on GL adapters of one instance share one EGL context. Re-entrant on
/// a thread (an upload inside an operation holds it already).
pub(crate) struct GlGate {
    gl: bool,
    _held: Option<MutexGuard<'static, ()>>,
}

static GL_GATE: Mutex<()> = Mutex::new(());

thread_local! {
    /// How many gates this thread holds (the mutex is locked once, by the outermost).
    static GL_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl GlGate {
    /// The gate for a device on a GL adapter (`gl`); nothing to hold on other backends.
    pub(crate) fn enter(gl: bool) -> GlGate {
        if !gl {
            return GlGate { gl, _held: None };
        }
        let depth = GL_DEPTH.with(|d| d.get());
        let held = if depth == 0 { Some(lock(&GL_GATE)) } else { None };
        GL_DEPTH.with(|d| d.set(depth + 1));
        GlGate { gl, _held: held }
    }
}

impl Drop for GlGate {
    fn drop(&mut self) {
        if self.gl {
            GL_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
        // The outermost guard's mutex guard drops after this, releasing the gate.
    }
}
