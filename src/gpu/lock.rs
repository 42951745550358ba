//! Mutex locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: our critical sections leave no broken state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
