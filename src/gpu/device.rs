//! [`Device`]: one adapter's device and queue, with the pipeline cache, the buffer pool and the
//! queue of finished operations' commands.
//!
//! Operations never submit on their own: each records its compute passes into an encoder of its
//! own (see `recording.rs`) and, once it has succeeded, queues the commands; reading a result (or
//! [`Device::flush`]) submits everything queued, in order. A chain such as forward → loss →
//! reduction is therefore one submission, and reading a scalar loss maps 4 bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::adapter::{adapters, wanted_limits};
use super::compile_log;
use super::lock::{GlGate, lock};
use super::pipeline::{Pipeline, PipelineKey};
use super::pool::{BufferKind, Pool, size_class};
use super::recording::{self, Owner, Scopes};
use super::spec::{InputPath, KernelSpec, Reads};
use crate::error::{Error, Result};

/// How to install Mesa's software adapters, quoted by errors and tests.
pub const INSTALL_HELP: &str = "install a Vulkan or GL driver; on Debian or Ubuntu without a GPU, \
`apt-get install mesa-vulkan-drivers` gives lavapipe (llvmpipe GL comes with libegl-mesa0)";

/// Settings for a [`Device`]. The defaults suit almost everyone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeviceOptions {
    /// How long a read may wait for the GPU before it returns [`Error::Timeout`].
    pub timeout: Duration,
    /// Cap on the storage binding size used by the kernels, below the adapter's own limit.
    /// Tensors larger than this are processed in chunks; lowering it exercises chunking on
    /// small data. `None` uses the adapter's limit.
    pub max_storage_binding_size: Option<u64>,
    /// Bytes of free buffers the pool may keep for reuse.
    pub pool_bytes: u64,
    /// Stage large kernel inputs in textures ([`InputPath::Texture`]); `None` does so on
    /// software adapters, where it is several times faster, and not on GPUs.
    pub texture_inputs: Option<bool>,
    /// Cap on the loop iterations one shader invocation may run, below the adapter's own
    /// budget ([`Device::loop_budget`]); at least [`MIN_LOOP_BUDGET`]. Kernels split their work
    /// (more threads per row, more reduction stages, pieces of a GEMM's k) to stay within it;
    /// lowering it exercises that splitting with small shapes. `None` uses the adapter's budget.
    pub max_loop_trips: Option<u64>,
    /// For tests of the library's ordering: the pool hands out the most recently returned
    /// buffer that is large enough (inside an operation, the one it released last), whatever
    /// its size class, and [`Device::flush`] submits nothing, so every piece of work waits for
    /// the next read. Work ordered wrongly against a reused buffer then gives wrong numbers
    /// instead of passing by luck. Off by default; it costs memory and speed.
    pub adversarial_pool: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            timeout: Duration::from_secs(300),
            max_storage_binding_size: None,
            pool_bytes: 1 << 30,
            texture_inputs: None,
            max_loop_trips: None,
            adversarial_pool: false,
        }
    }
}

impl DeviceOptions {
    /// Sets [`DeviceOptions::max_storage_binding_size`].
    pub fn with_max_storage_binding_size(mut self, bytes: u64) -> Self {
        self.max_storage_binding_size = Some(bytes);
        self
    }

    /// Sets [`DeviceOptions::texture_inputs`].
    pub fn with_texture_inputs(mut self, on: bool) -> Self {
        self.texture_inputs = Some(on);
        self
    }

    /// Sets [`DeviceOptions::max_loop_trips`] (raised to [`MIN_LOOP_BUDGET`] if lower).
    pub fn with_max_loop_trips(mut self, trips: u64) -> Self {
        self.max_loop_trips = Some(trips);
        self
    }

    /// Sets [`DeviceOptions::adversarial_pool`].
    pub fn with_adversarial_pool(mut self, on: bool) -> Self {
        self.adversarial_pool = on;
        self
    }

