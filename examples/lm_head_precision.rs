//! The fused LM head in bf16 (and f16) against the f64 reference on the same rounded inputs:
//! the largest error of the loss, dX, dW and db, with the gradients returned in the inputs'
//! type (rounded once from their f32 accumulation) and in f32 (`Outputs::F32`), next to the
//! same call on f32 inputs.
//!
//! ```text
//! cargo run --release --example lm_head_precision            # N = 256, H = 1024, V = 32000
//! cargo run --release --example lm_head_precision -- 64 256 8000
//! cargo run --release --example lm_head_precision -- --w-memory   # also W at 128256 × 4096
//! ```
//!
//! Errors are relative to the largest magnitude of each result (`max |got − want| / max
//! |want|`): an element-wise relative error is dominated by the many gradients near zero.

use wgpu_loss::data::values;
use wgpu_loss::reference::linear_cross_entropy::{self as reference, Options};
use wgpu_loss::{DType, Device, LinearCrossEntropy, Outputs, Tensor};

/// max |got − want| / max |want|.
fn error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((g as f64 - w).abs())) / scale
}

fn main() -> wgpu_loss::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, h, v) = match args[..] {
        [n, h, v] => (n, h, v),
        _ => (256, 1024, 32000),
    };
    let dev = Device::new()?;
    println!("{} — LM head N = {n}, H = {h}, V = {v}, mean loss, upstream gradient 1", dev.name());
    println!("| inputs | gradients | loss | dX | dW | db |");
    println!("|---|---|---:|---:|---:|---:|");
    let targets: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    let t = dev.indices(&targets, &[n])?;
    let one = dev.tensor(&[1.0], &[])?;
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let round = |x: Vec<f32>| -> Vec<f32> { x.into_iter().map(|v| dtype.round(v)).collect() };
        let x = round(values(n * h, 1.0, 8));
        let w = round(values(v * h, 3.0 / (h as f32).sqrt(), 9));
        let b = round(values(v, 0.5, 10));
        let o = Options::default();
        let loss = reference::linear_cross_entropy(&x, &w, Some(&b), &targets, h, &o)?.0;
        let (dx, dw, db) =
            reference::linear_cross_entropy_backward(&x, &w, Some(&b), &targets, h, &o, &[1.0f32])?;
        let (xt, wt, bt): (Tensor, Tensor, Tensor) = (
            dev.tensor_as(&x, &[n, h], dtype)?,
            dev.tensor_as(&w, &[v, h], dtype)?,
            dev.tensor_as(&b, &[v], dtype)?,
        );
        let kinds: &[Outputs] =
            if dtype == DType::F32 { &[Outputs::AsInputs] } else { &[Outputs::AsInputs, Outputs::F32] };
        for &outputs in kinds {
            let head = LinearCrossEntropy::default().outputs(outputs);
            let (out, g) = head.forward_backward(&xt, &wt, Some(&bt), &t, &one)?;
            let grads =
                if outputs == Outputs::F32 { "f32".to_string() } else { g.weight.dtype().to_string() };
            println!(
                "| {dtype} | {grads} | {:.2e} | {:.2e} | {:.2e} | {:.2e} |",
                error(&out.loss.to_vec()?, &loss),
                error(&g.input.to_vec()?, &dx),
                error(&g.weight.to_vec()?, &dw),
                error(&g.bias.to_vec()?, &db),
            );
        }
    }
    if std::env::args().any(|a| a == "--w-memory") {
        // Llama 3's classifier: the device memory a bf16 W takes, measured.
        let (v, h) = (128_256usize, 4096usize);
        let before = dev.memory_in_use();
        let w = dev.tensor_as(&vec![0.0; v * h], &[v, h], DType::BF16)?;
        let taken = dev.memory_in_use() - before;
        println!(
            "W [{v}, {h}]: bf16 takes {taken} bytes ({:.3} GiB) on the device; f32 would take {} bytes ({:.3} GiB)",
            taken as f64 / (1u64 << 30) as f64,
            DType::F32.bytes((v * h) as u64),
            DType::F32.bytes((v * h) as u64) as f64 / (1u64 << 30) as f64
        );
        drop(w);
    }
    Ok(())
}
