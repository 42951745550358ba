//! The `wgpu-loss` command (feature `cli`): evaluate losses and gradients on saved arrays, list
//! adapters, run and compare cross-vendor benchmarks. See the README for the full contract.
//!
//! The binary `src/bin/wgpu-loss/main.rs` calls [`main`]. The module is public (and hidden from
//! the docs) so that its parts can be tested and fuzzed in-process: [`parse`], [`npy::parse`],
//! [`eval::Job`].

pub mod bench;
pub mod common;
pub mod compare;
pub mod eval;
pub mod info;
pub mod npy;
mod runtime_dir;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use common::{AdapterArgs, BackendArg, CliError};

/// The parsed command line.
#[derive(Parser, Debug)]
#[command(
    name = "wgpu-loss",
    version,
    about = "Machine-learning losses and their gradients on any GPU through wgpu"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
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

/// Parses `args` (the program name first) as the command line; `Err` holds clap's message
/// (usage errors, or the text of `--help` and `--version`).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Info { json } => info::run(*json),
        Command::Eval(a) => eval::run(a, false),
        Command::Grad(a) => eval::run(a, true),
        Command::Bench(a) => bench::run(a),
        Command::Compare(a) => compare::run(a),
    }
}

/// The `wgpu-loss` program: exit status 0 on success; 1 with one line on stderr on any error;
/// clap's own status and text for usage errors, `--help` and `--version`.
pub fn main() -> ExitCode {
    // Before any adapter exists: Mesa's drivers complain on stderr when there is no runtime
    // directory, which would break the one-message contract.
    runtime_dir::ensure();
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("wgpu-loss: error: {}", crate::gpu::recording::one_line(&msg));
            ExitCode::FAILURE
        }
    }
}
