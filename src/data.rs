//! The one seeded data generator of the project: the catalogue's inputs, the tests, the
//! benchmarks and the accuracy example all draw from it, so that a seed means the same data
//! everywhere. A xorshift64 stream: deterministic, no dependency, not for cryptography.

/// A small deterministic generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [−1, 1), on a grid of 2⁻²³ (exact in f32).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in [−1, 1) with the full f64 mantissa (for f64 data: finite-difference checks).
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// `n` f64 values uniform in [−scale, scale).
    pub fn values_f64(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.unit_f64() * scale).collect()
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` values uniform in [−scale, scale).
    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.unit() * scale).collect()
    }

    /// `n` values uniform in [lo, hi).
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (self.unit() + 1.0) * 0.5 * (hi - lo)).collect()
    }

    /// `n` class ids in `0..classes`.
    pub fn classes(&mut self, n: usize, classes: usize) -> Vec<i64> {
        (0..n).map(|_| self.below(classes) as i64).collect()
    }

    /// `n` signs, −1 or +1.
    pub fn signs(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| if self.next_u64() >> 63 == 1 { 1.0 } else { -1.0 }).collect()
    }
}

/// `n` values uniform in [−scale, scale) from a fresh stream of `seed`.
pub fn values(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    Rng::new(seed).values(n, scale)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_is_one_stream() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.values(100, 2.0), b.values(100, 2.0));
        let v = Rng::new(1).values(10_000, 3.0);
        assert!(v.iter().all(|x| (-3.0..3.0).contains(x)));
        assert!(v.iter().any(|&x| x > 2.9) && v.iter().any(|&x| x < -2.9));
        let c = Rng::new(2).classes(1000, 7);
        assert!((0..7).all(|k| c.contains(&k)) && c.iter().all(|&k| (0..7).contains(&k)));
        let s = Rng::new(3).signs(1000);
        assert!(s.contains(&1.0) && s.contains(&-1.0) && s.iter().all(|x| x.abs() == 1.0));
    }
}