    /// Sets [`DeviceOptions::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A GPU (or software adapter) ready to run losses. Cheap to clone: clones share the device.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("adapter", &self.name()).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    pub(crate) options: DeviceOptions,
    /// The binding size the kernels plan with: the device limit, capped by the options (and by
    /// a staging texture's capacity when inputs are staged).
    pub(crate) binding_limit: u64,
    /// The loop iterations one invocation may run (see [`Device::loop_budget`]).
    loop_budget: u64,
    /// Whether large inputs are staged in textures, and the textures' width in texels.
    texture_inputs: bool,
    texture_width: u32,
    /// Shared with every [`Device::reconfigured`] handle on the same device.
    pub(crate) pipelines: Arc<Mutex<HashMap<PipelineKey, PipelineSlot>>>,
    pub(crate) pool: Mutex<Pool>,
    /// Finished operations' commands, submitted together in order by the next read or flush.
    pending: Mutex<Pending>,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Held while polling: wgpu-core's poll is not safe to run on two threads of one device at
    /// once (one thread's poll can retire the submission another is waiting for between that
    /// one's fence read and its queue check, and wgpu-core then fails an assertion). Shared
    /// with every [`Device::reconfigured`] handle on the same device.
    polling: Arc<Mutex<()>>,
    /// Bound in place of an absent optional input.
    pub(crate) dummy: wgpu::Buffer,
}

/// A cached pipeline, or the place for one while a thread builds it.
type PipelineSlot = Arc<Mutex<Option<Arc<Pipeline>>>>;

/// What every handle on one wgpu device shares (see [`Device::reconfigured`]).
struct Shared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    pipelines: Arc<Mutex<HashMap<PipelineKey, PipelineSlot>>>,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    polling: Arc<Mutex<()>>,
    dummy: wgpu::Buffer,
}

/// Command buffers waiting for the next submission.
#[derive(Default)]
struct Pending {
    buffers: Vec<wgpu::CommandBuffer>,
    /// Whether one of them copies inputs into staging textures.
    staged: bool,
}

/// The loop budget of Mesa's software adapters (lavapipe, llvmpipe): gallivm ends an invocation
/// after 65 535 loop iterations, counted over all its loops, without any error, leaving its
/// work silently unfinished. Kernels plan for 60 000 there, a margin below it.
pub const SOFTWARE_LOOP_BUDGET: u64 = 60_000;

/// The lowest loop budget [`DeviceOptions::max_loop_trips`] may set: every kernel's fixed loops
/// (a reduction thread's 64 items, a 64-wide tree) fit in it.
pub const MIN_LOOP_BUDGET: u64 = 1024;

impl Device {
    /// The best adapter: discrete, then integrated, then software, honouring wgpu's environment
    /// variables `WGPU_BACKEND` (e.g. `vulkan`, `gl`), `WGPU_ADAPTER_NAME` (a substring of the
    /// adapter's name) and `WGPU_POWER_PREF` (`low` prefers an integrated GPU).
    ///
    /// ```
    /// let dev = wgpu_loss::Device::new()?;
    /// println!("running on {}", dev.name());
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn new() -> Result<Device> {
        Self::with_options(DeviceOptions::default())
    }

    /// [`Device::new`] with explicit [`DeviceOptions`].
    pub fn with_options(options: DeviceOptions) -> Result<Device> {
        Self::select(None, None, options)
    }

    /// Every adapter on this machine for `backends` (default: `WGPU_BACKEND`, else all) whose
    /// name contains `name` (default: `WGPU_ADAPTER_NAME`), in the order [`Device::new`] tries
    /// them: discrete GPUs first, software adapters last.
    pub fn adapters(backends: Option<wgpu::Backends>, name: Option<&str>) -> Vec<wgpu::Adapter> {
        adapters(backends, name).0
    }

