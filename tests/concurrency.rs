//! One `Device` shared by 8 threads, 1 000 mixed operations each (every loss family, forward and
//! backward, each read back), on every adapter: every result is bitwise equal to the same
//! operation run alone on one thread. Operations record into encoders of their own and queue
//! them in the order they finish, and buffers an operation drops go back to the pool only once
//! its commands are queued, so threads cannot see each other's data.

mod common;

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
