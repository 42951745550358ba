//! Criterion benchmarks: every kernel at named real-world shapes, next to the adapter's own
//! yardsticks measured in the same run.
//!
//! ```text
//! cargo bench                                   # every adapter found
//! WGPU_BACKEND=vulkan cargo bench               # one adapter
//! cargo bench -- cross_entropy                  # one group
//! ```
//!
//! Each measurement records its operations into the pending encoder and synchronises with the
//! device inside the timed region. Bytes are the bytes each forward kernel must read once
//! (inputs, not outputs); for a backward case (`…_backward`) they are the inputs read once plus
//! the gradient written once, the least traffic a gradient can cost. GFLOP/s for linear counts
//! 2·m·n·k, and for the LM head (`linear_cross_entropy`) 2·N·H·V per forward and three times
//! that per forward + backward. After criterion's report, a summary table gives
//! the median per-iteration time of each case and its ratio to the `read_sum` yardstick (a
//! kernel that reads each byte once with vec4 loads and sums it: the ceiling of a loss that reads
//! its input once).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_loss::{BceWithLogits, CrossEntropy, Device, Indices, Reduction, Tensor, ops};

/// (adapter, group, case).
type Key = (String, String, String);

/// Per-iteration times of every case and the work each iteration does.
static TIMES: Mutex<BTreeMap<Key, (Vec<f64>, Work)>> = Mutex::new(BTreeMap::new());

/// The read_sum yardstick of each adapter in GB/s, measured before its cases (also when a filter
/// skips criterion's own `bandwidth` group).
static YARDSTICK: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy, Debug)]
enum Work {
    Bytes(u64),
    Flops(u64),
}

fn values(n: usize, scale: f32) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

fn classes(n: usize, c: usize) -> Vec<i64> {
    (0..n).map(|i| ((i * 7919) % c) as i64).collect()
}

/// Times `op` (which records work) with a synchronisation inside the timed region.
fn bench_case(
    c: &mut Criterion,
    dev: &Device,
    group: &str,
    case: &str,
    work: Work,
    mut op: impl FnMut() -> wgpu_loss::Result<()>,
) {
    // Warm up: compiles pipelines and fills the pool.
    op().expect("benchmark op");
    dev.synchronize().expect("synchronize");
    let adapter = dev.name();
    let mut g = c.benchmark_group(format!("{group}/{adapter}"));
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    match work {
        Work::Bytes(b) => g.throughput(Throughput::Bytes(b)),
        Work::Flops(f) => g.throughput(Throughput::Elements(f)),
    };
    let key = (adapter, group.to_owned(), case.to_owned());
    g.bench_function(BenchmarkId::from_parameter(case), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                op().expect("benchmark op");
            }
            dev.synchronize().expect("synchronize");
            let elapsed = t.elapsed();
            let mut times = TIMES.lock().unwrap();
            let entry = times.entry(key.clone()).or_insert((Vec::new(), work));
            entry.0.push(elapsed.as_secs_f64() / iters as f64);
            elapsed
        })
    });
    g.finish();
}

fn class_inputs(dev: &Device, n: usize, c: usize) -> (Tensor, Indices) {
    (dev.tensor(&values(n * c, 4.0), &[n, c]).unwrap(), dev.indices(&classes(n, c), &[n]).unwrap())
}

fn benches(c: &mut Criterion) {
    let devices = Device::all().unwrap_or_else(|e| panic!("{e}"));
    for dev in &devices {
        bench_device(c, dev);
        dev.clear_pool();
    }
    summary();
}

