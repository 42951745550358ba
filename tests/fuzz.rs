//! Fuzzing what the command line takes from outside: `.npy` files and arguments.
//!
//! - `npy_reader`: mutated `.npy` files (bit flips, splices, truncations, header tokens swapped
//!   for nasty ones, wrong length fields, on top of valid files of every dtype, order, version
//!   and shape) through `cli::npy::parse`: no panic, every error one line, every success an
//!   array whose length fills its shape.
//! - `cli_arguments`: generated command lines (every subcommand, operation and option, with
//!   valid, edge and garbage values, files from a pool of valid, odd-shaped and corrupt `.npy`
//!   files) through `cli::parse` and `eval::Job::load`; every job that loads also runs on a
//!   device (round-robin over the adapters): no panic anywhere, errors one line, outputs
//!   whose length fills their shape.
//!
//! A run is a fixed-seed slice (CI): `WGPU_LOSS_FUZZ_EXECS` executions per target (default
//! 20 000 for the reader, 2 000 for the arguments) from `WGPU_LOSS_FUZZ_SEED` (default 1);
//! `WGPU_LOSS_FUZZ_DEVICE_EVERY=k` runs only every k-th loaded job on a device (default 1).
//! The long local run: `WGPU_LOSS_FUZZ_EXECS=1000000 WGPU_LOSS_FUZZ_DEVICE_EVERY=100
//! WGPU_LOSS_FUZZ_SEED=$RANDOM cargo test --test suite fuzz:: -- --nocapture` (a debug build, so that
//! arithmetic overflow panics too).

use crate::common;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use common::{Rng, devices};
use wgpu_loss::cli::{self, Command, eval, npy};

fn execs(default: usize) -> usize {
    std::env::var("WGPU_LOSS_FUZZ_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("WGPU_LOSS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn report(line: String) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `f`; on a panic prints `input` (to reproduce it) and panics again.
fn guarded<R>(input: &dyn Fn() -> String, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            report(format!("fuzz input that panicked: {}", input()));
            resume_unwind(panic)
        }
    }
}

/// A `.npy` file: `descr` and `shape` as Python literals, the header padded as NumPy does.
fn npy_file(version: u8, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut text = format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}");
    let prefix = if version == 1 { 10 } else { 12 };
    while !(prefix + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((text.len() as u16).to_le_bytes());
    } else {
        out.extend((text.len() as u32).to_le_bytes());
    }
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

const DESCRS: [(&str, usize); 15] = [
    ("'<f4'", 4),
    ("'<i8'", 8),
    ("'<i4'", 4),
    ("'>f4'", 4),
    ("'>i8'", 8),
    ("'<f8'", 8),
    ("'|b1'", 1),
    ("'<u2'", 2),
    ("'<f2'", 2),
    ("'|O'", 8),
    ("[('a', '<f4')]", 4),
    ("'<U3'", 12),
    ("'<V2'", 2),
    ("'|V2'", 2),
    ("'>f2'", 2),
];

/// A random shape literal, its element count when small.
fn shape(rng: &mut Rng) -> (String, Option<usize>) {
    let dims: Vec<u64> = (0..rng.below(5))
        .map(|_| match rng.below(10) {
            0 => 0,
            1 => 1 << 40,
            2 => u64::MAX,
            _ => rng.below(7) as u64 + 1,
        })
        .collect();
    let n =
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?)).filter(|&n| n < 4096);
    let text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    (text, n)
}

/// A valid-looking `.npy` file of random dtype, order, version and shape (its data the right
/// length when the shape is small, else a few bytes).
fn seed_file(rng: &mut Rng) -> Vec<u8> {
    let (descr, item) = DESCRS[rng.below(DESCRS.len())];
    let (shape, n) = shape(rng);
    let bytes = n.map_or(rng.below(16), |n| n * item);
    let data: Vec<u8> = (0..bytes).map(|_| rng.next_u64() as u8).collect();
    npy_file(1 + rng.below(3) as u8, descr, rng.below(4) == 0, &shape, &data)
}

