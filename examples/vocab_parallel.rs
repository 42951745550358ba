//! The LM head with W split by vocabulary rows over two adapters, timed against one device.
//!
//! `cargo run --release --example vocab_parallel -- [N H V]` (default 512 1024 32000): the
//! forward and backward of one device, then the same head in two shards — on the first two
//! adapters found, or twice on the one — as the protocol runs them: each shard's state, the host
//! combine, each shard's backward; the shards run in two threads at once. Prints the times and
//! the largest differences from the single device, and a JSON line.

use std::time::Instant;

use wgpu_loss::data::values;
use wgpu_loss::{Device, Indices, LinearCrossEntropy, Tensor, TokenGrads, VocabShard};

fn main() -> wgpu_loss::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, h, v) = match args[..] {
        [n, h, v] => (n, h, v),
        _ => (512, 1024, 32000),
    };
    let mut devs = Device::all()?;
    if devs.len() < 2 {
        devs.push(Device::new()?);
    }
    let (x, w, b) = (values(n * h, 1.0, 1), values(v * h, 3.0 / (h as f32).sqrt(), 2), values(v, 0.5, 3));
    let t: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    let lce = LinearCrossEntropy::default();
    // A first round builds every pipeline on both adapters; the second is timed.
    for round in 0..2 {
        let timed = round == 1;
        run(&devs, (n, h, v), (&x, &w, &b, &t), &lce, timed)?;
    }
    Ok(())
}

/// One shard's operands on its device.
struct Shard {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    t: Indices,
    one: Tensor,
    shard: VocabShard,
}

/// `f` on every shard at once, one thread each; the results in shard order.
fn in_threads<T: Send>(
    shards: &[Shard],
    f: impl Fn(&Shard) -> wgpu_loss::Result<T> + Sync,
) -> wgpu_loss::Result<Vec<T>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = shards.iter().map(|s| scope.spawn(|| f(s))).collect();
        handles.into_iter().map(|h| h.join().expect("a shard thread")).collect()
    })
}

type Host<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [i64]);

fn run(
    devs: &[Device],
    (n, h, v): (usize, usize, usize),
    (x, w, b, t): Host<'_>,
    lce: &LinearCrossEntropy,
    timed: bool,
) -> wgpu_loss::Result<()> {
    // One device: forward, then the backward given its output.
    let d0 = &devs[0];
    let (x0, w0, b0, t0) =
        (d0.tensor(x, &[n, h])?, d0.tensor(w, &[v, h])?, d0.tensor(b, &[v])?, d0.indices(t, &[n])?);
    let one = d0.tensor(&[1.0], &[])?;
    let start = Instant::now();
    let out = lce.forward(&x0, &w0, Some(&b0), &t0)?;
    let loss = out.loss.item()?;
    let single_forward = start.elapsed().as_secs_f64();
    let grads = lce.backward(&x0, &w0, Some(&b0), &t0, &one, Some(&out))?;
    let dw_single = grads.weight.to_vec()?;
    let single = start.elapsed().as_secs_f64();

    // Two shards, one per adapter, each in its own thread; their operands uploaded first.
    let cut = v / 2 / 64 * 64;
    let shards = [(0, cut), (cut, v)]
        .iter()
        .zip(devs)
        .map(|(&(lo, hi), dev)| {
            Ok(Shard {
                x: dev.tensor(x, &[n, h])?,
                w: dev.tensor(&w[lo * h..hi * h], &[hi - lo, h])?,
                b: dev.tensor(&b[lo..hi], &[hi - lo])?,
                t: dev.indices(t, &[n])?,
                one: dev.tensor(&[1.0], &[])?,
                shard: VocabShard { start: lo, global_vocab: v },
            })
        })
        .collect::<wgpu_loss::Result<Vec<Shard>>>()?;
    let start = Instant::now();
    let states = in_threads(&shards, |s| lce.shard_state(&s.x, &s.w, Some(&s.b), &s.t, s.shard))?;
    let combined = lce.combine(&t0, &states)?;
    let split_forward = start.elapsed().as_secs_f64();
    let dws = in_threads(&shards, |s| {
        let g = lce.shard_backward(
            &s.x,
            &s.w,
            Some(&s.b),
            &s.t,
            s.shard,
            &combined,
            &s.one,
            TokenGrads::default(),
        )?;
        g.weight.to_vec()
    })?;
    let split = start.elapsed().as_secs_f64();
    let dw_split: Vec<f32> = dws.concat();
    let dw_diff = dw_single.iter().zip(&dw_split).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    if !timed {
        return Ok(());
    }
    let names: Vec<String> = devs.iter().take(2).map(|d| d.name()).collect();
    println!("one device ({}): forward {single_forward:.2} s, forward+backward {single:.2} s", names[0]);
    println!(
        "two shards ({}): forward {split_forward:.2} s, forward+backward {split:.2} s",
        names.join(" + ")
    );
    println!("loss {loss} vs {}; largest |dW difference| {dw_diff:e}", combined.loss[0]);
    println!(
        "{{\"n\":{n},\"h\":{h},\"v\":{v},\"single_forward_s\":{single_forward:.3},\"single_s\":{single:.3},\"split_forward_s\":{split_forward:.3},\"split_s\":{split:.3},\"adapters\":{names:?}}}"
    );
    Ok(())
}