    /// The best adapter among `backends` whose name contains `name` (case-insensitive); `None`
    /// for either falls back to the environment variables, then to every adapter.
    pub fn select(
        backends: Option<wgpu::Backends>,
        name: Option<&str>,
        options: DeviceOptions,
    ) -> Result<Device> {
        let (list, filter) = adapters(backends, name);
        let mut last = None;
        for adapter in list {
            match Self::from_adapter(&adapter, options.clone()) {
                Ok(dev) => return Ok(dev),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::NoAdapter { filter, help: INSTALL_HELP }))
    }

    /// A device on every usable adapter that the environment allows, best first. Adapters that
    /// refuse to create a device are left out; an empty list is [`Error::NoAdapter`].
    pub fn all() -> Result<Vec<Device>> {
        Self::all_with_options(DeviceOptions::default())
    }

    /// [`Device::all`] with explicit [`DeviceOptions`].
    pub fn all_with_options(options: DeviceOptions) -> Result<Vec<Device>> {
        let (list, filter) = adapters(None, None);
        let devices: Vec<Device> =
            list.iter().filter_map(|a| Self::from_adapter(a, options.clone()).ok()).collect();
        if devices.is_empty() {
            return Err(Error::NoAdapter { filter, help: INSTALL_HELP });
        }
        Ok(devices)
    }

