//! Every shipped WGSL module parses and validates with naga, and every entry of the kernel table
//! matches naga's reflection of its shader on both input paths (no GPU needed).

use std::collections::BTreeMap;

use wgpu_loss::KernelId;
use wgpu_loss::kernels::{BindingKind, InputPath};

const PATHS: [InputPath; 2] = [InputPath::Storage, InputPath::Texture];

fn validated(id: KernelId, path: InputPath) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = id.source_for(path);
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{} {path:?}: {}", id.label(), e.emit_to_string(source)));
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    let info = validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("{} {path:?}: {}", id.label(), e.emit_to_string(source)));
    (module, info)
}

/// How a binding looks from the layout's side: a uniform, a storage buffer read-only or
/// read-write, or a sampled texture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Uniform,
    Read,
    ReadWrite,
    Texture,
}

/// The bindings `entry` statically uses, by slot: the variable's name and how it is declared.
fn reflected(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> BTreeMap<u32, (String, Seen)> {
    let index = module.entry_points.iter().position(|e| e.name == entry).expect("entry exists");
    let uses = info.get_entry_point(index);
    let mut out = BTreeMap::new();
    for (handle, var) in module.global_variables.iter() {
        if uses[handle].is_empty() {
            continue;
        }
        let Some(binding) = &var.binding else { continue };
        assert_eq!(binding.group, 0, "{entry}: every binding is in group 0");
        let seen = match var.space {
            naga::AddressSpace::Uniform => Seen::Uniform,
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                Seen::ReadWrite
            }
            naga::AddressSpace::Storage { .. } => Seen::Read,
            naga::AddressSpace::Handle => match module.types[var.ty].inner {
                naga::TypeInner::Image { dim: naga::ImageDimension::D2, arrayed: false, .. } => Seen::Texture,
                ref other => panic!("{entry}: unexpected handle type {other:?}"),
            },
            other => panic!("{entry}: unexpected address space {other:?}"),
        };
        out.insert(binding.binding, (var.name.clone().unwrap_or_default(), seen));
    }
    out
}

#[test]
fn every_kernel_validates_and_lists_its_entry_points() {
    for id in KernelId::ALL {
        for path in PATHS {
            let (module, _) = validated(id, path);
            let mut ours = id.entry_points().to_vec();
            let mut theirs: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{} {path:?}: the table's entry points vs the shader's", id.label());
        }
    }
}

#[test]
fn every_spec_matches_the_shaders_bindings() {
    let mut checked = 0;
    for id in KernelId::ALL {
        let spec = id.spec();
        for path in PATHS {
            let (module, info) = validated(id, path);
            for entry in spec.entries {
                let mut expected = BTreeMap::new();
                for b in entry.bindings {
                    let seen = match (b.kind, path) {
                        (BindingKind::Read, _) | (BindingKind::Staged, InputPath::Storage) => Seen::Read,
                        (BindingKind::ReadWrite, _) => Seen::ReadWrite,
                        (BindingKind::Staged, InputPath::Texture) => Seen::Texture,
                    };
                    let previous = expected.insert(b.slot, (b.variable(path), seen));
                    assert!(previous.is_none(), "{} {}: slot {} listed twice", spec.name, entry.name, b.slot);
                }
                let mut found = reflected(&module, &info, entry.name);
                // The uniform is implicit in the table: always `params` at slot 0, if used.
                if let Some(params) = found.remove(&0) {
                    assert_eq!(params, ("params".to_string(), Seen::Uniform), "{} {}", spec.name, entry.name);
                }
                assert_eq!(
                    expected, found,
                    "{} `{}` on {path:?}: the table's bindings (left) vs naga's reflection (right)",
                    spec.name, entry.name
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * KernelId::ALL.iter().map(|id| id.spec().entries.len()).sum::<usize>());
}

#[test]
fn every_loop_bound_names_its_extents() {
    for id in KernelId::ALL {
        for entry in id.spec().entries {
            let extents = vec![64u64; entry.trips.over.len()];
            let trips = entry.trips.at(&extents);
            assert!(trips < 1 << 40, "{} {}: bound {trips} at 64", id.label(), entry.name);
            assert!(
                entry.trips.over.iter().all(|name| !name.is_empty()),
                "{} {}: unnamed extent",
                id.label(),
                entry.name
            );
        }
    }
}

#[test]
fn uniform_structs_match_the_host_layout() {
    for id in KernelId::ALL {
        let (module, _) = validated(id, InputPath::Storage);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let params = module
            .global_variables
            .iter()
            .find(|(_, g)| g.name.as_deref() == Some("params"))
            .unwrap_or_else(|| panic!("{} has no params uniform", id.label()))
            .1;
        let binding = params.binding.as_ref().expect("params is bound");
        assert_eq!((binding.group, binding.binding), (0, 0), "{}: params at slot 0", id.label());
        let wgsl = layouter[params.ty].size as usize;
        assert_eq!(wgsl, id.spec().uniform_size, "{}: WGSL Params vs Rust", id.label());
    }
}
