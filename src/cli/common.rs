//! What every subcommand shares: the one-line error and the adapter options.

use clap::{Args, ValueEnum};

use crate::error::Error;
use crate::gpu::device::{Device, DeviceOptions};

/// One clear message for stderr; the process exits non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl CliError {
    /// Prefixes the message with the operation (`cross-entropy`) unless it already names an
    /// option, a file or the operation, in either spelling (`cross_entropy` in the library's
    /// messages).
    pub(crate) fn context(self, op: &str) -> CliError {
        let named = self.0.starts_with("--")
            || self.0.starts_with(op)
            || self.0.starts_with(&op.replace('-', "_"))
            || self.0.starts_with("wgpu reported an error: ");
        if named { self } else { CliError(format!("{op}: {}", self.0)) }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError(e.to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

/// Adapter choice; without it WGPU_BACKEND / WGPU_ADAPTER_NAME apply, then the default.
#[derive(Args, Debug, Clone)]
pub struct AdapterArgs {
    /// The graphics API.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// A part of the adapter's name (case-insensitive).
    #[arg(long)]
    pub adapter: Option<String>,
}

impl AdapterArgs {
    pub fn backends(&self) -> Option<wgpu::Backends> {
        self.backend.map(|b| match b {
            BackendArg::Vulkan => wgpu::Backends::VULKAN,
            BackendArg::Metal => wgpu::Backends::METAL,
            BackendArg::Dx12 => wgpu::Backends::DX12,
            BackendArg::Gl => wgpu::Backends::GL,
        })
    }

    pub fn device(&self) -> Result<Device, CliError> {
        Ok(Device::select(self.backends(), self.adapter.as_deref(), DeviceOptions::default())?)
    }
}
