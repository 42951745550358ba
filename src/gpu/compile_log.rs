//! What each pipeline costs the driver to build, for finding the expensive ones.
//!
//! With `WGPU_LOSS_COMPILE_LOG=<file>` set, every pipeline the device builds is timed twice and
//! appended to `<file>` as one tab-separated line: the backend, the pipeline (kernel, entry
//! point, input path with the element types that are not f32, override constants), the
//! milliseconds `create_compute_pipeline` took, and the milliseconds of the first submission
//! that used it. Mesa's llvmpipe compiles a compute shader to machine code on its first
//! dispatch, not when the pipeline is created, so the second figure is the one that counts
//! there. To time that submission alone, an instrumented device submits and waits before each
//! operation that builds a pipeline, and again right after it; test-sized inputs run in well
//! under a millisecond, so what remains is compile time. A pipeline first used in an
//! operation together with others shares that operation's time: the line names how many.
//!
//! Off (the default), none of this runs and nothing is waited for.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

use super::spec::{InputPath, KernelSpec, Reads, SLOTS};
use crate::dtype::DType;

/// The log file, when `WGPU_LOSS_COMPILE_LOG` names one.
pub(crate) fn path() -> Option<&'static str> {
    static PATH: OnceLock<Option<String>> = OnceLock::new();
    PATH.get_or_init(|| std::env::var("WGPU_LOSS_COMPILE_LOG").ok().filter(|p| !p.is_empty())).as_deref()
}

thread_local! {
    /// The pipelines this thread built since its operation began, with their build times.
    static BUILT: RefCell<Vec<(String, f64)>> = const { RefCell::new(Vec::new()) };
}

/// A human-readable name of one pipeline.
pub(crate) fn label(
    kernel: &KernelSpec,
    reads: Reads,
    entry: &str,
    constants: &[(&'static str, f64)],
) -> String {
    let mut s =
        format!("{}::{entry} {}", kernel.name, if reads.path == InputPath::Texture { "tex" } else { "buf" });
    for slot in 0..SLOTS {
        let dtype = reads.dtype_at(slot);
        if dtype != DType::F32 {
            s.push_str(&format!(" {slot}:{dtype:?}"));
        }
    }
    for (name, value) in constants {
        s.push_str(&format!(" {name}={value}"));
    }
    s
}

/// Runs `build`, timing it into this thread's list when the log is on.
pub(crate) fn timed_build<T>(label: impl FnOnce() -> String, build: impl FnOnce() -> T) -> T {
    if path().is_none() {
        return build();
    }
    let start = Instant::now();
    let built = build();
    let ms = since(start);
    BUILT.with(|b| b.borrow_mut().push((label(), ms)));
    built
}

/// Whether this thread built pipelines since the last [`take`].
pub(crate) fn pending() -> bool {
    BUILT.with(|b| !b.borrow().is_empty())
}

/// Clears this thread's list (at an operation's start: what an earlier, failed one built is
/// not timed).
pub(crate) fn forget() {
    BUILT.with(|b| b.borrow_mut().clear());
}

/// Appends this thread's built pipelines to the log, each with `first_run` milliseconds (the
/// submission that first used them all), and clears the list.
pub(crate) fn take(backend: &str, first_run: f64) {
    let built = BUILT.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let Some(path) = path() else { return };
    let shared = built.len();
    let mut lines = String::new();
    for (label, build) in built {
        lines.push_str(&format!("{backend}\t{label}\t{build:.1}\t{first_run:.1}\t{shared}\n"));
    }
    // A log that cannot be written is not the operation's failure.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(lines.as_bytes());
    }
}

/// Milliseconds since `start`.
pub(crate) fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
