//! Reading and writing `.npy` files, C order: float values (`<f4` float32, `<f2` float16, and
//! `<V2` or `|V2` bfloat16, which is what `np.save` writes for an `ml_dtypes.bfloat16` array, as
//! JAX and TensorFlow save them) and int64/int32 class ids.
//!
//! Reading parses the header here rather than through `npyz`, whose parser overflows (a panic
//! in debug builds, a wrong element count in release) on shapes such as
//! `(5, 7, 18446744073709551615)`, found by fuzzing; the shape is checked against the data
//! before anything is allocated, so a header that claims more than the file holds is an error,
//! not an allocation of that size. Outputs are written with a header of our own too (`npyz`
//! knows no bfloat16).
//! Writing goes to a temporary file in the target's directory, renamed over the target only on
//! success; a target that exists and is not a regular file (a device such as `/dev/null`, a
//! FIFO) is written through instead, and a symbolic link is followed, never replaced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::common::CliError;
use crate::dtype::DType;

/// The contents of one `.npy` file: float values widened to f32 (exactly) with the file's
/// element type, or class ids.
#[derive(Debug, PartialEq)]
pub enum Array {
    Float(Vec<f32>, Vec<usize>, DType),
    Ids(Vec<i64>, Vec<usize>),
}

/// The fields of an `.npy` header that matter here.
#[derive(Debug, PartialEq)]
struct Header {
    /// `f` (float16, float32), `V` (bfloat16) or `i`, and the item size in bytes.
    kind: char,
    size: usize,
    big_endian: bool,
    fortran: bool,
    shape: Vec<u64>,
}

/// A token of the header's Python literal.
#[derive(Debug, PartialEq)]
enum Token {
    Str(String),
    Int(String),
    Word(String),
    Punct(char),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | ',' => {
                out.push(Token::Punct(c));
                chars.next();
            }
            '\'' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(ch) => s.push(ch),
                        None => return Err("an unterminated string in the header".into()),
                    }
                }
                out.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut s = String::new();
                while let Some(&d) =
                    chars.peek().filter(|d| d.is_ascii_alphanumeric() || **d == '-' || **d == '.')
                {
                    s.push(d);
                    chars.next();
                }
                out.push(Token::Int(s));
            }
            c if c.is_ascii_alphabetic() => {
                let mut s = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_alphanumeric() || **d == '_') {
                    s.push(d);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
            c => return Err(format!("an unexpected character {c:?} in the header")),
        }
    }
    Ok(out)
}

/// The value of a header key: a string, a boolean, a tuple of dimensions, or something else.
enum Value {
    Str(String),
    Bool(bool),
    Dims(Vec<u64>),
    Other,
}

/// Parses `{'descr': ..., 'fortran_order': ..., 'shape': (...), }`.
fn header_dict(text: &str) -> Result<Vec<(String, Value)>, String> {
    let bad = |what: &str| format!("not a valid .npy header: {what}");
    let toks = tokens(text)?;
    let mut it = toks.iter().peekable();
    if it.next() != Some(&Token::Punct('{')) {
        return Err(bad("it is not a dictionary"));
    }
    let mut entries = Vec::new();
    loop {
        match it.next() {
            Some(Token::Punct('}')) => break,
            Some(Token::Str(key)) => {
                if it.next() != Some(&Token::Punct(':')) {
                    return Err(bad("a key without ':'"));
                }
                let value = match it.next() {
                    Some(Token::Str(s)) => Value::Str(s.clone()),
                    Some(Token::Word(w)) if w == "True" => Value::Bool(true),
                    Some(Token::Word(w)) if w == "False" => Value::Bool(false),
                    Some(Token::Punct('(')) => {
                        let mut dims = Vec::new();
                        loop {
                            match it.next() {
                                Some(Token::Punct(')')) => break,
                                Some(Token::Int(n)) => {
                                    dims.push(
                                        n.parse::<u64>().map_err(|_| bad(&format!("the dimension {n}")))?,
                                    );
                                    match it.next() {
                                        Some(Token::Punct(',')) => {}
                                        Some(Token::Punct(')')) => break,
                                        _ => return Err(bad("a malformed shape")),
                                    }
                                }
                                _ => return Err(bad("a malformed shape")),
                            }
                        }
                        Value::Dims(dims)
                    }
                    Some(Token::Punct('[')) => {
                        // A structured dtype's field list: skip to its end.
                        let mut depth = 1;
                        while depth > 0 {
                            match it.next() {
                                Some(Token::Punct('[' | '(')) => depth += 1,
                                Some(Token::Punct(']' | ')')) => depth -= 1,
                                Some(_) => {}
                                None => return Err(bad("an unterminated list")),
                            }
                        }
                        Value::Other
                    }
                    Some(_) => Value::Other,
                    None => return Err(bad("a key without a value")),
                };
                entries.push((key.clone(), value));
                match it.next() {
                    Some(Token::Punct(',')) => {}
                    Some(Token::Punct('}')) => break,
                    _ => return Err(bad("entries not separated by ','")),
                }
            }
            _ => return Err(bad("a malformed dictionary")),
        }
    }
    if it.next().is_some() {
        return Err(bad("text after the dictionary"));
    }
    Ok(entries)
}

