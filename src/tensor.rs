//! [`Tensor`] (f32, f16 or bf16 values with a shape) and [`Indices`] (class ids) on a
//! [`Device`].
//!
//! Buffers come from the device's pool and go back to it on drop. Reading a tensor submits the
//! pending work and maps only the tensor's own bytes. A tensor produced by a loss that checks its
//! targets carries that check: reading it reports an out-of-range target as
//! [`Error::TargetOutOfRange`] instead of a number.

use std::sync::Arc;

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::gpu::device::Device;
use crate::gpu::pool::BufferKind;

/// A GPU buffer owned by one or more tensors; returns to the pool when the last one drops.
pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    /// Whether the buffer came from the pool (user buffers never go there).
    pooled: bool,
    dev: Device,
}

impl Storage {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }

    /// A new pooled storage buffer of `bytes` bytes, contents undefined.
    pub(crate) fn alloc(dev: &Device, bytes: u64) -> Result<Arc<Storage>> {
        let buffer = dev.alloc(BufferKind::Storage, bytes.max(4))?;
        Ok(Arc::new(Storage { buffer: Some(buffer), pooled: true, dev: dev.clone() }))
    }

    /// A new pooled storage buffer holding `data`.
    ///
    /// The bytes travel through a staging buffer of their own and a copy recorded where the
    /// device records now (the open operation's encoder, else the pending list), never through
    /// `queue.write_buffer`: that lands before every command buffer of the next submission, so
    /// it could overwrite a pooled buffer that recorded but unsubmitted work still reads, or be
    /// read before the work recorded ahead of it has written it. A recorded copy runs in order.
    pub(crate) fn upload(dev: &Device, data: &[u8]) -> Result<Arc<Storage>> {
        let _gate = dev.gate();
        dev.ensure_alive()?;
        let s = Self::alloc(dev, data.len() as u64)?;
        if !data.is_empty() {
            let staging = dev.upload_staging(data)?;
            dev.record(|enc| enc.copy_buffer_to_buffer(&staging, 0, s.buffer(), 0, staging.size()));
        }
        Ok(s)
    }
}

impl Storage {
    /// The 4-byte word `word` (bytes 4·word ..), read with 4 bytes of traffic (to report a bad
    /// value).
    pub(crate) fn read_word(&self, word: usize) -> Result<[u8; 4]> {
        let dev = &self.dev;
        let one = Storage::alloc(dev, 4)?;
        dev.record(|enc| enc.copy_buffer_to_buffer(self.buffer(), word as u64 * 4, one.buffer(), 0, 4));
        let bytes = pollster::block_on(read_many(dev, &[(&one, 4)]))?;
        Ok([bytes[0][0], bytes[0][1], bytes[0][2], bytes[0][3]])
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take()
            && self.pooled
        {
            self.dev.release(BufferKind::Storage, buffer);
        }
    }
}

/// A flag written by a kernel that validates its inputs; read along with the result.
#[derive(Clone)]
pub(crate) struct ValueCheck {
    /// One u32: 0 when every value was valid, else `u32::MAX - first bad position`.
    pub(crate) status: Arc<Storage>,
    pub(crate) op: &'static str,
    pub(crate) kind: CheckKind,
}

/// What a [`ValueCheck`] validates.
#[derive(Clone)]
pub(crate) enum CheckKind {
    /// Class ids in `0..classes` or equal to `ignore_index`.
    Classes { targets: Indices, classes: usize, ignore_index: i64 },
    /// Values of `operand` (`input`, `var`) in the range `expected` names (e.g. probabilities
    /// in [0, 1]). The kernel reports a position in the op's input; `locate` gives the
    /// operand's own element there (a broadcast operand's), `None` when they are the same.
    Domain {
        input: Arc<Storage>,
        dtype: DType,
        operand: &'static str,
        expected: &'static str,
        locate: Option<Locate>,
    },
}

/// Where a broadcast operand's element lies, given a flat position in the op's input.
pub(crate) type Locate = Arc<dyn Fn(usize) -> usize + Send + Sync>;

