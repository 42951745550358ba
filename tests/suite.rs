//! The integration tests, one binary: each file below is a module, run on one device per adapter
//! that every module shares (`common::devices` and the option sets made from it), so a pipeline
//! is compiled once for the whole suite rather than once per file — on the software adapters,
//! compiling pipelines is most of the suite's time. Run one file with
//! `cargo test --test suite catalogue::`. A file under `tests/` that is not listed here
//! would never run, so `every_test_file_is_listed` fails on one.

mod bandwidth;
mod catalogue;
mod cli;
mod common;
mod concurrency;
mod cross_entropy;
mod ctc;
mod determinism;
mod divergence;
mod dtype;
mod empty_shapes;
mod errors;
mod faults;
mod fuzz;
mod interop;
mod layers;
mod linear;
mod linear_cross_entropy;
mod linear_jsd;
mod log_softmax;
mod loop_budget;
mod nll;
mod pointwise;
mod properties;
mod reduce;
mod reference;
mod shaders;
mod soak;
mod vocab_parallel;

#[test]
fn every_test_file_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let suite = std::fs::read_to_string(dir.join("suite.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        let module = path.is_dir() && path.join("mod.rs").exists();
        let file = path.extension().is_some_and(|e| e == "rs") && name != "suite";
        if (module || file) && !suite.lines().any(|l| l == format!("mod {name};")) {
            missing.push(name.to_string());
        }
    }
    assert!(missing.is_empty(), "tests/ files not in tests/suite.rs (they would never run): {missing:?}");
}
