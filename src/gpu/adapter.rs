//! Adapter choice: the process's one wgpu instance, its adapters enumerated once, the ranking
//! that picks the best one, and the limits a device asks of its adapter.

/// Ranks device types: discrete first, software last.
fn type_rank(t: wgpu::DeviceType, power: Option<wgpu::PowerPreference>) -> u8 {
    use wgpu::DeviceType::*;
    match (t, power) {
        (IntegratedGpu, Some(wgpu::PowerPreference::LowPower)) => 0,
        (DiscreteGpu, _) => 1,
        (IntegratedGpu, _) => 2,
        (VirtualGpu, _) => 3,
        (Other, _) => 4,
        (Cpu, _) => 5,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

/// The process's one wgpu instance (every backend), from which every device this crate opens
/// comes. wgpu identifies resources per instance: a buffer of one instance used with a device of
/// another is looked up in the wrong table (wgpu-core panics, or finds an unrelated buffer),
/// while within one instance a buffer of another device is a validation error, which
/// `Tensor::from_buffer` turns into `Error::DeviceMismatch`.
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::all();
        wgpu::Instance::new(desc)
    })
}

/// Every adapter of [`instance`], enumerated once per process. Devices opened on one adapter
/// share it: wgpu's GL backend guards the adapter's one EGL context with a lock that lives in
/// the adapter, so two adapters enumerated separately for the same GPU would make the same
/// context current on two threads at once (an EGL error, a panic inside wgpu).
fn every_adapter() -> &'static [wgpu::Adapter] {
    static ADAPTERS: std::sync::OnceLock<Vec<wgpu::Adapter>> = std::sync::OnceLock::new();
    ADAPTERS.get_or_init(|| pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all())))
}

/// The adapters that the environment allows (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`), best first,
/// and a description of the filter for error messages.
pub(crate) fn adapters(backends: Option<wgpu::Backends>, name: Option<&str>) -> (Vec<wgpu::Adapter>, String) {
    let backends = backends.or_else(wgpu::Backends::from_env).unwrap_or(wgpu::Backends::all());
    let name =
        name.map(str::to_owned).or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).filter(|n| !n.is_empty());
    let mut list: Vec<wgpu::Adapter> = every_adapter()
        .iter()
        .filter(|a| backends.contains(wgpu::Backends::from(a.get_info().backend)))
        .cloned()
        .collect();
    if let Some(name) = &name {
        let want = name.to_lowercase();
        list.retain(|a| a.get_info().name.to_lowercase().contains(&want));
    }
    let power = wgpu::PowerPreference::from_env();
    list.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type, power), backend_rank(i.backend))
    });
    let mut filter = String::new();
    if backends != wgpu::Backends::all() {
        filter.push_str(&format!(" for backends {backends:?}"));
    }
    if let Some(name) = name {
        filter.push_str(&format!(" named like {name:?}"));
    }
    (list, filter)
}

/// The limits to ask for: the WebGPU downlevel defaults, raised to the adapter's own values for
/// everything the kernels can use.
pub(crate) fn wanted_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    let mut l = wgpu::Limits::downlevel_defaults().or_worse_values_from(adapter);
    l.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
    l.max_buffer_size = adapter.max_buffer_size;
    l.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size;
    l.max_compute_invocations_per_workgroup = adapter.max_compute_invocations_per_workgroup;
    l.max_compute_workgroup_size_x = adapter.max_compute_workgroup_size_x;
    l.max_compute_workgroup_size_y = adapter.max_compute_workgroup_size_y;
    l.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
    l.max_storage_buffers_per_shader_stage = adapter.max_storage_buffers_per_shader_stage;
    l.min_storage_buffer_offset_alignment = adapter.min_storage_buffer_offset_alignment;
    l.max_texture_dimension_2d = adapter.max_texture_dimension_2d;
    l.max_storage_textures_per_shader_stage = adapter.max_storage_textures_per_shader_stage;
    l
}
