//! Reader for CTranslate2 `model.bin` files (binary versions 4–6), as written by
//! `ctranslate2/specs/model_spec.py` and read by `src/models/model.cc` of
//! [CTranslate2](https://github.com/OpenNMT/CTranslate2).
//!
//! Layout, all little-endian; a string is a `u16` byte length (including a trailing NUL) then
//! the bytes:
//!
//! ```text
//! u32 binary_version | string spec_name | u32 spec_revision | u32 n_variables
//! n_variables × { string name | u8 rank | rank × u32 dim | u8 dtype | u32 n_bytes | data }
//! u32 n_aliases | n_aliases × { string alias | string target }
//! ```
//!
//! dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16. The file is memory-mapped; tensors are
//! converted to f32 on request. Every malformed or truncated file is reported as
//! [`Error::ModelFile`] naming the file and the offending variable.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use memmap2::Mmap;

use crate::{Error, Result};

/// Element type of a stored variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Ct2Dtype::I8 => 1,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => 2,
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
        }
    }
}

/// One stored variable: its shape, type and where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Ct2Variable {
    pub shape: Vec<usize>,
    pub dtype: Ct2Dtype,
    offset: usize,
    len: usize,
}

/// An opened `model.bin`.
pub struct Ct2File {
    path: PathBuf,
    /// Binary format version (6 for current converters).
    pub binary_version: u32,
    /// Model specification name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Revision of that specification.
    pub spec_revision: u32,
    variables: HashMap<String, Ct2Variable>,
    aliases: HashMap<String, String>,
    map: Mmap,
}

impl std::fmt::Debug for Ct2File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ct2File")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("spec_revision", &self.spec_revision)
            .field("variables", &self.variables.len())
            .finish()
    }
}

/// A bounds-checked cursor over the mapped bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(Error::model_file(
                self.path,
                format!(
                    "truncated CTranslate2 model: {what} needs {n} bytes at offset {} but the file \
                     has {} bytes",
                    self.pos,
                    self.bytes.len()
                ),
            )),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u16(what)? as usize;
        let bytes = self.take(len, what)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::model_file(
                self.path,
                format!(
                    "corrupt CTranslate2 model: {what} at offset {} is not UTF-8",
                    self.pos
                ),
            )
        })
    }
}

const MAX_VARIABLES: u32 = 1 << 20;