    /// Opens a device on `adapter` with the limits the kernels can use.
    pub fn from_adapter(adapter: &wgpu::Adapter, options: DeviceOptions) -> Result<Device> {
        let info = adapter.get_info();
        let offered = adapter.features();
        let mut features = wgpu::Features::empty();
        // Timestamp queries time kernels in benchmarks where the adapter has them.
        for f in [wgpu::Features::TIMESTAMP_QUERY, wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS] {
            if offered.contains(f) {
                features |= f;
            }
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgpu-loss"),
            required_features: features,
            required_limits: wanted_limits(&adapter.limits()),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|source| Error::RequestDevice { adapter: info.name.clone(), source })?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string());
        }));
        Ok(Self::build(info, device, queue, options, errors))
    }

    /// Adopts an application's own device and queue, so that losses run next to the
    /// application's buffers (see [`crate::Tensor::from_buffer`]).
    ///
    /// The application keeps its own uncaptured-error handler: every operation records inside
    /// wgpu error scopes of its own, so its errors come back as [`Error`]s, not to the handler.
    /// The device's lost callback is replaced by ours (reported as [`Error::DeviceLost`]).
    /// Wrap only buffers of this device: wgpu cannot tell a buffer of another instance's device
    /// apart (a buffer of another device of the same instance is [`Error::DeviceMismatch`]).
    pub fn from_wgpu(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: DeviceOptions,
    ) -> Device {
        Self::build(info, device, queue, options, Arc::default())
    }

    fn build(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: DeviceOptions,
        errors: Arc<Mutex<Vec<String>>>,
    ) -> Device {
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lock(&flag) = Some(if message.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {message}")
            });
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss absent input"),
            size: 16,
            usage: BufferKind::Storage.usage(),
            mapped_at_creation: false,
        });
        let shared = Shared {
            limits: device.limits(),
            features: device.features(),
            device,
            queue,
            info,
            pipelines: Arc::default(),
            errors,
            lost,
            polling: Arc::default(),
            dummy,
        };
        Self::assemble(shared, options)
    }

    /// Another handle on this device — the same wgpu device and queue, and the pipelines it
    /// has compiled — that plans with other `options`, with a buffer pool and pending work of
    /// its own. Cheaper than opening the adapter again, where compiling pipelines is slow (the
    /// software adapters compile each on its first dispatch).
    ///
    /// Tensors belong to the handle that made them: passing one to an operation of another
    /// handle is [`Error::DeviceMismatch`], as for any other device.
    ///
    /// ```
    /// use wgpu_loss::{Device, DeviceOptions};
    ///
    /// let dev = Device::new()?;
    /// // The same GPU, with small tensors forced through the chunked paths.
    /// let chunked = dev.reconfigured(DeviceOptions::default().with_max_storage_binding_size(64 << 10));
    /// assert_eq!(chunked.name(), dev.name());
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn reconfigured(&self, options: DeviceOptions) -> Device {
        let i = &self.inner;
        let shared = Shared {
            device: i.device.clone(),
            queue: i.queue.clone(),
            info: i.info.clone(),
            limits: i.limits.clone(),
            features: i.features,
            pipelines: i.pipelines.clone(),
            errors: i.errors.clone(),
            lost: i.lost.clone(),
            polling: i.polling.clone(),
            dummy: i.dummy.clone(),
        };
        Self::assemble(shared, options)
    }

    /// A handle on `shared` that plans with `options`.
    fn assemble(shared: Shared, options: DeviceOptions) -> Device {
        let Shared { device, queue, info, limits, features, pipelines, errors, lost, polling, dummy } =
            shared;
        let device_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let max_dim = limits.max_texture_dimension_2d;
        let texture_inputs = options.texture_inputs.unwrap_or(software) && max_dim >= 2048;
        let texture_width = max_dim.min(4096);
        let staging = if texture_inputs { texture_width as u64 * max_dim as u64 * 16 } else { u64::MAX };
        let binding_limit = options
            .max_storage_binding_size
            .map_or(device_binding, |cap| cap.min(device_binding))
            .min(staging)
            // Kernels index with u32 and chunk offsets are planned in 256-byte units.
            .clamp(256, u32::MAX as u64)
            & !255;
        let own_budget = if software { SOFTWARE_LOOP_BUDGET } else { u64::MAX };
        let loop_budget =
            options.max_loop_trips.map_or(own_budget, |cap| cap.max(MIN_LOOP_BUDGET).min(own_budget));
        let pool = Mutex::new(Pool::new(options.pool_bytes, options.adversarial_pool));
        Device {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                features,
                options,
                binding_limit,
                loop_budget,
                texture_inputs,
                texture_width,
                pipelines,
                pool,
                pending: Mutex::default(),
                errors,
                lost,
                polling,
                dummy,
            }),
        }
    }

    /// The adapter's name and backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`.
    pub fn name(&self) -> String {
        format!("{} ({:?})", self.inner.info.name, self.inner.info.backend)
    }

    /// The adapter's information (name, vendor, backend, driver).
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The options this handle plans with.
    pub fn options(&self) -> &DeviceOptions {
        &self.inner.options
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The optional features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }

    /// The largest number of bytes a kernel binds at once; larger tensors are chunked.
    pub fn binding_limit(&self) -> u64 {
        self.inner.binding_limit
    }

    /// Whether large kernel inputs are staged in textures on this device.
    pub fn texture_inputs(&self) -> bool {
        self.inner.texture_inputs
    }

    pub(crate) fn texture_width(&self) -> u32 {
        self.inner.texture_width
    }

    /// The underlying wgpu device, for interop.
    pub fn wgpu_device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The underlying wgpu queue, for interop.
    pub fn wgpu_queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Whether the device has been lost (destroyed, reset by the driver, or removed). Polls
    /// the device first (without blocking), so a loss is seen without waiting for other work;
    /// a device destroyed while work is in flight is reported lost once that work has drained.
    pub fn is_lost(&self) -> bool {
        self.ensure_alive().is_err()
    }

    /// [`Error::DeviceLost`] if the device is lost, after a poll that does not block (what
    /// every operation, upload and wrap checks first). The poll is skipped while another thread
    /// polls this device: that poll reports a loss as well, and threads need not queue here.
    pub(crate) fn ensure_alive(&self) -> Result<()> {
        let _gate = self.gate();
        self.check_lost()?;
        if let Ok(_polling) = self.inner.polling.try_lock() {
            // The poll's own result says nothing the lost flag does not.
            let _ = self.inner.device.poll(wgpu::PollType::Poll);
        }
        self.check_lost()
    }

    /// [`Error::DeviceLost`] once wgpu has reported the loss (its callback runs in polls: every
    /// read polls, every operation starts with one, and every GPU error is followed by
    /// [`Device::lost_after_error`]).
    pub(crate) fn check_lost(&self) -> Result<()> {
        match lock(&self.inner.lost).clone() {
            Some(msg) => Err(Error::DeviceLost(msg)),
            None => Ok(()),
        }
    }

    /// After a GPU error: [`Error::DeviceLost`] if the device is lost. A destroyed device is
    /// reported lost by wgpu only once the work it had in flight has drained (and meanwhile
    /// ignores what it is given), so this waits for that, at most the device's timeout.
    pub(crate) fn lost_after_error(&self) -> Option<Error> {
        let _gate = self.gate();
        if self.is_lost() {
            return self.check_lost().err();
        }
        let _ = self.poll_wait(None, self.inner.options.timeout);
        self.check_lost().err()
    }

    /// The most loop iterations, summed over all its loops, that one shader invocation may run
    /// on this device: [`SOFTWARE_LOOP_BUDGET`] on Mesa's software adapters, which silently
    /// stop an invocation past 65 535, unlimited on GPUs, and lowered by
    /// [`DeviceOptions::max_loop_trips`]. Every kernel plans its dispatches within it.
    ///
    /// ```
    /// let dev = wgpu_loss::Device::new()?;
    /// assert!(dev.loop_budget() >= wgpu_loss::MIN_LOOP_BUDGET);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn loop_budget(&self) -> u64 {
        self.inner.loop_budget
    }

    /// Bytes of free buffers the pool keeps for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        lock(&self.inner.pool).kept_bytes()
    }

    /// Bytes of GPU memory the library's tensors, scratch buffers and staging textures on this
    /// device hold now. Buffers the pool keeps free for reuse and buffers you wrapped with
    /// `Tensor::from_buffer` are not counted.
    pub fn memory_in_use(&self) -> u64 {
        lock(&self.inner.pool).usage().0
    }

    /// The most [`memory_in_use`](Self::memory_in_use) has been since the device was created or
    /// since the last [`reset_peak_memory`](Self::reset_peak_memory): with the latter, the
    /// peak extra memory of an operation is `peak_memory() − memory_in_use()` measured before.
    ///
    /// ```
    /// let dev = wgpu_loss::Device::new()?;
    /// let x = dev.tensor(&[1.0; 1024], &[1024])?;
    /// let before = dev.memory_in_use();
    /// dev.reset_peak_memory();
    /// let s = wgpu_loss::sum(&x)?;
    /// assert!(dev.peak_memory() > before); // the reduction's partials and result
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn peak_memory(&self) -> u64 {
        lock(&self.inner.pool).usage().1
    }

    /// Starts a new peak at the memory in use now.
    pub fn reset_peak_memory(&self) {
        lock(&self.inner.pool).reset_peak();
    }

    /// Frees the buffers the pool keeps.
    pub fn clear_pool(&self) {
        let _gate = self.gate();
        lock(&self.inner.pool).clear();
    }

    /// Submits everything recorded so far without waiting for it (with
    /// [`DeviceOptions::adversarial_pool`], nothing: the next read submits it).
    pub fn flush(&self) -> Result<()> {
        let _gate = self.gate();
        if self.inner.options.adversarial_pool {
            return self.check();
        }
        self.submit_pending()
    }

    /// Submits everything recorded so far, whatever the options.
    fn submit_pending(&self) -> Result<()> {
        if !self.has_pending() {
            return self.check();
        }
        self.submit_with(|_| {}).map(|_| ())
    }

    /// Runs `f`, which records operations, between two GPU timestamps, and returns its result
    /// with the GPU time between them (every command `f` recorded or submitted, copies
    /// included). The time is `None` where the adapter lacks timestamp queries inside command
    /// encoders; the work is submitted and waited for either way.
    ///
    /// ```
    /// let dev = wgpu_loss::Device::new()?;
    /// let x = dev.tensor(&[1.0; 1024], &[1024])?;
    /// let (sum, gpu) = dev.gpu_time(|| wgpu_loss::sum(&x))?;
    /// assert_eq!(sum.item()?, 1024.0);
    /// if let Some(t) = gpu {
    ///     assert!(t.as_secs_f64() < 10.0);
    /// }
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn gpu_time<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, Option<Duration>)> {
        let _gate = self.gate();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !self.features().contains(wanted) {
            let r = f()?;
            self.synchronize()?;
            return Ok((r, None));
        }
        let device = &self.inner.device;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("wgpu-loss timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-loss timer"),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let readback = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        self.flush()?;
        self.record(|enc| enc.write_timestamp(&set, 0));
        let r = f()?;
        self.record(|enc| {
            enc.write_timestamp(&set, 1);
            enc.resolve_query_set(&set, 0..2, &resolved, 0);
            enc.copy_buffer_to_buffer(&resolved, 0, &readback, 0, 16);
        });
        self.synchronize()?;
        let done: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
        let sink = done.clone();
        readback.slice(..).map_async(wgpu::MapMode::Read, move |res| *lock(&sink) = Some(res));
        self.wait(None)?;
        match lock(&done).take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Map(e)),
            None => return Err(Error::Wgpu("the timestamp readback was not mapped".into())),
        }
        let ticks: [u64; 2] = {
            let view = readback.slice(..).get_mapped_range().map_err(|e| Error::Wgpu(e.to_string()))?;
            bytemuck::pod_read_unaligned(&view[..16])
        };
        readback.unmap();
        let ns = ticks[1].saturating_sub(ticks[0]) as f64 * self.inner.queue.get_timestamp_period() as f64;
        Ok((r, Some(Duration::from_nanos(ns as u64))))
    }

    /// Submits the pending work and waits for the device to finish it.
    pub fn synchronize(&self) -> Result<()> {
        let _gate = self.gate();
        self.submit_pending()?;
        self.wait(None)
    }

    /// Returns the device loss or the first wgpu error reported outside our error scopes.
    pub(crate) fn check(&self) -> Result<()> {
        self.check_lost()?;
        let mut errors = lock(&self.inner.errors);
        if !errors.is_empty() {
            let all = std::mem::take(&mut *errors);
            return Err(Error::Wgpu(all.join("; ")));
        }
        Ok(())
    }

    /// Waits (at most the device's timeout) for submission `index`, or for everything.
    pub(crate) fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let _gate = self.gate();
        let timeout = self.inner.options.timeout;
        match self.poll_wait(index, timeout) {
            Ok(()) => self.check(),
            Err(wgpu::PollError::Timeout) => Err(Error::Timeout(timeout)),
            // A submission that did not go through: a destroyed device drops it silently.
            Err(e) => Err(self.lost_after_error().unwrap_or(e.into())),
        }
    }

    /// One blocking poll for submission `index` (or everything), one thread at a time.
    ///
    /// One wait, not a loop of short ones: wgpu-core asserts that a wait which finds the queue
    /// empty has seen its submission finish, which a short wait that times out on a submission
    /// wgpu does not track (an empty one) fails.
    fn poll_wait(
        &self,
        index: Option<wgpu::SubmissionIndex>,
        timeout: Duration,
    ) -> std::result::Result<(), wgpu::PollError> {
        let _polling = lock(&self.inner.polling);
        self.inner
            .device
            .poll(wgpu::PollType::Wait { submission_index: index, timeout: Some(timeout) })
            .map(drop)
    }

    /// Runs `f` on the encoder of the operation running on this thread, or, outside any
    /// operation, on an encoder of its own queued for the next submission.
    pub(crate) fn record<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let _gate = self.gate();
        match recording::with_frame(self.owner(), |enc| f(enc)) {
            Ok(r) => r,
            Err(f) => {
                let mut encoder = self.new_encoder();
                let r = f(&mut encoder);
                lock(&self.inner.pending).buffers.push(encoder.finish());
                r
            }
        }
    }

    pub(crate) fn new_encoder(&self) -> wgpu::CommandEncoder {
        recording::new_encoder(&self.inner.device)
    }

    /// The library's GL gate when this device is on a GL adapter (see [`GlGate`]): held by every
    /// entry point that reaches wgpu, so that another thread's long wait never makes wgpu's GL
    /// context lock time out.
    pub(crate) fn gate(&self) -> GlGate {
        GlGate::enter(self.inner.info.backend == wgpu::Backend::Gl)
    }

    /// What this device's recording frames need of it.
    pub(crate) fn owner(&self) -> Owner<'_> {
        Owner {
            id: self.id(),
            adversarial: self.inner.options.adversarial_pool,
            device: &self.inner.device,
            pool: &self.inner.pool,
        }
    }

    /// Queues a finished operation's commands for the next submission.
    pub(crate) fn enqueue(&self, buffer: wgpu::CommandBuffer, staged: bool) {
        let mut pending = lock(&self.inner.pending);
        pending.buffers.push(buffer);
        pending.staged |= staged;
    }

    /// Submits the pending commands followed by what `f` records, inside error scopes: an error
    /// in the submission is this call's, returned with the device's state intact. Submitting
    /// under the pending lock keeps the order in which operations finished.
    pub(crate) fn submit_with(
        &self,
        f: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<wgpu::SubmissionIndex> {
        let mut encoder = self.new_encoder();
        f(&mut encoder);
        self.submit_with_buffer(encoder.finish())
    }

    /// Submits the pending commands followed by `last`, as [`Device::submit_with`].
    pub(crate) fn submit_with_buffer(&self, last: wgpu::CommandBuffer) -> Result<wgpu::SubmissionIndex> {
        let _gate = self.gate();
        self.check()?;
        let scopes = Scopes::push(&self.inner.device);
        let mut pending = lock(&self.inner.pending);
        pending.staged = false;
        let mut buffers = std::mem::take(&mut pending.buffers);
        buffers.push(last);
        let index = self.inner.queue.submit(buffers);
        drop(pending);
        if let Some(message) = scopes.pop() {
            let failed = Error::Wgpu(format!("submitting the recorded work failed: {message}"));
            return Err(self.lost_after_error().unwrap_or(failed));
        }
        Ok(index)
    }

    /// Whether commands are waiting for a submission.
    /// Whether the pending submission already copies inputs into staging textures.
    pub(crate) fn pending_staged(&self) -> bool {
        lock(&self.inner.pending).staged
    }

    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.inner.pending).buffers.is_empty()
    }

    /// A buffer of at least `bytes` bytes from the pool (or new).
    pub(crate) fn alloc(&self, kind: BufferKind, bytes: u64) -> Result<wgpu::Buffer> {
        let _gate = self.gate();
        let class = size_class(bytes);
        let max = self.inner.limits.max_buffer_size;
        let buffer = if class > max {
            if bytes > max {
                return Err(Error::limit("a buffer", bytes, max));
            }
            self.create_buffer(kind, bytes.div_ceil(4) * 4)
        } else {
            let pooled = recording::take_released(self.owner(), kind, class)
                .or_else(|| lock(&self.inner.pool).take(kind, class));
            pooled.unwrap_or_else(|| self.create_buffer(kind, class))
        };
        if kind == BufferKind::Storage {
            lock(&self.inner.pool).lend(buffer.size());
        }
        Ok(buffer)
    }

    fn create_buffer(&self, kind: BufferKind, size: u64) -> wgpu::Buffer {
        self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss pooled"),
            size,
            usage: kind.usage(),
            mapped_at_creation: false,
        })
    }

    /// A new mappable buffer holding `data` (zero-padded to whole words), to copy from in a
    /// recorded command: how every upload reaches the GPU (see `Storage::upload`). It is never
    /// pooled; wgpu frees it once the copy has run.
    pub(crate) fn upload_staging(&self, data: &[u8]) -> Result<wgpu::Buffer> {
        let _gate = self.gate();
        let size = (data.len() as u64).div_ceil(4) * 4;
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-loss upload"),
            size,
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        {
            let mut view = staging.get_mapped_range_mut(..).map_err(|e| {
                self.lost_after_error().unwrap_or_else(|| Error::Wgpu(format!("uploading: {e}")))
            })?;
            if size == data.len() as u64 {
                view.copy_from_slice(data);
            } else {
                let mut padded = data.to_vec();
                padded.resize(size as usize, 0);
                view.copy_from_slice(&padded);
            }
        }
        staging.unmap();
        Ok(staging)
    }

    /// Returns a buffer to the pool. Inside an operation the return waits for the operation's
    /// commands to be queued, so that no other thread's later commands can come before the
    /// last commands that use the buffer.
    pub(crate) fn release(&self, kind: BufferKind, buffer: wgpu::Buffer) {
        let _gate = self.gate();
        if let Err((kind, buffer)) = recording::defer_release(self.owner(), kind, buffer) {
            self.give_back(kind, buffer);
        }
    }

    pub(crate) fn give_back(&self, kind: BufferKind, buffer: wgpu::Buffer) {
        let _gate = self.gate();
        let mut pool = lock(&self.inner.pool);
        if kind == BufferKind::Storage {
            pool.hand_back(buffer.size());
        }
        pool.give(kind, buffer);
    }

    /// The cached pipeline of `kernel`'s entry point `entry`, reading its staged inputs
    /// through `path`, with the override `constants`; built on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: &'static KernelSpec,
        reads: Reads,
        entry: &str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let _gate = self.gate();
        let Some(spec) = kernel.entry(entry) else {
            return Err(Error::Shader {
                kernel: kernel.name,
                message: format!("no entry point `{entry}` in the kernel table"),
            });
        };
        let mut constants = constants.to_vec();
        if reads.path == InputPath::Texture {
            constants.push(("TEX_W", self.inner.texture_width as f64));
        }
        let key = PipelineKey::new(kernel, reads, spec, &constants);
        // A thread that finds the pipeline being built waits for it rather than building it
        // again (handles that share the cache run the same kernels at once in tests).
        let slot = lock(&self.inner.pipelines).entry(key).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        // Built inside a validation error scope, so a bad shader is a typed error, not a panic.
        let scope = self.inner.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = compile_log::timed_build(
            || compile_log::label(kernel, reads, entry, &constants),
            || Pipeline::build(&self.inner.device, kernel, reads, spec, &constants),
        );
        if let Some(e) = pollster::block_on(scope.pop()) {
            if let Some(lost) = self.lost_after_error() {
                return Err(lost);
            }
            return Err(Error::Shader { kernel: kernel.name, message: recording::one_line(&e.to_string()) });
        }
        let built = Arc::new(built);
        *slot = Some(built.clone());
        Ok(built)
    }

    /// Checks that an application's `buffer` can be bound on this device: a buffer of another
    /// device is [`Error::DeviceMismatch`], a destroyed one [`Error::InvalidArgument`].
    pub(crate) fn check_own_buffer(&self, buffer: &wgpu::Buffer, op: &'static str) -> Result<()> {
        let _gate = self.gate();
        if buffer.size() < 4 {
            // Too small to bind; an empty tensor is never bound.
            return Ok(());
        }
        let device = &self.inner.device;
        let scopes = Scopes::push(device);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-loss buffer check"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: true },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
        let _probe = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-loss buffer check"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(4),
                }),
            }],
        });
        match scopes.pop() {
            None => Ok(()),
            Some(message) => {
                self.check_lost()?;
                if message.contains("doesn't match Device") {
                    Err(Error::DeviceMismatch { op })
                } else {
                    Err(Error::invalid(op, format!("the buffer cannot be bound: {message}")))
                }
            }
        }
    }

    pub(crate) fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// An identity for this device's shared state, the same for every clone.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}