impl ValueCheck {
    /// A zeroed status word, cleared inside the pending encoder so it is ordered with the kernel.
    pub(crate) fn new(
        op: &'static str,
        targets: &Indices,
        classes: usize,
        ignore_index: i64,
    ) -> Result<ValueCheck> {
        let kind = CheckKind::Classes { targets: targets.clone(), classes, ignore_index };
        Self::with_kind(op, targets.device(), kind)
    }

    /// A check that `input`, the op's `operand` (`input`, `var`), holds values in the range
    /// `expected` names; `locate` maps a position in the op's input to the operand's own when
    /// the operand is broadcast.
    pub(crate) fn domain(
        op: &'static str,
        input: &Tensor,
        operand: &'static str,
        expected: &'static str,
        locate: Option<Locate>,
    ) -> Result<ValueCheck> {
        let kind =
            CheckKind::Domain { input: input.storage.clone(), dtype: input.dtype, operand, expected, locate };
        Self::with_kind(op, input.device(), kind)
    }

    fn with_kind(op: &'static str, dev: &Device, kind: CheckKind) -> Result<ValueCheck> {
        let status = Storage::alloc(dev, 4)?;
        dev.record(|enc| enc.clear_buffer(status.buffer(), 0, Some(4)));
        Ok(ValueCheck { status, op, kind })
    }

    fn error(&self, word: u32) -> Result<()> {
        if word == 0 {
            return Ok(());
        }
        let position = (u32::MAX - word) as usize;
        match &self.kind {
            CheckKind::Classes { targets, classes, ignore_index } => {
                let value = i32::from_le_bytes(targets.storage.read_word(position)?);
                Err(Error::TargetOutOfRange {
                    op: self.op,
                    position,
                    value: value as i64,
                    classes: *classes,
                    ignore_index: *ignore_index,
                })
            }
            CheckKind::Domain { input, dtype, operand, expected, locate } => {
                let position = locate.as_ref().map_or(position, |at| at(position));
                // The word holding the element, and the element within it.
                let per_word = 4 / dtype.size();
                let word = input.read_word(position / per_word)?;
                let at = position % per_word * dtype.size();
                let value = dtype.widen(&word[at..], 1)[0];
                Err(Error::InputOutOfRange { op: self.op, operand, position, value, expected })
            }
        }
    }
}

/// Copies `bytes` bytes of each `(storage, bytes)` into one readback buffer, submits the pending
/// work with it, waits (with the device's timeout) and returns the bytes of each. A failure on a
/// lost device is [`Error::DeviceLost`].
async fn read_many(dev: &Device, parts: &[(&Storage, u64)]) -> Result<Vec<Vec<u8>>> {
    read_parts(dev, parts)
        .await
        .map_err(|e| if e.is_gpu_error() { dev.lost_after_error().unwrap_or(e) } else { e })
}

async fn read_parts(dev: &Device, parts: &[(&Storage, u64)]) -> Result<Vec<Vec<u8>>> {
    if crate::gpu::recording::is_open(dev.id()) {
        // The open operation's commands are not queued yet: the read would miss them.
        return Err(Error::Wgpu("internal: a read inside an operation of the same device".into()));
    }
    let mut offsets = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for (_, bytes) in parts {
        offsets.push(total);
        total += bytes.div_ceil(8) * 8;
    }
    let total = total.max(8);
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    let staging = {
        // Held through the submission and the wait (not across the await below, which the
        // wait has already resolved): another thread's call waits here, not on wgpu's GL lock.
        let _gate = dev.gate();
        let staging = dev.alloc(BufferKind::Readback, total)?;
        let index = dev.submit_with(|enc| {
            for ((s, bytes), off) in parts.iter().zip(&offsets) {
                let len = bytes.div_ceil(4) * 4;
                if len > 0 {
                    enc.copy_buffer_to_buffer(s.buffer(), 0, &staging, *off, len);
                }
            }
        })?;
        let scopes = crate::gpu::recording::Scopes::push(dev.wgpu_device());
        staging.slice(0..total).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        if let Some(message) = scopes.pop() {
            return Err(Error::Wgpu(format!("reading back: {message}")));
        }
        if let Err(e) = dev.wait(Some(index)) {
            staging.unmap();
            return Err(e);
        }
        staging
    };
    match rx.receive().await {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(Error::Map(e)),
        None => return Err(Error::Wgpu("the map callback was dropped".into())),
    }
    let _gate = dev.gate();
    let out = {
        let view = staging.slice(0..total).get_mapped_range().map_err(|e| Error::Wgpu(e.to_string()))?;
        parts
            .iter()
            .zip(&offsets)
            .map(|((_, bytes), off)| view[*off as usize..(*off + *bytes) as usize].to_vec())
            .collect()
    };
    staging.unmap();
    dev.release(BufferKind::Readback, staging);
    Ok(out)
}

