//! `wgpu-loss`: evaluate losses and gradients on saved arrays, list adapters, run and compare
//! cross-vendor benchmarks. See the README for the full contract.

mod bench;
mod compare;
mod eval;
mod info;
mod npy;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgpu_loss::{Device, DeviceOptions};

/// One clear message for stderr; the process exits non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl CliError {
    /// Prefixes the message with the operation unless it already names an option or file.
    fn context(self, op: &str) -> CliError {
        if self.0.starts_with("--") || self.0.starts_with(op) {
            self
        } else {
            CliError(format!("{op}: {}", self.0))
        }
    }
}

impl From<wgpu_loss::Error> for CliError {
    fn from(e: wgpu_loss::Error) -> Self {
        CliError(e.to_string())
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "wgpu-loss",
    version,
    about = "Machine-learning losses and their gradients on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every adapter with its limits and optional features.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a torch.nn.functional function on .npy arrays.
    Eval(eval::OpArgs),
    /// The gradient with respect to the input, for an upstream gradient of ones.
    Grad(eval::OpArgs),
    /// Time every kernel, forward and backward, next to the adapter's own yardsticks.
    Bench(bench::BenchArgs),
    /// Merge bench reports from several machines into one table (and a chart).
    Compare(compare::CompareArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Info { json } => info::run(*json),
        Command::Eval(a) => eval::run(a, false),
        Command::Grad(a) => eval::run(a, true),
        Command::Bench(a) => bench::run(a),
        Command::Compare(a) => compare::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("wgpu-loss: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
