//! The crate's layers: every `crate::` and `super::` path in `src/` points to a file in the same
//! layer or one below, and no chain of such paths comes back to where it started (no cycle).
//!
//! Paths are read from the code with comments and strings removed; a path to an item re-exported
//! at the crate root (`crate::Device`) counts as a path to `src/lib.rs`. Module declarations
//! (`mod x;`) are not paths. See ARCHITECTURE.md for the picture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the bottom up: a file may use files of its own layer or of lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    ("errors, data and element types", &["src/error.rs", "src/data.rs", "src/dtype.rs"]),
    ("gpu", &["src/gpu/"]),
    ("tensors", &["src/tensor.rs"]),
    ("kernels", &["src/kernels/"]),
    ("ops", &["src/ops/"]),
    ("references", &["src/reference/"]),
    ("catalogue", &["src/catalogue/"]),
    ("crate root", &["src/lib.rs"]),
    ("cli", &["src/cli/", "src/bin/"]),
];

fn layer_of(file: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, prefixes)| prefixes.iter().any(|p| file.starts_with(p)))
        .unwrap_or_else(|| panic!("{file} belongs to no layer: add it to LAYERS"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code without comments, string and char literals (their insides become spaces).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
            out.push_str("' '");
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The module path of a file (`src/ops/linear.rs` → ["ops", "linear"]; mod.rs and lib.rs name
/// their folder).
fn module_of(file: &str) -> Vec<String> {
    let rel = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module, and whether the whole
/// first segment is a module at all.
fn resolve(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for len in (1..=path.len()).rev() {
        let stem = path[..len].join("/");
        for candidate in [format!("src/{stem}.rs"), format!("src/{stem}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The path segments after `start` (`crate` or a run of `super`), expanding one level of
/// braces: `crate::{a, b::c}` gives [a] and [b, c].
fn paths_after(code: &str, at: usize) -> Vec<Vec<String>> {
    let rest = &code[at..];
    let mut segs = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut word = String::new();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            chars.next();
        } else if rest[i..].starts_with("::") {
            if !word.is_empty() {
                segs.push(std::mem::take(&mut word));
            }
            chars.next();
            chars.next();
            if rest[i + 2..].starts_with('{') {
                let inner = &rest[i + 3..];
                let mut depth = 0;
                let mut end = inner.len();
                for (j, ch) in inner.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            end = j;
                            break;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                let mut out = Vec::new();
                let mut depth = 0;
                let mut item = String::new();
                for ch in inner[..end].chars().chain(std::iter::once(',')) {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let head: Vec<String> = item
                                .trim()
                                .split("::")
                                .map(|s| s.trim().split(' ').next().unwrap_or("").to_string())
                                .take_while(|s| !s.is_empty() && !s.starts_with('{'))
                                .collect();
                            if !head.is_empty() {
                                let mut p = segs.clone();
                                p.extend(head);
                                out.push(p);
                            }
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(ch);
                }
                return out;
            }
        } else {
            break;
        }
    }
    if !word.is_empty() {
        segs.push(word);
    }
    vec![segs]
}

fn edges(files: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let here = module_of(file);
        let is_dir_module = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let targets = graph.entry(file.clone()).or_default();
        let mut add = |path: Vec<String>| {
            if path.is_empty() {
                return;
            }
            match resolve(&path, files) {
                Some(to) if &to != file => {
                    targets.insert(to);
                }
                Some(_) => {}
                // An item of the crate root (a re-export).
                None => {
                    targets.insert("src/lib.rs".to_string());
                }
            }
        };
        let bytes = code.as_bytes();
        let word_start = |i: usize| i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        for (i, _) in code.match_indices("crate::") {
            if word_start(i) && !code[..i].ends_with('$') {
                for p in paths_after(&code, i + "crate::".len()) {
                    add(p);
                }
            }
        }
        let inline = inline_modules(&code);
        for (i, _) in code.match_indices("super::") {
            if !word_start(i) || code[..i].ends_with("super::") {
                continue;
            }
            let mut j = i;
            let mut ups = 0;
            while code[j..].starts_with("super::") {
                ups += 1;
                j += "super::".len();
            }
            // The first `super`s of a path inside inline modules (`mod tests { .. }`) climb
            // out of those, staying in this file.
            let enclosing = inline.iter().filter(|r| r.contains(&i)).count();
            if ups <= enclosing {
                continue;
            }
            ups -= enclosing;
            // A plain file's module is its own name: its parent is one level up.
            let mut base = here.clone();
            for _ in 0..ups {
                base.pop();
            }
            for p in paths_after(&code, j) {
                let mut full = base.clone();
                full.extend(p);
                add(full);
            }
        }
        // A folder module's own children, named without a prefix (`budget::fits`, `pub use
        // gpu::device`).
        if is_dir_module {
            let dir = Path::new(file).parent().unwrap();
            for child in files {
                let Some(name) = child
                    .strip_prefix(&format!("{}/", dir.display()))
                    .map(|c| c.trim_end_matches(".rs").trim_end_matches("/mod"))
                else {
                    continue;
                };
                if name.contains('/') || name == "mod" || name == "lib" {
                    continue;
                }
                let needle = format!("{name}::");
                let used = code.match_indices(&needle).any(|(i, _)| {
                    word_start(i) && !code[..i].ends_with("::") && !code[..i].trim_end().ends_with("mod")
                });
                if used {
                    let mut p = here.clone();
                    p.push(name.to_string());
                    add(p);
                }
            }
        }
    }
    graph
}

/// The byte ranges of the inline modules (`mod name { .. }`) of a file's code.
fn inline_modules(code: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("mod ") {
        let rest = &code[i + 4..];
        let name_len = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').count();
        let after = rest[name_len..].trim_start();
        if name_len == 0 || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(i..open + k);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn all_files() -> BTreeSet<String> {
    let mut paths = Vec::new();
    rust_files(Path::new("src"), &mut paths);
    paths.iter().map(|p| p.to_string_lossy().replace('\\', "/")).collect()
}

#[test]
fn imports_point_down_the_layers() {
    let files = all_files();
    let graph = edges(&files);
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if layer_of(to) > layer_of(from) {
                wrong.push(format!(
                    "{from} ({}) uses {to} ({})",
                    LAYERS[layer_of(from)].0,
                    LAYERS[layer_of(to)].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "paths that point up a layer:\n{}", wrong.join("\n"));
}

#[test]
fn there_is_no_import_cycle() {
    let files = all_files();
    let graph = edges(&files);
    // Depth-first search with colours; the first back edge found is reported as its cycle.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut stack: Vec<&str> = Vec::new();
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    for file in graph.keys() {
        if !state.contains_key(file.as_str())
            && let Some(cycle) = visit(file, &graph, &mut state, &mut stack)
        {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_paths() {
    // The reader itself: a file that uses a sibling through `super::` and a crate path.
    let files = all_files();
    let graph = edges(&files);
    let ops = &graph["src/ops/log_softmax.rs"];
    assert!(ops.contains("src/ops/mod.rs"), "{ops:?}");
    assert!(ops.contains("src/gpu/dispatch.rs"), "{ops:?}");
    assert!(ops.contains("src/kernels/log_softmax.rs"), "{ops:?}");
    assert!(graph["src/ops/mod.rs"].contains("src/ops/budget.rs"));
}