/// The element count of `shape`: 0 when a dim is 0 (whatever the others), else their product,
/// which must fit in `usize`.
fn numel(shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| Error::invalid("tensor", format!("shape {shape:?} overflows")))
    })
}

fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<usize> {
    let n = numel(shape)?;
    if n != len {
        return Err(Error::shape(op, format!("{len} values do not fill shape {shape:?} ({n} elements)")));
    }
    Ok(n)
}

/// Values with a shape and an element type ([`DType`]: f32, f16 or bf16), on a [`Device`].
/// Cheap to clone (clones share the buffer).
///
/// Half-precision tensors take half the memory and half the reads; every operation computes
/// in f32 from them (see [`crate::dtype`]).
///
/// ```
/// use wgpu_loss::{DType, Device, bf16};
/// let dev = Device::new()?;
/// let h: Vec<bf16> = [1.0f32, -2.5, 3.0e38].iter().map(|&v| bf16::from_f32(v)).collect();
/// let x = dev.tensor_of(&h, &[3])?;
/// assert_eq!(x.dtype(), DType::BF16);
/// // Read back as f32 (exact widening) or in its own type.
/// assert_eq!(x.to_vec()?, [1.0, -2.5, bf16::from_f32(3.0e38).to_f32()]);
/// assert_eq!(x.to_vec_of::<bf16>()?, h);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) checks: Vec<ValueCheck>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl Tensor {
    /// An f32 tensor over `storage`.
    pub(crate) fn new(storage: Arc<Storage>, shape: Vec<usize>) -> Tensor {
        Tensor { storage, shape, dtype: DType::F32, checks: Vec::new() }
    }

    /// An uninitialised f32 output of `shape`.
    pub(crate) fn empty(dev: &Device, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::empty_of(dev, shape, DType::F32)
    }

    /// An uninitialised output of `shape` and `dtype`.
    pub(crate) fn empty_of(dev: &Device, shape: Vec<usize>, dtype: DType) -> Result<Tensor> {
        let n = numel(&shape)?;
        let storage = Storage::alloc(dev, dtype.bytes(n as u64))?;
        Ok(Tensor { storage, shape, dtype, checks: Vec::new() })
    }

    /// Wraps an application's buffer, created on this device with [`INPUT_USAGES`]
    /// (`STORAGE | COPY_SRC`) and holding at least `shape`'s elements as f32 from offset 0. The
    /// buffer is not returned to the pool. A buffer without those usages, too small, destroyed,
    /// or from another device is an error here, not in a later operation.
    pub fn from_buffer(dev: &Device, buffer: wgpu::Buffer, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_buffer_of(dev, buffer, shape, DType::F32)
    }

    /// [`from_buffer`](Self::from_buffer) for a buffer holding `dtype` elements (halves two to a
    /// 32-bit word, element 2k in the low 16 bits of word k, as a `&[half::bf16]` is laid out;
    /// the buffer holds whole words, so an odd count of halves needs two bytes more).
    pub fn from_buffer_of(
        dev: &Device,
        buffer: wgpu::Buffer,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        // Kernels bind whole 32-bit words.
        let bytes = dtype.bytes(numel(shape)? as u64).div_ceil(4) * 4;
        let storage = wrap(dev, buffer, bytes, "Tensor::from_buffer")?;
        Ok(Tensor { storage, shape: shape.to_vec(), dtype, checks: Vec::new() })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.storage.dev
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        // Checked when the tensor was made.
        numel(&self.shape).unwrap_or(usize::MAX)
    }

    /// The underlying buffer (the elements from offset 0; it may be longer than the tensor).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer()
    }

    /// The bytes of the elements, after the checks the tensor carries.
    async fn read_bytes(&self) -> Result<Vec<u8>> {
        let mut parts: Vec<(&Storage, u64)> = vec![(&self.storage, self.dtype.bytes(self.numel() as u64))];
        parts.extend(self.checks.iter().map(|c| (&*c.status, 4u64)));
        let mut bytes = read_many(self.device(), &parts).await?;
        for (check, word) in self.checks.iter().zip(&bytes[1..]) {
            check.error(u32::from_le_bytes([word[0], word[1], word[2], word[3]]))?;
        }
        Ok(bytes.swap_remove(0))
    }

    /// Reads the values back as f32 (half types widened exactly; async: resolves once the GPU
    /// has finished).
    pub async fn read(&self) -> Result<Vec<f32>> {
        Ok(self.dtype.widen(&self.read_bytes().await?, self.numel()))
    }

    /// Reads the values back as f32 (half types widened exactly), blocking until the GPU has
    /// finished.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.read())
    }

    /// Reads the values back in the tensor's own element type `T` (`f32`, [`half::f16`] or
    /// [`half::bf16`]), blocking; another `T` is an [`Error::InvalidArgument`].
    pub fn to_vec_of<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::invalid(
                "Tensor::to_vec_of",
                format!("the tensor holds {}, not {} (to_vec widens to f32)", self.dtype, T::DTYPE),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(&pollster::block_on(self.read_bytes())?))
    }

    /// The single value of a one-element tensor (a reduced loss), read with 4 bytes of traffic.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape("item", format!("shape {:?} is not a single value", self.shape)));
        }
        Ok(self.to_vec()?[0])
    }
}