/// The header at the start of `bytes` and the offset of the data after it.
fn header(bytes: &[u8]) -> Result<(Header, usize), String> {
    let bad = |what: &str| format!("not a valid .npy file: {what}");
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic string"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let end =
        start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("the header is cut short"))?;
    let text = if bytes[6] == 3 {
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("the header is not UTF-8"))?.to_owned()
    } else {
        // Latin-1.
        bytes[start..end].iter().map(|&b| b as char).collect()
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in header_dict(&text)? {
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("descr", _) => return Err("structured arrays are not supported".into()),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Dims(d)) => shape = Some(d),
            (k @ ("fortran_order" | "shape"), _) => {
                return Err(format!("not a valid .npy header: a malformed '{k}'"));
            }
            _ => {}
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err("not a valid .npy header: it needs 'descr', 'fortran_order' and 'shape'".into());
    };
    let unsupported = || {
        format!(
            "dtype {} is not supported (float32, float16 or bfloat16 values, int64 or int32 class ids)",
            descr.escape_debug()
        )
    };
    let mut chars = descr.chars();
    let order = chars.next();
    let big_endian = match order {
        Some('<' | '=' | '|') => false,
        Some('>') => true,
        _ => return Err(unsupported()),
    };
    let (kind, size) = match chars.as_str() {
        "f4" => ('f', 4),
        "f2" => ('f', 2),
        // bfloat16 as numpy saves it: two bytes of void, in the machine's order.
        "V2" if order != Some('>') => ('V', 2),
        "f8" => return Err("float64 is not supported: save float32, float16 or bfloat16".into()),
        "i4" => ('i', 4),
        "i8" => ('i', 8),
        _ => return Err(unsupported()),
    };
    if order == Some('|') && kind != 'V' {
        return Err(unsupported());
    }
    Ok((Header { kind, size, big_endian, fortran, shape }, end))
}

/// Parses an `.npy` file from its bytes; the error is one line.
fn parse_bytes(bytes: &[u8]) -> Result<Array, String> {
    let (h, start) = header(bytes)?;
    let shape: Vec<usize> = h
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| "a dimension does not fit in memory".to_owned())?;
    if h.fortran && shape.len() > 1 {
        return Err("Fortran-order arrays are not supported (save np.ascontiguousarray(a))".into());
    }
    let data = &bytes[start..];
    let elements =
        if shape.contains(&0) { Some(0) } else { shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) };
    let needed = elements.and_then(|n| n.checked_mul(h.size));
    if needed != Some(data.len()) {
        let needed = needed.map_or("more than 2^64".to_owned(), |b| b.to_string());
        return Err(format!(
            "truncated or corrupt data: the header's shape {shape:?} needs {needed} bytes of data, the file holds {}",
            data.len()
        ));
    }
    macro_rules! values {
        ($t:ty) => {
            data.chunks_exact(size_of::<$t>())
                .map(|c| {
                    let b = c.try_into().expect("chunks of the item size");
                    if h.big_endian { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }
                })
                .collect::<Vec<$t>>()
        };
    }
    Ok(match (h.kind, h.size) {
        ('f', 4) => Array::Float(values!(f32), shape, DType::F32),
        ('f', _) => {
            let v = values!(u16).into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect();
            Array::Float(v, shape, DType::F16)
        }
        ('V', _) => {
            let v = values!(u16).into_iter().map(|b| half::bf16::from_bits(b).to_f32()).collect();
            Array::Float(v, shape, DType::BF16)
        }
        (_, 8) => Array::Ids(values!(i64), shape),
        _ => Array::Ids(values!(i32).into_iter().map(i64::from).collect(), shape),
    })
}

/// Parses the bytes of an `.npy` file. The error is one line, without the file's name.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    parse_bytes(bytes)
}