const TOKENS: [&str; 24] = [
    "'<f4'",
    "'<i8'",
    "True",
    "False",
    "(",
    ")",
    ",",
    "-1",
    "99999999999999999999999",
    "18446744073709551615",
    "1e9",
    "'shape'",
    "'descr'",
    "'fortran_order'",
    "{",
    "}",
    "\0",
    "\n",
    "'",
    "\"",
    "None",
    "((2,),)",
    "[1, 2]",
    "\u{1F600}",
];

/// One to four random mutations of `bytes`.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len().max(1);
        match rng.below(8) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
            2 => {
                let at = rng.below(len).min(bytes.len());
                let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
                bytes.splice(at..at, extra);
            }
            3 => bytes.truncate(rng.below(len)),
            4 if !bytes.is_empty() => {
                let a = rng.below(bytes.len());
                let b = (a + rng.below(16)).min(bytes.len());
                bytes.drain(a..b);
            }
            5 => {
                // A header token swapped for another.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let from = TOKENS[rng.below(TOKENS.len())];
                let to = TOKENS[rng.below(TOKENS.len())];
                if text.contains(from) {
                    bytes = text.replacen(from, to, 1).into_bytes();
                }
            }
            6 if bytes.len() >= 12 => {
                // The header length field.
                let v: u32 = match rng.below(3) {
                    0 => 0,
                    1 => u32::MAX,
                    _ => rng.below(200) as u32,
                };
                let (at, n) = if bytes[6] == 1 { (8, 2) } else { (8, 4) };
                bytes[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            _ => {
                let a = rng.below(len).min(bytes.len());
                let chunk = bytes[a..(a + rng.below(32)).min(bytes.len())].to_vec();
                let at = rng.below(len).min(bytes.len());
                bytes.splice(at..at, chunk);
            }
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The elements a shape holds (0 when a dim is 0).
fn numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

#[test]
fn npy_reader() {
    let n = execs(20_000);
    let mut rng = Rng::new(seed());
    let (mut parsed, mut refused) = (0usize, 0usize);
    for _ in 0..n {
        let base = seed_file(&mut rng);
        let bytes = if rng.below(5) == 0 { base } else { mutate(&mut rng, base) };
        let result = guarded(&|| hex(&bytes), || npy::parse(&bytes));
        match result {
            Ok(npy::Array::Float(v, s, _)) => {
                assert_eq!(Some(v.len()), numel(&s), "{}", hex(&bytes));
                parsed += 1;
            }
            Ok(npy::Array::Ids(v, s)) => {
                assert_eq!(Some(v.len()), numel(&s), "{}", hex(&bytes));
                parsed += 1;
            }
            Err(message) => {
                assert!(!message.contains('\n') && !message.is_empty(), "{message:?} for {}", hex(&bytes));
                refused += 1;
            }
        }
    }
    report(format!(
        "fuzz npy_reader: {n} executions (seed {}), {parsed} parsed, {refused} refused, 0 panics",
        seed()
    ));
}

/// The files command lines refer to: valid arrays of assorted shapes and dtypes, odd ones, and
/// corrupt ones, plus paths that are not files.
fn file_pool(dir: &Path, rng: &mut Rng) -> Vec<PathBuf> {
    let mut pool = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        pool.push(path);
    };
    let floats = |rng: &mut Rng, n: usize, lo: f32, hi: f32| -> Vec<u8> {
        (0..n).flat_map(|_| (lo + (hi - lo) * (rng.unit() + 1.0) / 2.0).to_le_bytes()).collect()
    };
    for shape in [
        vec![],
        vec![1],
        vec![3],
        vec![4],
        vec![3, 4],
        vec![2, 3, 4],
        vec![4, 3],
        vec![0, 4],
        vec![3, 0],
        vec![1, 1, 1],
    ] {
        let n: usize = shape.iter().product();
        let text = match shape.len() {
            1 => format!("({},)", shape[0]),
            _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
        };
        let tag = shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        for (kind, lo, hi) in [("logit", -5.0, 5.0), ("prob", 0.0, 1.0)] {
            add(format!("{kind}_{tag}.npy"), npy_file(1, "'<f4'", false, &text, &floats(rng, n, lo, hi)));
        }
        let ids: Vec<u8> = (0..n).flat_map(|_| (rng.below(6) as i64 - 1).to_le_bytes()).collect();
        add(format!("ids_{tag}.npy"), npy_file(1, "'<i8'", false, &text, &ids));
        let ids32: Vec<u8> = (0..n).flat_map(|_| (rng.below(4) as i32).to_le_bytes()).collect();
        add(format!("ids32_{tag}.npy"), npy_file(1, "'<i4'", false, &text, &ids32));
    }
    add("nan.npy".into(), npy_file(1, "'<f4'", false, "(3, 4)", &[f32::NAN.to_le_bytes(); 12].concat()));
    add("inf.npy".into(), npy_file(1, "'<f4'", false, "(3, 4)", &[f32::INFINITY.to_le_bytes(); 12].concat()));
    add("huge_ids.npy".into(), npy_file(1, "'<i8'", false, "(3,)", &[i64::MAX.to_le_bytes(); 3].concat()));
    add("empty_huge.npy".into(), npy_file(1, "'<f4'", false, "(0, 1099511627776)", &[]));
    for i in 0..40 {
        let base = seed_file(rng);
        let bytes = mutate(rng, base);
        add(format!("mutated_{i}.npy"), bytes);
    }
    pool.push(dir.join("missing.npy"));
    pool.push(dir.to_path_buf());
    pool.push(PathBuf::from("/dev/null"));
    pool
}

const NUMBERS: [&str; 22] = [
    "0",
    "1",
    "-1",
    "2",
    "0.1",
    "0.5",
    "-100",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1e40",
    "-1e40",
    "1e-45",
    "",
    "--",
    "9223372036854775808",
    "-9223372036854775809",
    "0x10",
    "1_000",
    "\u{0663}",
    "3.",
];

/// A pool file whose name starts with one of `kinds` (any file one time in eight).
fn pool_file(rng: &mut Rng, pool: &[PathBuf], kinds: &[&str]) -> String {
    let matching: Vec<&PathBuf> = pool
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| kinds.iter().any(|k| n.to_string_lossy().starts_with(k))))
        .collect();
    let path = if matching.is_empty() || rng.below(8) == 0 {
        &pool[rng.below(pool.len())]
    } else {
        matching[rng.below(matching.len())]
    };
    path.to_string_lossy().into_owned()
}