/// Adopts an application's buffer holding `bytes` bytes of elements from offset 0; it never
/// goes to the pool.
fn wrap(dev: &Device, buffer: wgpu::Buffer, bytes: u64, op: &'static str) -> Result<Arc<Storage>> {
    dev.ensure_alive()?;
    wrap_check(&buffer, bytes, op)?;
    dev.check_own_buffer(&buffer, op)?;
    Ok(Arc::new(Storage { buffer: Some(buffer), pooled: false, dev: dev.clone() }))
}

/// The usages every operation may need of an input: binding it (STORAGE), and copying from it
/// (COPY_SRC), to read it back or to stage it in a texture on software adapters.
pub const INPUT_USAGES: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);

fn wrap_check(buffer: &wgpu::Buffer, bytes: u64, op: &'static str) -> Result<()> {
    let missing = INPUT_USAGES - buffer.usage();
    if !missing.is_empty() {
        return Err(Error::invalid(
            op,
            format!(
                "the buffer lacks {missing:?} usage (inputs need STORAGE | COPY_SRC: binding, read-back, staging)"
            ),
        ));
    }
    if buffer.size() < bytes {
        return Err(Error::shape(
            op,
            format!("the buffer holds {} bytes, the shape needs {bytes}", buffer.size()),
        ));
    }
    Ok(())
}

/// A class id accepted by [`Device::indices`]: any integer type; ids are stored as i32.
pub trait ClassId: Copy + std::fmt::Display {
    /// The id as i32, or `None` when it does not fit.
    fn to_i32(self) -> Option<i32>;
}

macro_rules! class_id {
    ($($t:ty),+) => {$(
        impl ClassId for $t {
            fn to_i32(self) -> Option<i32> {
                i32::try_from(self).ok()
            }
        }
    )+};
}
class_id!(i64, i32, i16, i8, u64, u32, u16, u8, usize, isize);

/// Class ids (stored as i32 on the device) with a shape. Cheap to clone. Ids an operation
/// computed (the LM head's argmax) carry its checks: reading them reports an out-of-range
/// target of that call as [`Error::TargetOutOfRange`], as reading its other results does.
#[derive(Clone)]
pub struct Indices {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Vec<usize>,
    pub(crate) checks: Vec<ValueCheck>,
}

