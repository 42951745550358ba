//! Reading and writing `.npy` files: float32 values and int64/int32 class ids, C order; output
//! written to a temporary file in the same directory and renamed only on success.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::DType;
use npyz::WriterBuilder;
use npyz::{Order, TypeChar};

use crate::CliError;

/// The contents of one `.npy` file.
pub enum Array {
    F32(Vec<f32>, Vec<usize>),
    Ids(Vec<i64>, Vec<usize>),
}

/// Reads `path`, given for the option `option` (named in every error).
pub fn read(option: &str, path: &Path) -> Result<Array, CliError> {
    let at = |msg: String| CliError(format!("{option} {}: {msg}", path.display()));
    let file = File::open(path).map_err(|e| at(format!("cannot open: {e}")))?;
    let npy =
        npyz::NpyFile::new(BufReader::new(file)).map_err(|e| at(format!("not a valid .npy file: {e}")))?;
    if npy.order() == Order::Fortran && npy.shape().len() > 1 {
        return Err(at("Fortran-order arrays are not supported (save np.ascontiguousarray(a))".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let DType::Plain(ts) = npy.dtype() else {
        return Err(at("structured arrays are not supported".into()));
    };
    let truncated = |e: std::io::Error| at(format!("truncated or corrupt data: {e}"));
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Ok(Array::F32(npy.into_vec::<f32>().map_err(truncated)?, shape)),
        (TypeChar::Int, 8) => Ok(Array::Ids(npy.into_vec::<i64>().map_err(truncated)?, shape)),
        (TypeChar::Int, 4) => {
            let v = npy.into_vec::<i32>().map_err(truncated)?;
            Ok(Array::Ids(v.into_iter().map(i64::from).collect(), shape))
        }
        _ => Err(at(format!("dtype {ts} is not supported (float32 values, int64 or int32 class ids)"))),
    }
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

/// Writes `values` with `shape` as float32 to `path`, atomically: a temporary file in the same
/// directory, renamed over `path` only once it is complete.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<(), CliError> {
    let at = |msg: String| CliError(format!("--output {}: {msg}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| at("not a file name".into()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        {
            let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut w =
                npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut out).begin_nd()?;
            w.extend(values.iter().copied())?;
            w.finish()?;
        }
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(format!("cannot write: {e}")));
    }
    Ok(())
}
