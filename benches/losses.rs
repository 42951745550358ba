//! Criterion benchmarks: every loss of the catalogue at its benchmark shapes, forward and
//! backward, and the LM head, next to the adapter's own yardsticks measured in the same run.
//!
//! ```text
//! cargo bench                                   # every adapter found
//! WGPU_BACKEND=vulkan cargo bench               # one adapter
//! cargo bench -- cross_entropy                  # one loss (a group per catalogue name)
//! WGPU_LOSS_BENCH_DTYPES=bf16 cargo bench       # the element types of the inputs (default
//!                                               # f32,f16,bf16; a case per type, `…_bf16`)
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
use wgpu_loss::catalogue::{self, LOSSES, Work};
use wgpu_loss::data::values;
use wgpu_loss::{CrossEntropy, DType, Device, ops};

/// (adapter, group, case).
type Key = (String, String, String);

/// Per-iteration times of every case and the work each iteration does.
static TIMES: Mutex<BTreeMap<Key, (Vec<f64>, Work)>> = Mutex::new(BTreeMap::new());

/// The read_sum yardstick of each adapter in GB/s, measured before its cases (also when a filter
/// skips criterion's own `bandwidth` group).
static YARDSTICK: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

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
    let big = dev.tensor(&values(n16, 1.0, 1), &[n16]).unwrap();
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

    for (l, loss) in LOSSES.iter().enumerate() {
        if !wanted(loss.name) {
            continue;
        }
        for (s, shape) in loss.bench.iter().enumerate() {
            for dtype in dtypes() {
                let args = loss.bench_args((l * 64 + s) as u64 + 2, shape).as_dtype(dtype);
                let inputs = args.upload(dev).unwrap();
                let (forward, backward) = (loss.bench_work)(shape.dims);
                let name = if dtype == DType::F32 {
                    shape.name.to_string()
                } else {
                    format!("{}_{dtype}", shape.name)
                };
                let (forward, backward) = (halved(forward, dtype), halved(backward, dtype));
                bench_case(c, dev, loss.name, &name, forward, || (loss.forward)(&inputs).map(drop));
                if shape.backward {
                    let out = (loss.forward)(&inputs).unwrap();
                    let ones = catalogue::ones(dev, out.shape()).unwrap();
                    bench_case(c, dev, loss.name, &format!("{name}_backward"), backward, || {
                        (loss.backward)(&inputs, &out, &ones).map(drop)
                    });
                }
            }
        }
    }
    if wanted("linear_cross_entropy") {
        bench_lm_head(c, dev);
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
        let x = dev.tensor(&values(n * h, 1.0, 8), &[n, h]).unwrap();
        let w = dev.tensor(&values(v * h, 3.0 / (h as f32).sqrt(), 9), &[v, h]).unwrap();
        let b = dev.tensor(&values(v, 0.5, 10), &[v]).unwrap();
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

/// The element types to run (`WGPU_LOSS_BENCH_DTYPES`, comma-separated; default all three).
fn dtypes() -> Vec<DType> {
    let list = std::env::var("WGPU_LOSS_BENCH_DTYPES").unwrap_or_else(|_| "f32,f16,bf16".into());
    list.split(',')
        .map(|d| match d.trim() {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            other => panic!("WGPU_LOSS_BENCH_DTYPES: unknown element type {other:?} (f32, f16, bf16)"),
        })
        .collect()
}

/// The bytes of a case whose inputs (and gradient) are `dtype`: the f32 case's scaled.
fn halved(work: Work, dtype: DType) -> Work {
    match work {
        Work::Bytes(b) => Work::Bytes(b * dtype.size() as u64 / 4),
        flops => flops,
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
