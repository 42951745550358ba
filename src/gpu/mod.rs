//! The GPU layer: adapter choice and the device, the buffer pool, recording and submission, the
//! pipeline cache, input staging, dispatch and timing. It knows no loss and no kernel by name:
//! kernels reach it as [`KernelSpec`]s declared by the kernel layer above.

mod adapter;
mod compile_log;
pub mod device;
pub(crate) mod dispatch;
mod lock;
mod operation;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub(crate) mod recording;
pub mod spec;
pub(crate) mod staging;

pub use spec::{Binding, BindingKind, EntrySpec, InputPath, KernelSpec, LoopBound};