/// A generated command line (program name first): most are plausible (an operation with
/// inputs of the right kinds and options, odd shapes and values included), the rest random.
fn command_line(rng: &mut Rng, pool: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["wgpu-loss".to_owned()];
    let pick = |rng: &mut Rng, list: &[&str]| list[rng.below(list.len())].to_owned();
    args.push(match rng.below(20) {
        0 => pick(rng, &["info", "compare", "help", "--version", "--help", "bogus", ""]),
        1..=9 => "eval".into(),
        _ => "grad".into(),
    });
    let op = if rng.below(15) == 0 {
        pick(rng, &["cross_entropy", "MSE", "", "-", "linear2"])
    } else {
        // Every op of the catalogue, by its CLI name.
        let ops: Vec<String> = wgpu_loss::catalogue::LOSSES.iter().map(|l| l.cli_name()).collect();
        ops[rng.below(ops.len())].clone()
    };
    args.push(op.clone());
    if rng.below(4) > 0 {
        let (input, target): (&[&str], &[&str]) = match op.as_str() {
            "cross-entropy" | "nll" => (&["logit"], &["ids", "prob"]),
            "bce" => (&["prob"], &["prob"]),
            "kl-div" => (&["logit", "prob"], &["prob"]),
            _ => (&["logit"], &["logit", "prob"]),
        };
        args.extend(["--input".into(), pool_file(rng, pool, input)]);
        if op == "linear" {
            args.extend(["--weight".into(), pool_file(rng, pool, &["logit"])]);
        } else if !op.contains("softmax") {
            args.extend(["--target".into(), pool_file(rng, pool, target)]);
        }
    }
    for _ in 0..rng.below(6) {
        match rng.below(16) {
            0 | 1 => args.extend(["--input".into(), pool_file(rng, pool, &["logit", "prob"])]),
            2 | 3 => args.extend(["--target".into(), pool_file(rng, pool, &["ids", "prob", "logit"])]),
            4 | 5 => {
                args.push(pick(rng, &["--weight", "--bias", "--pos-weight"]));
                args.push(pool_file(rng, pool, &["prob", "logit"]));
            }
            6 | 7 => {
                args.push("--reduction".into());
                args.push(pick(
                    rng,
                    &["none", "mean", "sum", "none", "mean", "sum", "batchmean", "Mean", "", "avg"],
                ));
            }
            8 | 9 => {
                args.push(pick(rng, &["--ignore-index", "--label-smoothing", "--beta", "--delta", "--dim"]));
                args.push(pick(rng, &NUMBERS));
            }
            10 => args.push(format!("--dim={}", pick(rng, &["-1", "0", "1", "2", "-3", "4", "9999999999"]))),
            11 => args.push("--log-target".into()),
            12 => {
                args.push("--backend".into());
                args.push(pick(rng, &["vulkan", "gl", "metal", "dx12", "cuda", ""]));
            }
            13 => args.push(pick(rng, &NUMBERS)),
            _ => args.push(pick(rng, &["--bogus", "-x", "--input", "--", "--output"])),
        }
    }
    if rng.below(10) > 0 {
        args.push("--output".into());
        args.push("/dev/null".into());
    }
    args
}

