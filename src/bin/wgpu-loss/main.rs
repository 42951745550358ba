//! `wgpu-loss`: the command line of the crate (see `wgpu_loss::cli` and the README).

fn main() -> std::process::ExitCode {
    wgpu_loss::cli::main()
}
