//! Shared test helpers: the adapters to run on, one tolerance rule, seeded data.
#![allow(dead_code)]

pub mod classes;
pub mod mixed;

use std::io::Write;
use std::sync::OnceLock;

use wgpu_loss::{Device, DeviceOptions};

/// Every adapter `Device::all()` finds (honouring WGPU_BACKEND / WGPU_ADAPTER_NAME), opened once
/// per test binary, each with its default input path; where that path stages inputs in textures
/// (software adapters), the adapter comes a second time reading storage buffers, the GPU path.
/// No adapter is a failure, never a silent skip.
pub fn devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut all = open(DeviceOptions::default(), "default limits");
        if all.iter().any(|d| d.texture_inputs()) {
            let storage = open(DeviceOptions::default().with_texture_inputs(false), "storage-buffer inputs");
            all.extend(storage);
        }
        all
    })
}

/// The adapter's name and its input path, for messages.
pub fn label(dev: &Device) -> String {
    format!("{} [{} inputs]", dev.name(), if dev.texture_inputs() { "texture" } else { "storage" })
}

/// The same adapters with the storage binding limit capped at 64 KiB, so that small tensors
/// take the chunked path that the 128 MiB limit forces on real ones.
pub fn small_binding_devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        open(DeviceOptions::default().with_max_storage_binding_size(64 << 10), "64 KiB bindings")
    })
}

/// The same adapters with the loop budget narrowed to its minimum, so that small shapes take
/// the splits (more threads per row, pieces of k, more slices) that the software adapters'
/// 60 000-iteration budget forces on large ones.
pub fn narrow_budget_devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let options = DeviceOptions::default().with_max_loop_trips(wgpu_loss::MIN_LOOP_BUDGET);
        open(options, "loop budget narrowed to 1024")
    })
}

/// One device per adapter with an adversarial pool (`DeviceOptions::adversarial_pool`): every
/// allocation gets the buffer released last and nothing is submitted before a read, so work
/// ordered wrongly against a reused buffer gives wrong numbers here.
pub fn adversarial_devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| open(DeviceOptions::default().with_adversarial_pool(true), "adversarial pool"))
}

/// The adversarial pool with 64 KiB bindings, so that small shapes take the chunked paths (W in
/// shards, rows in chunks, LM-head tiles) with every buffer reused as early as possible.
pub fn adversarial_small_binding_devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let options =
            DeviceOptions::default().with_adversarial_pool(true).with_max_storage_binding_size(64 << 10);
        open(options, "adversarial pool, 64 KiB bindings")
    })
}

/// `f` on each of `devs` at once, a thread each, its results in order; a panic in one fails the
/// caller. Work on a Vulkan device and on a GL one then overlaps (the library runs one GL call
/// at a time per process), so the software adapters compile pipelines on two cores.
pub fn on_each<'a, R: Send>(
    devs: impl IntoIterator<Item = &'a Device>,
    f: impl Fn(&'a Device) -> R + Sync,
) -> Vec<R> {
    let f = &f;
    std::thread::scope(|scope| {
        let runs: Vec<_> = devs.into_iter().map(|dev| scope.spawn(move || f(dev))).collect();
        runs.into_iter().map(|run| run.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// One device per adapter (the default input path), for tests too large to repeat per path.
pub fn one_per_adapter() -> Vec<&'static Device> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for dev in devices() {
        let key = (dev.info().name.clone(), dev.info().backend);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(dev);
        }
    }
    out
}

/// Every adapter, opened once per test binary: the option sets above are handles on these
/// devices ([`Device::reconfigured`]), so a pipeline compiled for one is not compiled again for
/// another (the software adapters compile on first dispatch, most of the suite's time).
fn adapters() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        Device::all().unwrap_or_else(|e| {
            panic!("no GPU adapter for the tests: {e}\n(hint: apt-get install mesa-vulkan-drivers)")
        })
    })
}

