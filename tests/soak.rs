//! 10 000 mixed operations on one device (every loss family, forward and backward, each read
//! back): afterwards the memory the library holds is back to what it was before, and the pool
//! keeps no more than its cap. (`cargo run --release --example soak` runs 100 000 and prints
//! the process's resident memory as it goes.)

use crate::common;

use common::mixed::{self, Inputs, KINDS};
use common::one_per_adapter;

#[test]
fn ten_thousand_mixed_ops_return_to_the_baseline() {
    common::on_each(one_per_adapter(), |shared| {
        // A handle of its own: other tests' buffers on the shared one would count in its memory.
        let dev = &shared.reconfigured(shared.options().clone());
        let what = common::label(dev);
        let inputs = Inputs::new(dev, 91);
        dev.synchronize().unwrap();
        let baseline = dev.memory_in_use();
        let mut peak_pool = 0;
        for i in 0..10_000 {
            mixed::run(i % KINDS, &inputs).unwrap_or_else(|e| panic!("{what}: op {i}: {e}"));
            peak_pool = peak_pool.max(dev.pooled_bytes());
        }
        dev.synchronize().unwrap();
        assert_eq!(dev.memory_in_use(), baseline, "{what}: memory in use after 10 000 ops");
        let cap = wgpu_loss::DeviceOptions::default().pool_bytes;
        assert!(peak_pool <= cap, "{what}: the pool kept {peak_pool} B, over its cap {cap} B");
        // The pool holds what one round of the mix needs, not one buffer per op.
        assert!(peak_pool < 16 << 20, "{what}: the pool grew to {peak_pool} B");
    });
}
