//! `wgpu-loss info`: every adapter, its limits and its optional features.

use crate::Device;
use serde::Serialize;

use super::common::CliError;

/// What `info` reports of one adapter (also embedded in bench reports).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AdapterReport {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub subgroups: bool,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    pub timestamp_query_inside_encoders: bool,
}

impl AdapterReport {
    pub fn of(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, features: wgpu::Features) -> Self {
        AdapterReport {
            name: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_query_inside_encoders: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
        }
    }
}

pub fn run(json: bool) -> Result<(), CliError> {
    let adapters: Vec<AdapterReport> = Device::adapters(None, None)
        .iter()
        .map(|a| AdapterReport::of(&a.get_info(), &a.limits(), a.features()))
        .collect();
    if adapters.is_empty() {
        return Err(CliError(format!("no GPU adapter found; {}", crate::INSTALL_HELP)));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&adapters).map_err(|e| CliError(e.to_string()))?);
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("[{i}] {}", a.name);
        println!(
            "    vendor 0x{:04x}, device 0x{:04x}, {} backend, {}",
            a.vendor, a.device, a.backend, a.device_type
        );
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!(
            "    limits: storage binding {} B, buffer {} B, workgroup storage {} B, {} invocations per workgroup, {} workgroups per dimension",
            a.max_storage_buffer_binding_size,
            a.max_buffer_size,
            a.max_compute_workgroup_storage_size,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroups_per_dimension
        );
        println!(
            "    features: subgroups {}, shader-f16 {}, timestamp queries {}",
            yes(a.subgroups),
            yes(a.shader_f16),
            yes(a.timestamp_query)
        );
    }
    Ok(())
}
