//! A size-class pool of GPU buffers.
//!
//! Tensors and staging buffers are taken from here and return here when dropped, so a loop that
//! evaluates the same loss every step allocates nothing after the first step. Sizes round up to a
//! class: powers of two up to 4 KiB, then quarter steps between powers of two (at most 25 %
//! slack), so a 524 MB logits buffer does not cost a 1 GiB allocation.

use std::collections::HashMap;

/// What a pooled buffer is for; buffers of different kinds never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BufferKind {
    /// `STORAGE | COPY_SRC | COPY_DST`: tensors.
    Storage,
    /// `MAP_READ | COPY_DST`: readback.
    Readback,
}

impl BufferKind {
    pub(crate) fn usage(self) -> wgpu::BufferUsages {
        match self {
            BufferKind::Storage => {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            }
            BufferKind::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        }
    }
}

/// The allocation size for a request of `bytes` bytes.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(16);
    if bytes <= 4096 {
        return bytes.next_power_of_two();
    }
    let low = 1u64 << (63 - bytes.leading_zeros());
    let step = low / 4;
    bytes.div_ceil(step) * step
}

/// Free buffers by (kind, class) and free staging textures by (format, width, height), with a cap on
/// the bytes kept.
///
/// An adversarial pool (`DeviceOptions::adversarial_pool`, for tests) keeps its buffers in one
/// stack in the order they came back and hands out the most recently returned buffer of the kind
/// that is large enough, whatever its class: the reuse most likely to expose work ordered
/// wrongly against a buffer's previous user.
#[derive(Debug)]
pub(crate) struct Pool {
    free: HashMap<(BufferKind, u64), Vec<wgpu::Buffer>>,
    /// The adversarial pool's buffers, most recently returned last; `None` for a normal pool.
    stack: Option<Vec<(BufferKind, wgpu::Buffer)>>,
    textures: HashMap<(wgpu::TextureFormat, u32, u32), Vec<wgpu::Texture>>,
    kept: u64,
    cap: u64,
    /// Bytes of storage buffers and staging textures lent out and not yet returned.
    in_use: u64,
    /// The most `in_use` has been since the last reset.
    peak: u64,
}

/// Bytes of a staging texture (rgba32float or rgba32uint: 16 bytes a texel).
pub(crate) fn texture_bytes(t: &wgpu::Texture) -> u64 {
    t.width() as u64 * t.height() as u64 * 16
}

impl Pool {
    pub(crate) fn new(cap: u64, adversarial: bool) -> Self {
        Pool {
            free: HashMap::new(),
            stack: adversarial.then(Vec::new),
            textures: HashMap::new(),
            kept: 0,
            cap,
            in_use: 0,
            peak: 0,
        }
    }

    pub(crate) fn take_texture(
        &mut self,
        format: wgpu::TextureFormat,
        width: u32,
        height: u32,
    ) -> Option<wgpu::Texture> {
        let t = self.textures.get_mut(&(format, width, height))?.pop()?;
        self.kept -= texture_bytes(&t);
        Some(t)
    }

    /// Keeps a staging texture for reuse, evicting older entries of other sizes if needed.
    pub(crate) fn give_texture(&mut self, t: wgpu::Texture) {
        let bytes = texture_bytes(&t);
        if !self.make_room(bytes) {
            return;
        }
        self.kept += bytes;
        self.textures.entry((t.format(), t.width(), t.height())).or_default().push(t);
    }

    /// A free buffer of `kind` and size `class` (of at least `class` bytes in an adversarial
    /// pool).
    pub(crate) fn take(&mut self, kind: BufferKind, class: u64) -> Option<wgpu::Buffer> {
        let buffer = match &mut self.stack {
            Some(stack) => {
                let at = stack.iter().rposition(|(k, b)| *k == kind && b.size() >= class)?;
                stack.remove(at).1
            }
            None => self.free.get_mut(&(kind, class))?.pop()?,
        };
        self.kept -= buffer.size();
        Some(buffer)
    }

    /// Keeps `buffer` for reuse, evicting older entries of other sizes if needed.
    pub(crate) fn give(&mut self, kind: BufferKind, buffer: wgpu::Buffer) {
        let class = buffer.size();
        if !self.make_room(class) {
            return;
        }
        self.kept += class;
        match &mut self.stack {
            Some(stack) => stack.push((kind, buffer)),
            None => self.free.entry((kind, class)).or_default().push(buffer),
        }
    }

    /// Frees kept entries until `bytes` more fit under the cap; false if they never can. What
    /// was returned last is what a loop needs next, so the new entry wins over old ones.
    fn make_room(&mut self, bytes: u64) -> bool {
        if bytes > self.cap {
            return false;
        }
        while self.kept + bytes > self.cap {
            let oldest = self.stack.as_mut().filter(|s| !s.is_empty()).map(|s| s.remove(0).1);
            let freed = if let Some(buffer) = oldest {
                buffer.size()
            } else if let Some(list) = self.free.values_mut().find(|l| !l.is_empty()) {
                list.pop().map_or(0, |b| b.size())
            } else if let Some(list) = self.textures.values_mut().find(|l| !l.is_empty()) {
                list.pop().map_or(0, |t| texture_bytes(&t))
            } else {
                return false;
            };
            self.kept -= freed;
        }
        true
    }

    /// Frees every kept buffer.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        if let Some(stack) = &mut self.stack {
            stack.clear();
        }
        self.textures.clear();
        self.kept = 0;
    }

    pub(crate) fn kept_bytes(&self) -> u64 {
        self.kept
    }

    /// Counts `bytes` lent out (a tensor's buffer or a staging texture).
    pub(crate) fn lend(&mut self, bytes: u64) {
        self.in_use += bytes;
        self.peak = self.peak.max(self.in_use);
    }

    /// Counts `bytes` handed back.
    pub(crate) fn hand_back(&mut self, bytes: u64) {
        self.in_use = self.in_use.saturating_sub(bytes);
    }

    /// (bytes lent out now, the most since the last reset).
    pub(crate) fn usage(&self) -> (u64, u64) {
        (self.in_use, self.peak)
    }

    pub(crate) fn reset_peak(&mut self) {
        self.peak = self.in_use;
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn classes_round_up_with_bounded_slack() {
        assert_eq!(size_class(1), 16);
        assert_eq!(size_class(17), 32);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 5120);
        assert_eq!(size_class(524_288_000), 536_870_912);
        for bytes in [5000u64, 70_000, 1 << 20, 123_456_789, 524_288_001] {
            let c = size_class(bytes);
            assert!(c >= bytes && (c as f64) <= bytes as f64 * 1.25 + 16.0, "{bytes} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }
}