#[test]
fn cli_arguments() {
    let n = execs(2_000);
    let every: usize =
        std::env::var("WGPU_LOSS_FUZZ_DEVICE_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let mut rng = Rng::new(seed() ^ 0x5eed);
    let dir = std::env::temp_dir().join(format!("wgpu-loss-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pool = file_pool(&dir, &mut rng);
    let devs = devices();
    let (mut parsed, mut loaded, mut ran, mut failed_on_device) = (0usize, 0usize, 0usize, 0usize);
    for i in 0..n {
        let args = command_line(&mut rng, &pool);
        let show = || format!("{args:?}");
        let outcome = guarded(&show, || {
            let Ok(parsed_cli) = cli::parse(&args) else { return (false, false, None) };
            let (Command::Eval(a) | Command::Grad(a)) = &parsed_cli.command else {
                return (true, false, None);
            };
            let grad = matches!(parsed_cli.command, Command::Grad(_));
            let job = match eval::Job::load(a, grad) {
                Ok(job) => job,
                Err(e) => {
                    assert!(!e.0.contains('\n') && !e.0.is_empty(), "{e:?}");
                    return (true, false, None);
                }
            };
            if i % every != 0 {
                return (true, true, None);
            }
            let dev = &devs[(i / every) % devs.len()];
            (true, true, Some(job.run(dev, grad)))
        });
        parsed += outcome.0 as usize;
        loaded += outcome.1 as usize;
        match outcome.2 {
            Some(Ok((values, shape, _))) => {
                assert_eq!(Some(values.len()), numel(&shape), "{args:?}");
                ran += 1;
            }
            Some(Err(e)) => {
                assert!(!e.0.contains('\n') && !e.0.is_empty(), "{args:?}: {e:?}");
                failed_on_device += 1;
            }
            None => {}
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(format!(
        "fuzz cli_arguments: {n} executions (seed {}), {parsed} parsed, {loaded} loaded, {ran} ran on a device, \
         {failed_on_device} refused by the library, 0 panics",
        seed()
    ));
}
