//! Opening GGUF files: header, metadata and tensors, with errors that name the file.
//!
//! The format is ggml's (<https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>);
//! parsing is candle's `gguf_file`. On top of it we check the magic bytes first (a clear
//! "not a GGUF file"), and that every tensor lies inside the file, so a truncated
//! download fails at open time naming the first tensor that is cut off.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};

use crate::{Error, Result};

/// An open GGUF file: its metadata and a reader for its tensors.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and validates `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut reader, &mut magic).map_err(|e| Error::io(&path, e))?;
        if got < 4 || &magic != b"GGUF" {
            return Err(Error::model_file(
                &path,
                format!(
                    "not a GGUF file (starts with {:?}, expected \"GGUF\")",
                    String::from_utf8_lossy(&magic[..got])
                ),
            ));
        }
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&path, e))?;
        let content = Content::read(&mut reader).map_err(|e| {
            Error::model_file(&path, format!("invalid or truncated GGUF header: {e}"))
        })?;
        // Every tensor must lie inside the file; report the first one (by offset) that does not.
        let mut infos: Vec<_> = content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, info)| info.offset);
        for (name, info) in infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(Error::model_file(
                    &path,
                    format!(
                        "tensor `{name}` has {elems} elements, not a multiple of its {block}-value blocks"
                    ),
                ));
            }
            let bytes = (elems / block * info.ggml_dtype.type_size()) as u64;
            let end = content
                .tensor_data_offset
                .saturating_add(info.offset)
                .saturating_add(bytes);
            if end > file_len {
                return Err(Error::model_file(
                    &path,
                    format!(
                        "truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes"
                    ),
                ));
            }
        }
        Ok(Self {
            path,
            content,
            reader,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata key/value pairs.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Whether the file holds a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The names of all tensors.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    /// Reads tensor `name` (candle's dims order: outermost first).
    pub fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(Error::model_file(
                &self.path,
                format!("missing tensor `{name}`"),
            ));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| Error::model_file(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// Reads tensor `name` as f32 values, checking its element count.
    pub fn tensor_f32(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let v = t
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::model_file(&self.path, format!("tensor `{name}`: {e}")))?;
        if v.len() != len {
            return Err(Error::model_file(
                &self.path,
                format!("tensor `{name}` has {} values, expected {len}", v.len()),
            ));
        }
        Ok(v)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Typed access to GGUF metadata, with errors naming the file and key.
pub struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl<'a> Metadata<'a> {
    pub fn new(path: &'a Path, map: &'a HashMap<String, Value>) -> Self {
        Self { path, map }
    }

    fn err(&self, reason: String) -> Error {
        Error::model_file(self.path, reason)
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A string value; missing or of another type is an error.
    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| self.err(format!("missing metadata `{key}`")))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.err(format!("metadata `{key}` should be a string, got {v:?}"))),
        }
    }

    /// A non-negative integer of any GGUF integer type.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(format!("missing metadata `{key}`")))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.map.get(key) else {
            return Ok(None);
        };
        value_as_i64(v)
            .and_then(|i| usize::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| {
                self.err(format!(
                    "metadata `{key}` should be a non-negative integer, got {v:?}"
                ))
            })
    }

    /// A float (f32 or f64, or an integer).
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::F32(f)) => Ok(Some(*f)),
            Some(Value::F64(f)) => Ok(Some(*f as f32)),
            Some(v) => value_as_i64(v)
                .map(|i| Some(i as f32))
                .ok_or_else(|| self.err(format!("metadata `{key}` should be a number, got {v:?}"))),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => value_as_i64(v)
                .map(|i| Some(i != 0))
                .ok_or_else(|| self.err(format!("metadata `{key}` should be a bool, got {v:?}"))),
        }
    }

    /// An array of strings.
    pub fn str_array(&self, key: &str) -> Result<Vec<&'a str>> {
        let v = self
            .map
            .get(key)
            .ok_or_else(|| self.err(format!("missing metadata `{key}`")))?;
        let Value::Array(items) = v else {
            return Err(self.err(format!("metadata `{key}` should be an array of strings")));
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.err(format!("metadata `{key}` holds a non-string {v:?}"))),
            })
            .collect()
    }

    /// An array of integers, if present.
    pub fn opt_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.map.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.err(format!("metadata `{key}` should be an array of integers")));
        };
        items
            .iter()
            .map(|v| {
                value_as_i64(v)
                    .ok_or_else(|| self.err(format!("metadata `{key}` holds a non-integer {v:?}")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn value_as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

impl GgufFile {
    /// Typed access to this file's metadata.
    pub fn meta(&self) -> Metadata<'_> {
        Metadata::new(&self.path, &self.content.metadata)
    }
}
