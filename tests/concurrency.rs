//! One `Device` shared by 8 threads, 1 000 mixed operations each (every loss family, forward and
//! backward, each read back), on every adapter: every result is bitwise equal to the same
//! operation run alone on one thread. Operations record into encoders of their own and queue
//! them in the order they finish, and buffers an operation drops go back to the pool only once
//! its commands are queued, so threads cannot see each other's data.

use crate::common;

use common::mixed::{self, Inputs, KINDS};
use common::one_per_adapter;

const THREADS: usize = 8;
const OPS: usize = 1000;

#[test]
fn eight_threads_share_a_device_bitwise() {
    for dev in one_per_adapter() {
        let what = common::label(dev);
        let inputs = Inputs::new(dev, 90);
        // Single-threaded results; this also builds every pipeline before the threads start
        // (llvmpipe-GL compiles under a context lock that other threads wait on for at most 6 s).
        let want: Vec<Vec<Vec<f32>>> = (0..KINDS).map(|k| mixed::run(k, &inputs).unwrap()).collect();
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (inputs, want, what) = (&inputs, &want, &what);
                s.spawn(move || {
                    for i in 0..OPS {
                        let kind = (7 * t + 5 * i + i / KINDS) % KINDS;
                        let got =
                            mixed::run(kind, inputs).unwrap_or_else(|e| panic!("{what}: op {kind}: {e}"));
                        let same = got.len() == want[kind].len()
                            && got.iter().zip(&want[kind]).all(|(g, w)| {
                                g.len() == w.len() && g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits())
                            });
                        assert!(
                            same,
                            "{what}: thread {t}, op #{i} (kind {kind}) differs from the single-threaded run"
                        );
                    }
                });
            }
        });
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("{what}: {THREADS} threads x {OPS} ops in {:.1?}\n", start.elapsed()).as_bytes(),
        );
    }
}

/// A thread that runs GL work longer than wgpu's 6 s context-lock timeout while another thread
/// calls the library on the same GL device: the second waits for the first (the library's own
/// GL gate) and both finish with the right results, where wgpu alone would panic in the second.
#[test]
fn a_long_gl_submission_does_not_panic_another_thread() {
    use std::time::{Duration, Instant};
    use wgpu_loss::{Linear, Mse, Reduction};
    let gl: Vec<&wgpu_loss::Device> =
        one_per_adapter().into_iter().filter(|d| d.info().backend == wgpu::Backend::Gl).collect();
    if gl.is_empty() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"GL gate: no GL adapter here to test\n");
        return;
    }
    for dev in gl {
        let what = common::label(dev);
        let n = 1024;
        let x = dev.tensor(&vec![0.001; n * n], &[n, n]).unwrap();
        let small = dev.tensor(&[1.0, 2.0, 3.0, 4.0], &[4]).unwrap();
        let mse = Mse::default().reduction(Reduction::Sum);
        // Both pipelines built, and one GEMM timed, before the threads start.
        assert_eq!(mse.forward(&small, &small).unwrap().item().unwrap(), 0.0);
        let start = Instant::now();
        Linear::default().forward(&x, &x, None).unwrap().to_vec().unwrap();
        let one = start.elapsed();
        // Enough GEMMs queued for one submission past the 6 s timeout.
        let count = (Duration::from_secs(8).as_secs_f64() / one.as_secs_f64()).ceil() as usize;
        let (long, waited) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let start = Instant::now();
                let ys: Vec<_> =
                    (0..count).map(|_| Linear::default().forward(&x, &x, None).unwrap()).collect();
                let last = ys.last().unwrap().to_vec().unwrap();
                assert!((last[0] - 0.001 * 0.001 * n as f32).abs() < 1e-6, "{what}: {}", last[0]);
                start.elapsed()
            });
            let b = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                let start = Instant::now();
                let got = mse.forward(&small, &dev.tensor(&[0.0; 4], &[4]).unwrap()).unwrap().item().unwrap();
                assert_eq!(got, 30.0);
                start.elapsed()
            });
            (a.join().expect("the long thread"), b.join().expect("the second thread waits, never panics"))
        });
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("{what}: GL gate: {count} GEMMs in one submission took {long:.1?}; the other thread's call waited {waited:.1?} and returned\n")
                .as_bytes(),
        );
    }
}

/// A read's future can move between threads (the GL gate is never held across its await).
#[test]
fn a_read_future_is_send() {
    fn send<T: Send>(_: &T) {}
    let dev = one_per_adapter()[0];
    let t = dev.tensor(&[1.0, 2.0], &[2]).unwrap();
    let read = t.read();
    send(&read);
    assert_eq!(pollster::block_on(read).unwrap(), [1.0, 2.0]);
}
