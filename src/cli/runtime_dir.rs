//! A runtime directory for the command's own process when the environment has none.
//!
//! On a machine without a login session (a container, a CI runner, a fresh server)
//! `XDG_RUNTIME_DIR` is unset, and Mesa's drivers print "error: XDG_RUNTIME_DIR is invalid or
//! not set in the environment." to stderr as each adapter opens. The command promises one line
//! on stderr per error, so before any adapter exists it points the variable at a private
//! directory: `wgpu-loss-runtime-<uid>` in the temporary directory, mode 0700, reused by later
//! runs if it is a directory of ours that nobody else can enter.

use std::path::{Path, PathBuf};

/// Sets `XDG_RUNTIME_DIR` for this process unless it names a directory already. Call before
/// any other thread starts (the first thing `main` does).
pub(super) fn ensure() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_dir()) {
        return;
    }
    if let Some(dir) = private_dir() {
        // SAFETY: called at the start of `main`, before any thread of ours or of a driver
        // exists, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
}

#[cfg(unix)]
fn private_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // /proc/self belongs to the process's user; elsewhere the temporary directory is a guess
    // that the ownership check below refuses if wrong.
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    let dir = std::env::temp_dir().join(format!("wgpu-loss-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    let ours = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0;
    ours.then_some(dir)
}

#[cfg(not(unix))]
fn private_dir() -> Option<PathBuf> {
    None
}
