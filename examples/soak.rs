//! A soak run: 100 000 mixed operations (every loss family, forward and backward, each read
//! back) on one device, printing the process's resident memory, the library's memory in use and
//! the pool's size every 10 000 operations.
//!
//! ```sh
//! cargo run --release --example soak                 # the best adapter, 100 000 operations
//! WGPU_BACKEND=gl cargo run --release --example soak -- 20000
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::mixed::{self, Inputs, KINDS};

/// The resident set size of this process in KiB (Linux), or 0 where /proc is absent.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() -> wgpu_loss::Result<()> {
    let ops: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dev = wgpu_loss::Device::new()?;
    let inputs = Inputs::new(&dev, 92);
    println!("soak: {ops} mixed operations on {}", dev.name());
    println!("| ops | RSS (MiB) | memory in use (KiB) | pooled (KiB) | s |");
    println!("|---:|---:|---:|---:|---:|");
    let start = std::time::Instant::now();
    let every = (ops / 10).max(1);
    for i in 0..=ops {
        if i % every == 0 {
            dev.synchronize()?;
            println!(
                "| {i} | {:.1} | {} | {} | {:.1} |",
                rss_kib() as f64 / 1024.0,
                dev.memory_in_use() / 1024,
                dev.pooled_bytes() / 1024,
                start.elapsed().as_secs_f64()
            );
        }
        if i < ops {
            mixed::run(i % KINDS, &inputs)?;
        }
    }
    Ok(())
}