fn bench_device(c: &mut Criterion, dev: &Device) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let wanted = |group: &str| filter.is_empty() || group.contains(&filter) || "bandwidth".contains(&filter);
    // Yardsticks: 16 M f32 (64 MiB), always measured.
    let n16 = 16 << 20;
    let big = dev.tensor(&values(n16, 1.0), &[n16]).unwrap();
    let bytes16 = n16 as u64 * 4;
    ops::bandwidth::read_sum(&big).unwrap();
    dev.synchronize().unwrap();
    let runs: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            ops::bandwidth::read_sum(&big).unwrap();
            dev.synchronize().unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    YARDSTICK.lock().unwrap().insert(dev.name(), bytes16 as f64 / median(&runs) / 1e9);
    bench_case(c, dev, "bandwidth", "read_sum", Work::Bytes(bytes16), || {
        ops::bandwidth::read_sum(&big).map(drop)
    });
    bench_case(c, dev, "bandwidth", "copy_vec4", Work::Bytes(2 * bytes16), || {
        ops::bandwidth::copy(&big).map(drop)
    });
    let dst = dev.tensor(&vec![0.0; n16], &[n16]).unwrap();
    bench_case(c, dev, "bandwidth", "copy_buffer_to_buffer", Work::Bytes(2 * bytes16), || {
        let mut enc = dev.wgpu_device().create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(big.buffer(), 0, dst.buffer(), 0, bytes16);
        dev.flush()?;
        dev.wgpu_queue().submit([enc.finish()]);
        Ok(())
    });

    if wanted("cross_entropy") {
        for (label, n, cl) in [
            ("vocab32k_4096x32000", 4096, 32000),
            ("vocab32k_1024x32000", 1024, 32000),
            ("imagenet_1024x1000", 1024, 1000),
            ("tabular_65536x10", 65536, 10),
        ] {
            let (x, t) = class_inputs(dev, n, cl);
            let bytes = (n * cl * 4 + n * 4) as u64;
            bench_case(c, dev, "cross_entropy", label, Work::Bytes(bytes), || {
                CrossEntropy::default().forward(&x, &t).map(drop)
            });
            // The gradient of the mean: logits and targets read, the (N, C) gradient written.
            let g = dev.tensor(&[1.0], &[]).unwrap();
            let bytes = (2 * n * cl * 4 + n * 4) as u64;
            bench_case(c, dev, "cross_entropy", &format!("{label}_backward"), Work::Bytes(bytes), || {
                CrossEntropy::default().backward(&x, &t, &g).map(drop)
            });
        }
    }
    if wanted("log_softmax") {
        for (label, n, cl) in [("vocab32k_1024x32000", 1024, 32000), ("imagenet_1024x1000", 1024, 1000)] {
            let x = dev.tensor(&values(n * cl, 4.0), &[n, cl]).unwrap();
            bench_case(c, dev, "log_softmax", label, Work::Bytes((n * cl * 4) as u64), || {
                wgpu_loss::log_softmax(&x).map(drop)
            });
            // y and the upstream gradient read, the gradient written.
            let y = wgpu_loss::log_softmax(&x).unwrap();
            let g = dev.tensor(&values(n * cl, 1.0), &[n, cl]).unwrap();
            let bytes = (3 * n * cl * 4) as u64;
            bench_case(c, dev, "log_softmax", &format!("{label}_backward"), Work::Bytes(bytes), || {
                wgpu_loss::LogSoftmax::default().backward(&y, &g).map(drop)
            });
            let p = wgpu_loss::softmax(&x).unwrap();
            bench_case(
                c,
                dev,
                "log_softmax",
                &format!("softmax_{label}_backward"),
                Work::Bytes(bytes),
                || wgpu_loss::Softmax::default().backward(&p, &g).map(drop),
            );
        }
    }
    if wanted("nll") {
        let (x, t) = class_inputs(dev, 1024, 32000);
        let logp = wgpu_loss::log_softmax(&x).unwrap();
        bench_case(c, dev, "nll", "vocab32k_1024x32000", Work::Bytes(1024 * 8), || {
            wgpu_loss::nll(&logp, &t).map(drop)
        });
        // Targets read, the (N, C) gradient written.
        let g = dev.tensor(&[1.0], &[]).unwrap();
        bench_case(
            c,
            dev,
            "nll",
            "vocab32k_1024x32000_backward",
            Work::Bytes(1024 * 4 + 1024 * 32000 * 4),
            || wgpu_loss::Nll::default().backward(&logp, &t, &g).map(drop),
        );
    }
    if wanted("pointwise") {
        let y: Vec<f32> = values(n16, 0.5).iter().map(|v| v + 0.5).collect();
        let yt = dev.tensor(&y, &[n16]).unwrap();
        let g = dev.tensor(&[1.0], &[]).unwrap();
        bench_case(c, dev, "pointwise", "bce_with_logits_16M", Work::Bytes(2 * bytes16), || {
            BceWithLogits::default().forward(&big, &yt).map(drop)
        });
        bench_case(c, dev, "pointwise", "mse_16M", Work::Bytes(2 * bytes16), || {
            wgpu_loss::mse(&big, &yt, Reduction::Mean).map(drop)
        });
        // Input and target read, the input gradient written.
        bench_case(c, dev, "pointwise", "bce_with_logits_16M_backward", Work::Bytes(3 * bytes16), || {
            BceWithLogits::default().backward(&big, &yt, &g).map(drop)
        });
        bench_case(c, dev, "pointwise", "mse_16M_backward", Work::Bytes(3 * bytes16), || {
            wgpu_loss::Mse::default().backward(&big, &yt, &g).map(drop)
        });
        bench_case(c, dev, "pointwise", "huber_16M_backward", Work::Bytes(3 * bytes16), || {
            wgpu_loss::Huber::default().backward(&big, &yt, &g).map(drop)
        });
        let p: Vec<f32> = values(n16, 0.49).iter().map(|v| v + 0.5).collect();
        let pt = dev.tensor(&p, &[n16]).unwrap();
        bench_case(c, dev, "pointwise", "bce_16M_backward", Work::Bytes(3 * bytes16), || {
            wgpu_loss::Bce::default().backward(&pt, &yt, &g).map(drop)
        });
        let logp = dev.tensor(&values(n16, 1.0).iter().map(|v| v - 2.0).collect::<Vec<_>>(), &[n16]).unwrap();
        bench_case(c, dev, "pointwise", "kl_div_16M_backward", Work::Bytes(3 * bytes16), || {
            wgpu_loss::KlDiv::default().backward(&logp, &yt, &g).map(drop)
        });
    }
    if wanted("linear_cross_entropy") {
        bench_lm_head(c, dev);
    }
    if wanted("linear") && !filter.starts_with("linear_") {
        for s in [1024usize, 2048] {
            let x = dev.tensor(&values(s * s, 1.0), &[s, s]).unwrap();
            let w = dev.tensor(&values(s * s, 1.0), &[s, s]).unwrap();
            let b = dev.tensor(&values(s, 1.0), &[s]).unwrap();
            let flops = 2 * (s as u64).pow(3);
            bench_case(c, dev, "linear", &format!("{s}x{s}x{s}"), Work::Flops(flops), || {
                wgpu_loss::linear(&x, &w, Some(&b)).map(drop)
            });
        }
    }
}

