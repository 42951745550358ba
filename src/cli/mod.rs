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

/// clap's message for a usage error as one line: its own lines joined, without the usage block
/// and the pointer to `--help` (which `wgpu-loss <command> --help` gives).
pub fn usage_line(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a command is required: info, eval, grad, bench or compare (see wgpu-loss --help)".into();
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    let line = lines.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    format!("{line} (see wgpu-loss --help)")
}

/// Every long flag of `eval` (and `grad`) as the parser defines them, `--help` aside.
pub fn eval_flags() -> Vec<String> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let eval = cli.find_subcommand("eval").expect("an eval subcommand");
    eval.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "help")
        .map(|l| format!("--{l}"))
        .collect()
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

/// The exit status of a usage error (an unknown op or flag, a value that does not parse, a
/// required flag missing), clap's convention.
pub const USAGE_ERROR: u8 = 2;

/// The `wgpu-loss` program: exit status 0 on success (`--help` and `--version` too); 1 with one
/// line on stderr when the command runs into an error (a file, a value, the adapter);
/// [`USAGE_ERROR`] (2) with one line on stderr for a command line that does not parse.
pub fn main() -> ExitCode {
    // Before any adapter exists: Mesa's drivers complain on stderr when there is no runtime
    // directory, which would break the one-message contract.
    runtime_dir::ensure();
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("wgpu-loss: error: {}", usage_line(&e));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("wgpu-loss: error: {}", crate::gpu::recording::one_line(&msg));
            ExitCode::FAILURE
        }
    }
}
