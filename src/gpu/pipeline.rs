//! Compute pipelines built from a [`KernelSpec`] with explicit bind group layouts, and the key
//! they are cached under.

use super::spec::{BindingKind, EntrySpec, InputPath, KernelSpec, Reads};
use crate::dtype::DType;

/// Cache key: the kernel, how it reads its staged inputs, its entry point and its override
/// constants (as bit patterns).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    kernel: &'static str,
    reads: Reads,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    pub(crate) fn new(
        kernel: &'static KernelSpec,
        reads: Reads,
        entry: &'static EntrySpec,
        constants: &[(&'static str, f64)],
    ) -> Self {
        PipelineKey {
            kernel: kernel.name,
            reads,
            entry: entry.name,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        }
    }
}

/// The texel format a staged input of `dtype` is copied into: four f32s, or eight halves as
/// four words.
pub(crate) fn staged_format(dtype: DType) -> wgpu::TextureFormat {
    match dtype {
        DType::F32 => wgpu::TextureFormat::Rgba32Float,
        DType::F16 | DType::BF16 => wgpu::TextureFormat::Rgba32Uint,
    }
}

/// A built compute pipeline, its bind group layout and the spec of its entry point.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) kernel: &'static KernelSpec,
    pub(crate) entry: &'static EntrySpec,
}

/// The bind group layout entries of `entry` read as `reads`: the uniform at slot 0, then every
/// binding of the spec.
pub(crate) fn layout_entries(entry: &EntrySpec, reads: Reads) -> Vec<wgpu::BindGroupLayoutEntry> {
    let buffer = |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
    let storage = |read_only| buffer(wgpu::BufferBindingType::Storage { read_only });
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: buffer(wgpu::BufferBindingType::Uniform),
        count: None,
    }];
    for b in entry.bindings {
        let ty = match (b.kind, reads.path) {
            (BindingKind::Read, _) | (BindingKind::Staged, InputPath::Storage) => storage(true),
            (BindingKind::ReadWrite, _) => storage(false),
            // Read-only storage textures: llvmpipe loads a texel from one for about half what
            // a sampled texture's textureLoad costs (0.51 s against 1.14 s for 2^26 vec4 loads
            // on lavapipe, 0.50 against 1.38 on llvmpipe-GL).
            (BindingKind::Staged, InputPath::Texture) => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::ReadOnly,
                format: staged_format(reads.dtype(b)),
                view_dimension: wgpu::TextureViewDimension::D2,
            },
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: b.slot,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        });
    }
    entries
}

impl Pipeline {
    /// Builds `entry` of `kernel` for `reads`. The caller holds a validation error scope: a
    /// shader or layout that wgpu refuses is reported there.
    pub(crate) fn build(
        device: &wgpu::Device,
        kernel: &'static KernelSpec,
        reads: Reads,
        entry: &'static EntrySpec,
        constants: &[(&'static str, f64)],
    ) -> Pipeline {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl((kernel.source)(reads).into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry.name),
            entries: &layout_entries(entry, reads),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry.name),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it; zero-filling it
                // costs seconds of compile time on llvmpipe-GL.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        Pipeline { pipeline, layout, kernel, entry }
    }
}