/// The LM head `N × H → V`, fused and unfused, forward and forward + backward. Software
/// adapters run N = 128 only (one forward at 2048×1024×32000 takes ~25 s on lavapipe) unless
/// `WGPU_LOSS_BENCH_FULL` is set; `wgpu-loss bench` also reports their peak extra memory.
fn bench_lm_head(c: &mut Criterion, dev: &Device) {
    use wgpu_loss::{Linear, LinearCrossEntropy, cross_entropy, linear};
    let software = dev.info().device_type == wgpu::DeviceType::Cpu;
    let full = std::env::var_os("WGPU_LOSS_BENCH_FULL").is_some();
    let shapes: &[(usize, usize, usize)] = if software && !full {
        &[(128, 1024, 32000)]
    } else {
        &[(2048, 1024, 32000), (1024, 2048, 128256), (128, 1024, 32000)]
    };
    for &(n, h, v) in shapes {
        let x = dev.tensor(&values(n * h, 1.0), &[n, h]).unwrap();
        let w = dev.tensor(&values(v * h, 3.0 / (h as f32).sqrt()), &[v, h]).unwrap();
        let b = dev.tensor(&values(v, 0.5), &[v]).unwrap();
        let t = dev.indices(&classes(n, v), &[n]).unwrap();
        let one = dev.tensor(&[1.0], &[]).unwrap();
        let label = format!("{n}x{h}x{v}");
        let flops = 2 * (n * h * v) as u64;
        let lce = LinearCrossEntropy::default();
        bench_case(c, dev, "linear_cross_entropy", &format!("fused_{label}"), Work::Flops(flops), || {
            lce.forward(&x, &w, Some(&b), &t).map(drop)
        });
        let name = format!("fused_{label}_forward_backward");
        bench_case(c, dev, "linear_cross_entropy", &name, Work::Flops(3 * flops), || {
            lce.forward_backward(&x, &w, Some(&b), &t, &one).map(drop)
        });
        bench_case(c, dev, "linear_cross_entropy", &format!("unfused_{label}"), Work::Flops(flops), || {
            cross_entropy(&linear(&x, &w, Some(&b))?, &t).map(drop)
        });
        let name = format!("unfused_{label}_forward_backward");
        bench_case(c, dev, "linear_cross_entropy", &name, Work::Flops(3 * flops), || {
            let logits = linear(&x, &w, Some(&b))?;
            let ce = CrossEntropy::default();
            ce.forward(&logits, &t)?;
            let dlogits = ce.backward(&logits, &t, &one)?;
            drop(logits);
            Linear::default().backward(&x, &w, &dlogits).map(drop)
        });
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Prints each case's median time, its rate, and its ratio to the adapter's read_sum yardstick.
fn summary() {
    let times = TIMES.lock().unwrap();
    let mut adapters: Vec<&String> = times.keys().map(|k| &k.0).collect();
    adapters.dedup();
    for adapter in adapters {
        let yard = YARDSTICK.lock().unwrap().get(adapter).copied().unwrap_or(f64::NAN);
        println!("\n## {adapter} (read_sum yardstick: {yard:.2} GB/s)\n");
        println!("| kernel | case | median ms | rate | / yardstick |");
        println!("|---|---|---:|---:|---:|");
        for ((a, group, case), (t, work)) in times.iter() {
            if a != adapter {
                continue;
            }
            let ms = median(t) * 1e3;
            let (rate, ratio) = match work {
                Work::Bytes(b) => {
                    let gbs = *b as f64 / median(t) / 1e9;
                    (format!("{gbs:.2} GB/s"), format!("{:.2}", gbs / yard))
                }
                Work::Flops(f) => (format!("{:.2} GFLOP/s", *f as f64 / median(t) / 1e9), "—".into()),
            };
            println!("| {group} | {case} | {ms:.2} | {rate} | {ratio} |");
        }
    }
}

criterion_group!(losses, benches);
criterion_main!(losses);