impl Ct2File {
    /// Opens and indexes `path` (a `model.bin`); no tensor data is copied yet.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and private to this process; the model file is not
        // expected to change while it is loaded (the same contract as candle's safetensors
        // loader). Every access below is bounds-checked against the mapped length.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if map.is_empty() {
            return Err(Error::model_file(path, "the model file is empty"));
        }
        let mut cur = Cursor {
            bytes: &map,
            pos: 0,
            path,
        };
        let binary_version = cur.u32("the binary version")?;
        if !(4..=6).contains(&binary_version) {
            return Err(Error::model_file(
                path,
                format!(
                    "not a CTranslate2 model.bin of a supported binary version (read {binary_version}, \
                     expected 4 to 6)"
                ),
            ));
        }
        let spec = cur.string("the spec name")?;
        let spec_revision = cur.u32("the spec revision")?;
        let n_variables = cur.u32("the variable count")?;
        if n_variables > MAX_VARIABLES {
            return Err(Error::model_file(
                path,
                format!("corrupt CTranslate2 model: {n_variables} variables"),
            ));
        }
        let mut variables = HashMap::with_capacity(n_variables as usize);
        for i in 0..n_variables {
            let name = cur.string(&format!("the name of variable {i}"))?;
            let rank = cur.u8(&format!("the rank of `{name}`"))? as usize;
            if rank > 8 {
                return Err(Error::model_file(
                    path,
                    format!("corrupt CTranslate2 model: variable `{name}` has rank {rank}"),
                ));
            }
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(cur.u32(&format!("the shape of `{name}`"))? as usize);
            }
            let dtype_id = cur.u8(&format!("the dtype of `{name}`"))?;
            let dtype = Ct2Dtype::from_id(dtype_id).ok_or_else(|| {
                Error::model_file(
                    path,
                    format!(
                        "corrupt CTranslate2 model: variable `{name}` has unknown dtype {dtype_id}"
                    ),
                )
            })?;
            let len = cur.u32(&format!("the size of `{name}`"))? as usize;
            let expected = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(len) {
                return Err(Error::model_file(
                    path,
                    format!(
                        "corrupt CTranslate2 model: variable `{name}` of shape {shape:?} ({dtype:?}) \
                         declares {len} bytes"
                    ),
                ));
            }
            let offset = cur.pos;
            cur.take(len, &format!("the data of `{name}`"))?;
            variables.insert(
                name,
                Ct2Variable {
                    shape,
                    dtype,
                    offset,
                    len,
                },
            );
        }
        let n_aliases = cur.u32("the alias count")?;
        if n_aliases > MAX_VARIABLES {
            return Err(Error::model_file(
                path,
                format!("corrupt CTranslate2 model: {n_aliases} aliases"),
            ));
        }
        let mut aliases = HashMap::new();
        for i in 0..n_aliases {
            let alias = cur.string(&format!("alias {i}"))?;
            let target = cur.string(&format!("the target of alias `{alias}`"))?;
            aliases.insert(alias, target);
        }
        let pos = cur.pos;
        if pos != map.len() {
            return Err(Error::model_file(
                path,
                format!(
                    "corrupt CTranslate2 model: {} unexpected bytes after the last alias",
                    map.len() - pos
                ),
            ));
        }
        Ok(Ct2File {
            path: path.to_path_buf(),
            binary_version,
            spec,
            spec_revision,
            variables,
            aliases,
            map,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All variable names (aliases excluded), sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.variables.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The variable `name`, following aliases (e.g. a tied output projection).
    pub fn get(&self, name: &str) -> Option<&Ct2Variable> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(v) = self.variables.get(name) {
                return Some(v);
            }
            name = self.aliases.get(name)?;
        }
        None
    }

    fn require(&self, name: &str) -> Result<&Ct2Variable> {
        self.get(name).ok_or_else(|| {
            Error::model_file(
                &self.path,
                format!("missing variable `{name}` in {}", self.spec),
            )
        })
    }

    /// The raw bytes of a variable.
    pub fn bytes(&self, var: &Ct2Variable) -> &[u8] {
        &self.map[var.offset..var.offset + var.len]
    }

    /// The variable `name` as f32 values (float types converted; integers rejected).
    pub fn f32_values(&self, name: &str) -> Result<Vec<f32>> {
        let var = self.require(name)?;
        let bytes = self.bytes(var);
        let values = match var.dtype {
            Ct2Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Ct2Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Ct2Dtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::model_file(
                    &self.path,
                    format!(
                        "variable `{name}` is stored as {other:?}: quantized CTranslate2 weights are \
                         not supported (convert the model with --quantization float16 or float32)"
                    ),
                ));
            }
        };
        Ok(values)
    }

    /// The variable `name` as a tensor of its stored shape: f16 when stored as f16 (no
    /// rounding), f32 otherwise.
    pub fn tensor_f16_or_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let var = self.require(name)?;
        if var.dtype != Ct2Dtype::F16 {
            return self.tensor(name, device);
        }
        let values: Vec<half::f16> = self
            .bytes(var)
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Tensor::from_vec(values, var.shape.clone(), device)?)
    }

    /// The variable `name` as an f32 tensor of its stored shape.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let shape = self.require(name)?.shape.clone();
        let values = self.f32_values(name)?;
        Ok(Tensor::from_vec(values, shape, device)?)
    }

    /// The variable `name` as an f32 tensor, checking its shape.
    pub fn tensor_shaped(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let var = self.require(name)?;
        if var.shape != shape {
            return Err(Error::model_file(
                &self.path,
                format!(
                    "variable `{name}` has shape {:?}, expected {shape:?}",
                    var.shape
                ),
            ));
        }
        self.tensor(name, device)
    }

    /// A scalar (rank-0) integer variable such as `encoder/num_heads`.
    pub fn scalar_i64(&self, name: &str) -> Result<i64> {
        let var = self.require(name)?;
        let b = self.bytes(var);
        let bad = || {
            Error::model_file(
                &self.path,
                format!("variable `{name}` is not an integer scalar"),
            )
        };
        if !var.shape.is_empty() && var.shape.iter().product::<usize>() != 1 {
            return Err(bad());
        }
        Ok(match var.dtype {
            Ct2Dtype::I8 => b[0] as i8 as i64,
            Ct2Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
            Ct2Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn tiny_model() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "TestSpec");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        // w: f16 [2, 2]
        string(&mut b, "w");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&8u32.to_le_bytes());
        for v in [1.0f32, -2.0, 0.5, 3.0] {
            b.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        // n: i16 scalar
        string(&mut b, "n");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&7i16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "tied");
        string(&mut b, "w");
        b
    }

    fn write(bytes: &[u8], name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("omni-ct2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_variables_scalars_and_aliases() {
        let path = write(&tiny_model(), "ok.bin");
        let f = Ct2File::open(&path).unwrap();
        assert_eq!(f.spec, "TestSpec");
        assert_eq!(f.scalar_i64("n").unwrap(), 7);
        assert_eq!(f.f32_values("tied").unwrap(), vec![1.0, -2.0, 0.5, 3.0]);
        assert_eq!(f.names(), vec!["n", "w"]);
        assert!(f.get("missing").is_none());
    }

    #[test]
    fn every_truncation_is_an_error_naming_the_file() {
        let bytes = tiny_model();
        for cut in 0..bytes.len() {
            let path = write(&bytes[..cut], "cut.bin");
            let err = Ct2File::open(&path).unwrap_err().to_string();
            assert!(err.contains("cut.bin"), "{err}");
        }
    }
}
