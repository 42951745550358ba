//! The crate's one error type.
//!
//! Everything a caller can get wrong (shapes, class ids, options, sizes beyond what the adapter
//! allows) comes back as a typed [`Error`]; nothing in the library panics on user input and
//! nothing waits forever (map and poll waits carry a timeout).

use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `wgpu-loss`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched. `help` says how to get one.
    #[error("no usable GPU adapter found{filter}; {help}")]
    NoAdapter {
        /// What restricted the search (backend or adapter name), if anything.
        filter: String,
        /// How to make one available.
        help: &'static str,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on `{adapter}`: {source}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },
    /// The device was lost (driver reset, GPU removed, or dropped).
    #[error("the device was lost: {0}")]
    DeviceLost(String),
    /// wgpu reported a validation or out-of-memory error while running our commands.
    #[error("wgpu reported an error: {0}")]
    Wgpu(String),
    /// A shader failed to compile or a pipeline failed to build.
    #[error("kernel `{kernel}` failed to build: {message}")]
    Shader {
        /// The kernel's label.
        kernel: &'static str,
        /// The compiler's message.
        message: String,
    },
    /// Shapes that do not fit together.
    #[error("{op}: shape mismatch: {message}")]
    Shape {
        /// The operation that was called.
        op: &'static str,
        /// What was expected and what was given.
        message: String,
    },
    /// A class id that is neither in `0..classes` nor the ignore index. Detected by the kernel
    /// (it never reads out of bounds) and reported when the result is read.
    #[error(
        "{op}: target {value} at position {position} is out of range for {classes} classes{}",
        ignore_note(*ignore_index)
    )]
    TargetOutOfRange {
        /// The operation that found it.
        op: &'static str,
        /// The flat position of the first bad target.
        position: usize,
        /// Its value.
        value: i64,
        /// The number of classes.
        classes: usize,
        /// The ignore index in force; [`NO_IGNORE_INDEX`] for a loss that has none
        /// (multi_margin).
        ignore_index: i64,
    },
    /// An input value outside the operation's domain (e.g. a probability outside [0, 1] for
    /// `bce`). Detected by the kernel and reported when the result is read.
    #[error("{op}: {operand} {value} at position {position} is outside {expected}")]
    InputOutOfRange {
        /// The operation that found it.
        op: &'static str,
        /// Which of its operands holds the value: `input`, or e.g. gaussian_nll's `var`.
        operand: &'static str,
        /// The flat position of the first bad value.
        position: usize,
        /// Its value (NaN counts as outside).
        value: f32,
        /// The accepted range.
        expected: &'static str,
    },
    /// An option or a value outside what the operation accepts.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation that was called.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An operation on an empty tensor where the result would be meaningless or unsupported.
    #[error("{op}: empty input ({what})")]
    Empty {
        /// The operation that was called.
        op: &'static str,
        /// Which input is empty.
        what: &'static str,
    },
    /// A size the adapter cannot handle.
    #[error("{what} needs {requested} but the adapter allows at most {max}")]
    Limit {
        /// What would exceed the limit (the operation and shape where one is involved).
        what: String,
        /// What the operation needs.
        requested: u64,
        /// What the adapter allows.
        max: u64,
    },
    /// Tensors from two different devices were mixed in one operation.
    #[error("{op}: tensors live on different devices")]
    DeviceMismatch {
        /// The operation that was called.
        op: &'static str,
    },
    /// Mapping a buffer for reading failed.
    #[error("mapping a buffer for reading failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),
    /// Waiting for the device failed.
    #[error("waiting for the device failed: {0}")]
    Poll(#[from] wgpu::PollError),
    /// The GPU did not finish in time.
    #[error("the device did not finish within {0:?}")]
    Timeout(Duration),
}

impl Error {
    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape { op, message: message.into() }
    }

    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument { op, message: message.into() }
    }

    /// Whether the error came from the GPU or wgpu (and so may mean the device was lost), not
    /// from checking the caller's arguments.
    pub(crate) fn is_gpu_error(&self) -> bool {
        matches!(self, Error::Wgpu(_) | Error::Shader { .. } | Error::Map(_) | Error::Poll(_))
    }

    pub(crate) fn limit(what: impl Into<String>, requested: u64, max: u64) -> Self {
        Error::Limit { what: what.into(), requested, max }
    }
}

/// The `ignore_index` of [`Error::TargetOutOfRange`] from a loss that ignores no target.
pub const NO_IGNORE_INDEX: i64 = i64::MIN;

/// The ignore index's part of a [`Error::TargetOutOfRange`] message.
fn ignore_note(ignore_index: i64) -> String {
    if ignore_index == NO_IGNORE_INDEX { String::new() } else { format!(" (ignore_index {ignore_index})") }
}
