//! Element types of a [`Tensor`](crate::Tensor): f32, and the half-precision f16 and bf16.
//!
//! Half-precision tensors are stored two to a 32-bit word (element `2k` in the low 16 bits of
//! word `k`, the little-endian layout of a `&[half::f16]` or `&[half::bf16]`), and kernels decode
//! them to f32 as they read: f16 with core WGSL's `unpack2x16float`, bf16 by a 16-bit shift. So
//! no optional GPU feature is needed and every adapter, GL included, runs the same code. All
//! arithmetic is f32; results written in a half type are rounded to nearest, ties to even.

use half::{bf16, f16};

/// The element type of a [`Tensor`](crate::Tensor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16: 5 exponent bits, 10 mantissa bits (max 65 504).
    F16,
    /// bfloat16: f32's 8 exponent bits and 7 mantissa bits (the top half of an f32).
    BF16,
}

impl DType {
    /// Every element type.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The name used in reports and messages: `f32`, `f16`, `bf16`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// The bytes of `n` elements.
    pub const fn bytes(self, n: u64) -> u64 {
        n * self.size() as u64
    }

    /// Rounds `v` to this type (nearest, ties to even) and back: the value a kernel reads from
    /// a tensor of this type uploaded from `v`.
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::BF16 => bf16::from_f32(v).to_f32(),
        }
    }

    /// `n` values stored as this type in `bytes`, widened to f32 (exactly).
    pub fn widen(self, bytes: &[u8], n: usize) -> Vec<f32> {
        let bytes = &bytes[..self.size() * n];
        match self {
            DType::F32 => bytemuck::pod_collect_to_vec(bytes),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(bytes).iter().map(|h| h.to_f32()).collect(),
            DType::BF16 => {
                bytemuck::pod_collect_to_vec::<u8, bf16>(bytes).iter().map(|h| h.to_f32()).collect()
            }
        }
    }

    /// `values` stored as this type (rounded to nearest, ties to even).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            DType::F32 => bytemuck::cast_slice(values).to_vec(),
            DType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            DType::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An element type a tensor can be uploaded from and read back as: `f32`, [`half::f16`],
/// [`half::bf16`].
pub trait Element: bytemuck::Pod {
    /// The tensor's [`DType`] for this element type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
}