/// Reads `path`, given for the option `option` (named in every error).
pub fn read(option: &str, path: &Path) -> Result<Array, CliError> {
    let at = |msg: String| CliError(format!("{option} {}: {msg}", path.display()));
    if path.is_dir() {
        return Err(at("is a directory".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| at(format!("cannot open: {e}")))?;
    parse_bytes(&bytes).map_err(at)
}

/// Reads a float array (float32, float16 or bfloat16): its values widened to f32, its shape
/// and its element type.
pub fn read_float(option: &str, path: &Path) -> Result<(Vec<f32>, Vec<usize>, DType), CliError> {
    match read(option, path)? {
        Array::Float(v, s, d) => Ok((v, s, d)),
        Array::Ids(..) => Err(CliError(format!(
            "{option} {}: expected float32, float16 or bfloat16, got integers",
            path.display()
        ))),
    }
}

/// Values to write: f32, or halves (their bits) of a half type.
pub enum Values<'a> {
    F32(&'a [f32]),
    Half(&'a [u16], DType),
}

impl Values<'_> {
    /// The header's `descr` and the little-endian bytes.
    fn encoded(&self) -> (&'static str, Vec<u8>) {
        match self {
            Values::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Values::Half(v, dtype) => {
                let descr = if *dtype == DType::BF16 { "<V2" } else { "<f2" };
                (descr, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        }
    }
}

/// Writes `values` with `shape` as a version 1.0 `.npy` to `out`: the header dictionary padded
/// with spaces and a newline to a multiple of 64 bytes, then the data.
fn encode(out: impl Write, values: &Values<'_>, shape: &[usize]) -> std::io::Result<()> {
    let (descr, data) = values.encoded();
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    dict.push_str(&" ".repeat(total - 10 - dict.len() - 1));
    dict.push('\n');
    let len = u16::try_from(dict.len()).map_err(|_| std::io::Error::other("a header over 64 KiB"))?;
    let mut out = BufWriter::new(out);
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(dict.as_bytes())?;
    out.write_all(&data)?;
    out.flush()
}

/// `path` with its symbolic links followed (at most 40 of them), the last one possibly dangling.
fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Writes `values` with `shape` to `path`. A regular file (or a new one) is written
/// atomically: a temporary file in the same directory, renamed over it once complete. A target
/// that exists and is not a regular file (a device node, a FIFO) is written through, and a
/// symbolic link is followed to its target, so neither is ever replaced.
pub fn write(path: &Path, values: &Values<'_>, shape: &[usize]) -> Result<(), CliError> {
    let at = |msg: String| CliError(format!("--output {}: {msg}", path.display()));
    let target = follow_links(path).map_err(|e| at(format!("cannot write: {e}")))?;
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => Err(at("is a directory".into())),
        Ok(m) if !m.is_file() => {
            let file = std::fs::OpenOptions::new().write(true).open(&target);
            file.and_then(|f| encode(f, values, shape)).map_err(|e| at(format!("cannot write: {e}")))
        }
        _ => write_atomically(&target, values, shape).map_err(|e| at(format!("cannot write: {e}"))),
    }
}

fn write_atomically(path: &Path, values: &Values<'_>, shape: &[usize]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = File::create(&tmp)?;
        encode(&file, values, shape)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::{Array, DType, Values, encode, parse};

    fn npy(values: &[f32], shape: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, &Values::F32(values), shape).unwrap();
        out
    }

    #[test]
    fn round_trip_and_checked_headers() {
        let bytes = npy(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let want = Array::Float(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![2, 3], DType::F32);
        assert_eq!(parse(&bytes).unwrap(), want);
        // Data shorter or longer than the header's shape.
        for cut in [&bytes[..bytes.len() - 4], &[bytes.as_slice(), &[0; 4]].concat()] {
            let err = parse(cut).unwrap_err();
            assert!(err.starts_with("truncated or corrupt data") && !err.contains('\n'), "{err}");
        }
        // Empty arrays with huge other dims.
        let empty = npy(&[], &[0, 1 << 40]);
        assert_eq!(parse(&empty).unwrap(), Array::Float(vec![], vec![0, 1 << 40], DType::F32));
        // The same header claiming 2^40 elements of no data is refused before allocating.
        let at = empty.windows(4).position(|w| w == b"(0, ").unwrap();
        let mut huge = empty.clone();
        huge[at + 1] = b'1';
        assert!(parse(&huge).unwrap_err().contains("needs 4398046511104 bytes"));
    }

    #[test]
    fn halves_round_trip_with_numpys_headers() {
        let h: Vec<u16> = [1.0f32, -2.5, 65504.0].iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        let b: Vec<u16> = [1.0f32, -2.5, 3.0e38].iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
        for (bits, dtype, descr) in [(&h, DType::F16, "'<f2'"), (&b, DType::BF16, "'<V2'")] {
            let mut out = Vec::new();
            encode(&mut out, &Values::Half(bits, dtype), &[3]).unwrap();
            let text = String::from_utf8_lossy(&out[10..]).to_string();
            assert!(text.contains(descr) && text.contains("'shape': (3,)"), "{text}");
            assert_eq!((out.len() - 6) % 2, 0);
            assert_eq!((10 + u16::from_le_bytes([out[8], out[9]]) as usize) % 64, 0);
            let Array::Float(v, s, d) = parse(&out).unwrap() else { panic!("not floats") };
            assert_eq!((s, d), (vec![3], dtype));
            let want: Vec<f32> = bits
                .iter()
                .map(|&x| {
                    if dtype == DType::F16 {
                        half::f16::from_bits(x).to_f32()
                    } else {
                        half::bf16::from_bits(x).to_f32()
                    }
                })
                .collect();
            assert_eq!(v, want);
        }
        // numpy reads a saved bfloat16 back as '|V2'; float64 is refused by name.
        let mut out = Vec::new();
        encode(&mut out, &Values::Half(&b, DType::BF16), &[3]).unwrap();
        let at = out.windows(4).position(|w| w == b"<V2'").unwrap();
        out[at] = b'|';
        assert!(matches!(parse(&out), Ok(Array::Float(_, _, DType::BF16))));
        out[at + 1] = b'f';
        out[at + 2] = b'8';
        out.extend([0u8; 18]);
        assert!(parse(&out).unwrap_err().contains("float64"));
    }
}