impl std::fmt::Debug for Indices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indices").field("shape", &self.shape).finish_non_exhaustive()
    }
}

impl Indices {
    /// Wraps an application's buffer of i32 class ids from offset 0, with the same requirements
    /// as [`Tensor::from_buffer`].
    pub fn from_buffer(dev: &Device, buffer: wgpu::Buffer, shape: &[usize]) -> Result<Indices> {
        let storage = wrap(dev, buffer, numel(shape)? as u64 * 4, "Indices::from_buffer")?;
        Ok(Indices { storage, shape: shape.to_vec(), checks: Vec::new() })
    }

    /// The device the ids live on.
    pub fn device(&self) -> &Device {
        &self.storage.dev
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of ids.
    pub fn numel(&self) -> usize {
        numel(&self.shape).unwrap_or(usize::MAX)
    }

    /// The underlying buffer (i32 from offset 0).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer()
    }

    /// Reads the ids back, blocking (after the checks they carry).
    pub fn to_vec(&self) -> Result<Vec<i32>> {
        let mut parts: Vec<(&Storage, u64)> = vec![(&self.storage, self.numel() as u64 * 4)];
        parts.extend(self.checks.iter().map(|c| (&*c.status, 4u64)));
        let bytes = pollster::block_on(read_many(self.device(), &parts))?;
        for (check, word) in self.checks.iter().zip(&bytes[1..]) {
            check.error(u32::from_le_bytes([word[0], word[1], word[2], word[3]]))?;
        }
        Ok(bytemuck::pod_collect_to_vec(&bytes[0]))
    }
}

impl Device {
    /// Uploads f32 values as a tensor of `shape`.
    ///
    /// ```
    /// let dev = wgpu_loss::Device::new()?;
    /// let x = dev.tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(x.to_vec()?, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn tensor(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.tensor_of(data, shape)
    }

    /// Uploads f32 values as a tensor of `dtype`, rounded to it (nearest, ties to even; f32 as
    /// given).
    pub fn tensor_as(&self, data: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        check_len("tensor", data.len(), shape)?;
        let storage = Storage::upload(self, &dtype.encode(data))?;
        Ok(Tensor { storage, shape: shape.to_vec(), dtype, checks: Vec::new() })
    }

    /// Uploads values of any [`Element`] type (`f32`, [`half::f16`], [`half::bf16`]) as a
    /// tensor of that [`DType`] and `shape`, stored as given.
    pub fn tensor_of<T: Element>(&self, data: &[T], shape: &[usize]) -> Result<Tensor> {
        check_len("tensor", data.len(), shape)?;
        let storage = Storage::upload(self, bytemuck::cast_slice(data))?;
        Ok(Tensor { storage, shape: shape.to_vec(), dtype: T::DTYPE, checks: Vec::new() })
    }

    /// Uploads class ids (any integer type: i64, i32, u32, usize, …) as [`Indices`] of `shape`.
    /// Ids must fit in i32 (anything else, `usize::MAX` included, is an
    /// [`Error::InvalidArgument`] naming its position); whether they are valid classes is
    /// checked by the loss that uses them.
    pub fn indices<T: ClassId>(&self, data: &[T], shape: &[usize]) -> Result<Indices> {
        check_len("indices", data.len(), shape)?;
        let mut ids = Vec::with_capacity(data.len());
        for (position, v) in data.iter().enumerate() {
            let id = v.to_i32().ok_or_else(|| {
                Error::invalid("indices", format!("class id {v} at position {position} does not fit in i32"))
            })?;
            ids.push(id);
        }
        let storage = Storage::upload(self, bytemuck::cast_slice(&ids))?;
        Ok(Indices { storage, shape: shape.to_vec(), checks: Vec::new() })
    }
}

/// Makes sure every tensor of one operation lives on `dev`.
pub(crate) fn same_device(op: &'static str, dev: &Device, others: &[&Device]) -> Result<()> {
    if others.iter().all(|d| d.same(dev)) { Ok(()) } else { Err(Error::DeviceMismatch { op }) }
}
