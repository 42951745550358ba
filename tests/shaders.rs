//! Every shipped WGSL module parses and validates with naga (no GPU needed).

use wgpu_loss::KernelId;
use wgpu_loss::kernels::InputPath;

#[test]
fn every_kernel_validates() {
    for (id, path) in
        KernelId::ALL.into_iter().flat_map(|id| [(id, InputPath::Storage), (id, InputPath::Texture)])
    {
        let source = id.source_for(path);
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{} {path:?}: {}", id.label(), e.emit_to_string(source)));
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        );
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} {path:?}: {}", id.label(), e.emit_to_string(source)));
        for entry in id.entry_points() {
            assert!(
                module.entry_points.iter().any(|e| e.name == *entry),
                "{} has no entry point {entry}",
                id.label()
            );
        }
        assert_eq!(module.entry_points.len(), id.entry_points().len(), "{}: entry list", id.label());
    }
}

#[test]
fn uniform_structs_match_the_host_layout() {
    for id in KernelId::ALL {
        let module = naga::front::wgsl::parse_str(id.source()).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let params = module
            .global_variables
            .iter()
            .find(|(_, g)| g.name.as_deref() == Some("params"))
            .unwrap_or_else(|| panic!("{} has no params uniform", id.label()))
            .1;
        let wgsl = layouter[params.ty].size as usize;
        assert_eq!(wgsl, wgpu_loss::kernels::uniform_size(id), "{}: WGSL Params vs Rust", id.label());
    }
}
