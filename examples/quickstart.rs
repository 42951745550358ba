//! Evaluates a cross-entropy loss on every adapter found and checks it against the CPU
//! reference.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use wgpu_loss::{CrossEntropy, Device, Reduction, reference};

fn main() -> Result<(), wgpu_loss::Error> {
    // Four rows of logits over five classes; the last target is ignored.
    let (n, c) = (4, 5);
    let logits: Vec<f32> = (0..n * c).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.5).collect();
    let targets: Vec<i64> = vec![1, 4, 0, -100];
    let expected =
        reference::cross_entropy::cross_entropy(&logits, c, &targets, None, -100, Reduction::Mean)?[0];

    for dev in Device::all()? {
        let x = dev.tensor(&logits, &[n, c])?;
        let t = dev.indices(&targets, &[n])?;
        let loss = CrossEntropy::default().forward(&x, &t)?.item()?;
        println!("{:<50} cross_entropy = {loss:.7}  (f64 reference {expected:.7})", dev.name());
    }
    Ok(())
}
