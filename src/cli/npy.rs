//! Reading and writing `.npy` files: float32 values and int64/int32 class ids, C order.
//!
//! Reading checks the header against the data before allocating anything, so a header that
//! claims more elements than the file holds is an error, not an allocation of that size.
//! Writing goes to a temporary file in the target's directory, renamed over the target only on
//! success; a target that exists and is not a regular file (a device such as `/dev/null`, a
//! FIFO) is written through instead, and a symbolic link is followed, never replaced.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use npyz::{DType, Order, TypeChar, WriterBuilder};

use super::CliError;
use crate::recording::one_line;

/// The contents of one `.npy` file.
#[derive(Debug, PartialEq)]
pub enum Array {
    F32(Vec<f32>, Vec<usize>),
    Ids(Vec<i64>, Vec<usize>),
}

/// Counts the bytes read through it (to find where a header ends).
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Parses an `.npy` file of `total` bytes from `reader`; the error is one line.
fn parse_from(reader: impl Read, total: u64) -> Result<Array, String> {
    let mut counted = Counted { inner: reader, read: 0 };
    let header = npyz::NpyHeader::from_reader(&mut counted)
        .map_err(|e| format!("not a valid .npy file: {}", one_line(&e.to_string())))?;
    let data_bytes = total.saturating_sub(counted.read);
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| "a dimension does not fit in memory".to_owned())?;
    if header.order() == Order::Fortran && shape.len() > 1 {
        return Err("Fortran-order arrays are not supported (save np.ascontiguousarray(a))".into());
    }
    let DType::Plain(ts) = header.dtype() else {
        return Err("structured arrays are not supported".into());
    };
    let item = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) | (TypeChar::Int, 4) => 4u64,
        (TypeChar::Int, 8) => 8,
        _ => return Err(format!("dtype {ts} is not supported (float32 values, int64 or int32 class ids)")),
    };
    let elements = if shape.contains(&0) {
        Some(0)
    } else {
        shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))
    };
    let needed = elements.and_then(|n| n.checked_mul(item));
    if needed != Some(data_bytes) {
        let needed = needed.map_or("more than 2^64".to_owned(), |b| b.to_string());
        return Err(format!(
            "truncated or corrupt data: the header's shape {shape:?} needs {needed} bytes of data, the file holds {data_bytes}"
        ));
    }
    let file = npyz::NpyFile::with_header(header, counted.inner);
    let corrupt = |e: std::io::Error| format!("truncated or corrupt data: {}", one_line(&e.to_string()));
    match (ts.type_char(), item) {
        (TypeChar::Float, _) => Ok(Array::F32(file.into_vec::<f32>().map_err(corrupt)?, shape)),
        (_, 8) => Ok(Array::Ids(file.into_vec::<i64>().map_err(corrupt)?, shape)),
        _ => {
            let v = file.into_vec::<i32>().map_err(corrupt)?;
            Ok(Array::Ids(v.into_iter().map(i64::from).collect(), shape))
        }
    }
}

/// Parses the bytes of an `.npy` file. The error is one line, without the file's name.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    parse_from(bytes, bytes.len() as u64)
}

/// Reads `path`, given for the option `option` (named in every error).
pub fn read(option: &str, path: &Path) -> Result<Array, CliError> {
    let at = |msg: String| CliError(format!("{option} {}: {msg}", path.display()));
    let file = File::open(path).map_err(|e| at(format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| at(format!("cannot open: {e}")))?;
    if meta.is_dir() {
        return Err(at("is a directory".into()));
    }
    parse_from(BufReader::new(file), meta.len()).map_err(at)
}

/// Reads a float32 array.
pub fn read_f32(option: &str, path: &Path) -> Result<(Vec<f32>, Vec<usize>), CliError> {
    match read(option, path)? {
        Array::F32(v, s) => Ok((v, s)),
        Array::Ids(..) => {
            Err(CliError(format!("{option} {}: expected float32, got integers", path.display())))
        }
    }
}

/// Writes `values` with `shape` as float32 `.npy` to `out`.
fn encode(out: impl Write, values: &[f32], shape: &[usize]) -> std::io::Result<()> {
    let mut out = BufWriter::new(out);
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut out).begin_nd()?;
    w.extend(values.iter().copied())?;
    w.finish()?;
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

/// Writes `values` with `shape` as float32 to `path`. A regular file (or a new one) is written
/// atomically: a temporary file in the same directory, renamed over it once complete. A target
/// that exists and is not a regular file (a device node, a FIFO) is written through, and a
/// symbolic link is followed to its target, so neither is ever replaced.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<(), CliError> {
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

fn write_atomically(path: &Path, values: &[f32], shape: &[usize]) -> std::io::Result<()> {
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
    use super::{Array, encode, parse};

    fn npy(values: &[f32], shape: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, values, shape).unwrap();
        out
    }

    #[test]
    fn round_trip_and_checked_headers() {
        let bytes = npy(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        assert_eq!(parse(&bytes).unwrap(), Array::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![2, 3]));
        // Data shorter or longer than the header's shape.
        for cut in [&bytes[..bytes.len() - 4], &[bytes.as_slice(), &[0; 4]].concat()] {
            let err = parse(cut).unwrap_err();
            assert!(err.starts_with("truncated or corrupt data") && !err.contains('\n'), "{err}");
        }
        // Empty arrays with huge other dims.
        let empty = npy(&[], &[0, 1 << 40]);
        assert_eq!(parse(&empty).unwrap(), Array::F32(vec![], vec![0, 1 << 40]));
        // The same header claiming 2^40 elements of no data is refused before allocating.
        let at = empty.windows(4).position(|w| w == b"(0, ").unwrap();
        let mut huge = empty.clone();
        huge[at + 1] = b'1';
        assert!(parse(&huge).unwrap_err().contains("needs 4398046511104 bytes"));
    }
}