fn open(options: DeviceOptions, what: &str) -> Vec<Device> {
    let devices: Vec<Device> = adapters().iter().map(|d| d.reconfigured(options.clone())).collect();
    let names: Vec<String> = devices.iter().map(|d| d.name()).collect();
    // Written to stderr directly (not through `eprintln!`, which the test harness captures) so
    // that every run shows which adapters it tested.
    let _ = writeln!(std::io::stderr(), "wgpu-loss tests ({what}) run on: {}", names.join(" | "));
    // CI names the backends that must be present (e.g. "vulkan,gl"), so that a missing driver
    // fails the run instead of quietly testing fewer adapters.
    if let Ok(required) = std::env::var("WGPU_LOSS_REQUIRE_BACKENDS") {
        for backend in required.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            assert!(
                devices.iter().any(|d| format!("{:?}", d.info().backend).eq_ignore_ascii_case(backend)),
                "WGPU_LOSS_REQUIRE_BACKENDS names {backend}, but only these adapters were found: {names:?}"
            );
        }
    }
    devices
}

/// Tolerance: |got − want| ≤ abs + rel·|want|, NaN matches only NaN.
///
/// Why these numbers. Every kernel computes in f32; the references in f64 from the same f32
/// inputs, so the difference is the kernel's own rounding. WGSL bounds `exp` at 3 + 2|x| ulp and
/// `log` at 2⁻²¹ absolute near 1, so elementwise results get `rel` 1e-5 (about 100 ulp) and an
/// `abs` floor of 1e-6 for values near 0. Results that subtract quantities of size S (a
/// log-softmax of logits of magnitude S, a loss lse − x[t]) carry an absolute error of a few ulp
/// of S, so their `abs` scales with the inputs' magnitude ([`Tol::scaled`]). Sums over n terms
/// in f32 lose about √n ulp in practice; [`Tol::sum`] allows log2(n)·1e-6 relative on top.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

impl Tol {
    pub const ELEMENT: Tol = Tol { abs: 1e-6, rel: 1e-5 };

    /// For results computed from inputs of magnitude up to `scale`.
    pub fn scaled(scale: f64) -> Tol {
        Tol { abs: 1e-6 + 4e-7 * scale.max(1.0), rel: 1e-5 }
    }

    /// Widened for a reduction over `n` terms.
    pub fn sum(self, n: usize) -> Tol {
        Tol { abs: self.abs, rel: self.rel + 1e-6 * (n.max(2) as f64).log2() }
    }
}

/// Asserts `got` matches `want` within `tol`; on failure names the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    let mut failures = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else {
            (g - w).abs() <= tol.abs + tol.rel * w.abs()
        };
        if !ok {
            failures += 1;
            let excess = if w.is_nan() || g.is_nan() {
                f64::INFINITY
            } else {
                (g - w).abs() / (tol.abs + tol.rel * w.abs())
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {failures} of {} outside {tol:?}; worst at {i}: got {} want {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// The largest relative error (|got − want| / max(|want|, 1e-30)), for reporting.
pub fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .filter(|(g, w)| !g.is_nan() && !w.is_nan())
        .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1e-30))
        .fold(0.0, f64::max)
}

/// The project's one seeded generator.
pub use wgpu_loss::data::Rng;

/// `linear`'s backward for x `(m, k)`, W `(n, k)` and a random upstream gradient on `dev`,
/// against the f64 reference: dX sums n terms and dW, db sum m terms, each checked with
/// `tol(terms)`.
pub fn check_linear_backward(
    dev: &wgpu_loss::Device,
    (m, n, k): (usize, usize, usize),
    rng: &mut Rng,
    tol: impl Fn(usize) -> Tol,
) {
    let (x, w, g) = (rng.values(m * k, 1.0), rng.values(n * k, 1.0), rng.values(m * n, 1.0));
    let grads = wgpu_loss::Linear::default()
        .backward(
            &dev.tensor(&x, &[m, k]).unwrap(),
            &dev.tensor(&w, &[n, k]).unwrap(),
            &dev.tensor(&g, &[m, n]).unwrap(),
        )
        .unwrap();
    let (dx, dw, db) = wgpu_loss::reference::linear::linear_backward(&x, &w, &g, k);
    let what = format!("{} linear backward m={m} n={n} k={k}", label(dev));
    assert_close(&format!("{what}: dX"), &grads.input.to_vec().unwrap(), &dx, tol(n));
    assert_close(&format!("{what}: dW"), &grads.weight.to_vec().unwrap(), &dw, tol(m));
    assert_close(&format!("{what}: db"), &grads.bias.to_vec().unwrap(), &db, tol(m));
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
