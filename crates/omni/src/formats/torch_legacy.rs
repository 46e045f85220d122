//! Reader for PyTorch checkpoints (`torch.save` state dicts) in the legacy, pre-zip format
//! that PyTorch < 1.6 wrote, as read by `_legacy_load` in `torch/serialization.py`; zip-format
//! files are handed to candle's reader. Layout of a legacy file:
//!
//! ```text
//! pickle MAGIC_NUMBER (0x1950a86a20f9469cfc6c) | pickle PROTOCOL_VERSION (1001)
//! pickle sys_info {protocol_version, little_endian, type_sizes}
//! pickle state dict — each tensor is torch._utils._rebuild_tensor_v2(
//!     persistent_id ('storage', torch.FloatStorage, key, location, numel, view_metadata),
//!     storage_offset, size, stride, requires_grad, backward_hooks)
//! pickle [storage keys, in the order their data follows]
//! per key: i64 numel (little-endian) | numel × element_size bytes
//! ```
//!
//! The pickle VM is candle-core's (`candle_core::pickle::Stack`); tensors are gathered from
//! their storage with their strides (converted TF checkpoints store many weights
//! non-contiguously) into contiguous candle tensors. Every malformed or truncated file is an
//! [`Error::ModelFile`] naming the file.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::error::candle_one_line;
use crate::{Error, Result};

const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// A tensor's place in its storage, as pickled.
struct TensorRef {
    name: String,
    storage: String,
    dtype: DType,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// Reads every tensor of the state dict in `path` (legacy or zip `torch.save` format) as
/// contiguous tensors on `device`, sorted by name.
pub fn read_state_dict(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK\x03\x04") {
        return read_zip(path, device);
    }
    let bad = |reason: String| Error::model_file(path, reason);
    let mut r = Cursor::new(bytes.as_slice());

    // Magic number: PROTO 2, LONG1 10 bytes, STOP (a 10-byte long is beyond candle's i64).
    let head = bytes.get(..15).unwrap_or_default();
    if head.len() < 15 || head[..4] != [0x80, 0x02, 0x8a, 0x0a] || head[4..14] != MAGIC {
        return Err(bad(
            "not a PyTorch checkpoint (neither the legacy torch.save magic number nor a zip file)"
                .into(),
        ));
    }
    r.set_position(15);
    let version = unpickle(&mut r)
        .map_err(|e| bad(format!("corrupt header: {e}")))?
        .int_or_long()
        .map_err(|o| bad(format!("corrupt header: protocol version is {o:?}")))?;
    if version != PROTOCOL_VERSION {
        return Err(bad(format!(
            "unsupported legacy protocol version {version} (expected {PROTOCOL_VERSION})"
        )));
    }
    let sys_info = unpickle(&mut r).map_err(|e| bad(format!("corrupt sys_info: {e}")))?;
    if let Object::Dict(items) = &sys_info {
        let little = items.iter().find_map(|(k, v)| match (k, v) {
            (Object::Unicode(k), Object::Bool(b)) if k == "little_endian" => Some(*b),
            _ => None,
        });
        if little == Some(false) {
            return Err(bad("big-endian checkpoints are not supported".into()));
        }
    }
    let root = unpickle(&mut r).map_err(|e| bad(format!("corrupt state dict pickle: {e}")))?;
    let refs = tensor_refs(root).map_err(bad)?;
    let keys = unpickle(&mut r).map_err(|e| bad(format!("corrupt storage key list: {e}")))?;
    let keys: Vec<String> = match keys {
        Object::List(k) => k
            .into_iter()
            .map(|k| k.unicode().map_err(|o| bad(format!("storage key {o:?}"))))
            .collect::<Result<_>>()?,
        other => {
            return Err(bad(format!(
                "expected the storage key list, found {other:?}"
            )));
        }
    };

    // Storage blobs follow in key order.
    let dtypes: HashMap<&str, DType> = refs.iter().map(|t| (t.storage.as_str(), t.dtype)).collect();
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    let mut pos = r.position() as usize;
    for key in &keys {
        let elem = dtypes.get(key.as_str()).map_or(1, |d| d.size_in_bytes());
        let numel = bytes
            .get(pos..pos + 8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .ok_or_else(|| bad(format!("truncated: the file ends before storage {key}")))?;
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(elem))
            .ok_or_else(|| bad(format!("storage {key} has an invalid size {numel}")))?;
        let data = bytes.get(pos + 8..pos + 8 + len).ok_or_else(|| {
            bad(format!(
                "truncated: storage {key} needs {len} bytes at offset {} but the file has {}",
                pos + 8,
                bytes.len()
            ))
        })?;
        storages.insert(key.as_str(), data);
        pos += 8 + len;
    }

    let mut tensors = refs
        .iter()
        .map(|t| {
            let data = storages.get(t.storage.as_str()).ok_or_else(|| {
                bad(format!(
                    "tensor {} refers to a missing storage {}",
                    t.name, t.storage
                ))
            })?;
            let tensor =
                gather(t, data, device).map_err(|e| bad(format!("tensor {}: {e}", t.name)))?;
            Ok((t.name.clone(), tensor))
        })
        .collect::<Result<Vec<_>>>()?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// A zip-format (`torch >= 1.6`) checkpoint: candle parses `data.pkl`, the storages are the
/// zip members it names, gathered with the same strided copy as legacy files.
fn read_zip(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let bad = |reason: String| Error::model_file(path, reason);
    let infos = candle_core::pickle::read_pth_tensor_info(path, false, None)
        .map_err(|e| bad(candle_one_line(&e)))?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("corrupt zip: {e}")))?;
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let mut data = Vec::new();
        let mut member = zip
            .by_name(&info.path)
            .map_err(|e| bad(format!("tensor {}: storage {}: {e}", info.name, info.path)))?;
        std::io::Read::read_to_end(&mut member, &mut data)
            .map_err(|e| bad(format!("tensor {}: storage {}: {e}", info.name, info.path)))?;
        let l = &info.layout;
        let t = TensorRef {
            name: info.name.clone(),
            storage: info.path.clone(),
            dtype: info.dtype,
            offset: l.start_offset() / info.dtype.size_in_bytes(),
            size: l.shape().dims().to_vec(),
            stride: l.stride().to_vec(),
        };
        let tensor =
            gather(&t, &data, device).map_err(|e| bad(format!("tensor {}: {e}", t.name)))?;
        tensors.push((info.name, tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// Runs one pickle from the cursor's position to its STOP.
fn unpickle(r: &mut Cursor<&[u8]>) -> std::result::Result<Object, String> {
    let start = r.position();
    let mut stack = Stack::empty();
    stack
        .read_loop(r)
        .and_then(|()| stack.finalize())
        .map_err(|e| {
            let msg = candle_one_line(&e);
            if msg.contains("failed to fill whole buffer") {
                format!("truncated: the file ends inside the pickle that starts at byte {start}")
            } else {
                format!("at byte {start}: {msg}")
            }
        })
}

/// The tensors of a state dict (or of its `state_dict` / `model` entry).
fn tensor_refs(root: Object) -> std::result::Result<Vec<TensorRef>, String> {
    let items = match root {
        Object::Dict(items) => items,
        Object::Build { callable, .. } if matches!(*callable, Object::Dict(_)) => {
            return tensor_refs(*callable);
        }
        other => {
            return Err(format!(
                "does not hold a state dict (a dict of tensors); found {}",
                describe(&other)
            ));
        }
    };
    let mut refs = Vec::new();
    let mut nested = None;
    for (k, v) in items {
        let Object::Unicode(name) = k else { continue };
        match tensor_ref(&name, v)? {
            Some(t) => refs.push(t),
            None if (name == "state_dict" || name == "model") => nested = Some(name),
            None => {}
        }
    }
    if refs.is_empty() {
        return Err(match nested {
            Some(n) => format!(
                "a training checkpoint: the state dict under `{n}` is nested; not supported"
            ),
            None => "does not hold a state dict: no tensors in the pickled dict".into(),
        });
    }
    Ok(refs)
}

fn describe(o: &Object) -> String {
    match o {
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => match &**callable {
            Object::Class {
                module_name,
                class_name,
            } => format!("an object of class {module_name}.{class_name}"),
            other => describe(other),
        },
        Object::Class {
            module_name,
            class_name,
        } => format!("the class {module_name}.{class_name}"),
        Object::List(_) => "a list".into(),
        Object::Tuple(_) => "a tuple".into(),
        Object::Unicode(_) => "a string".into(),
        Object::Int(_) | Object::Long(_) | Object::Float(_) | Object::Bool(_) => "a number".into(),
        _ => format!("{o:?}").chars().take(80).collect(),
    }
}

/// `Some` when `v` is a pickled tensor (`_rebuild_tensor_v2`, possibly in `_rebuild_parameter`).
fn tensor_ref(name: &str, v: Object) -> std::result::Result<Option<TensorRef>, String> {
    let Object::Reduce { callable, args } = v else {
        return Ok(None);
    };
    let Object::Class {
        module_name,
        class_name,
    } = *callable
    else {
        return Ok(None);
    };
    let args = match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => *args,
        ("torch._utils", "_rebuild_parameter") => {
            let Object::Tuple(mut a) = *args else {
                return Ok(None);
            };
            if a.is_empty() {
                return Ok(None);
            }
            return tensor_ref(name, a.remove(0));
        }
        _ => return Ok(None),
    };
    let err = |what: &str| format!("tensor {name}: malformed {what}");
    let Object::Tuple(a) = args else {
        return Err(err("arguments"));
    };
    if a.len() < 4 {
        return Err(err("arguments"));
    }
    let Object::PersistentLoad(id) = &a[0] else {
        return Err(err("storage reference"));
    };
    let Object::Tuple(id) = &**id else {
        return Err(err("storage reference"));
    };
    let (storage, dtype) = match id.as_slice() {
        [
            Object::Unicode(kind),
            Object::Class { class_name, .. },
            Object::Unicode(key),
            _,
            _,
            view,
        ] if kind == "storage" => {
            if !matches!(view, Object::None) {
                return Err(format!("tensor {name}: storage views are not supported"));
            }
            (
                key.clone(),
                storage_dtype(class_name).ok_or_else(|| {
                    format!("tensor {name}: unsupported storage type {class_name}")
                })?,
            )
        }
        _ => return Err(err("storage reference")),
    };
    let int = |o: &Object| match o {
        Object::Int(i) => usize::try_from(*i).ok(),
        Object::Long(i) => usize::try_from(*i).ok(),
        _ => None,
    };
    let dims = |o: &Object| match o {
        Object::Tuple(v) => v.iter().map(int).collect::<Option<Vec<_>>>(),
        _ => None,
    };
    let offset = int(&a[1]).ok_or_else(|| err("storage offset"))?;
    let size = dims(&a[2]).ok_or_else(|| err("size"))?;
    let stride = dims(&a[3]).ok_or_else(|| err("stride"))?;
    if size.len() != stride.len() {
        return Err(err("stride"));
    }
    Ok(Some(TensorRef {
        name: name.into(),
        storage,
        dtype,
        offset,
        size,
        stride,
    }))
}

fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "ByteStorage" => DType::U8,
        _ => return None,
    })
}

/// Copies a strided view of a storage into a contiguous tensor.
fn gather(t: &TensorRef, data: &[u8], device: &Device) -> std::result::Result<Tensor, String> {
    let elem = t.dtype.size_in_bytes();
    let numel: usize = t.size.iter().product();
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .map(|(&n, &s)| n.saturating_sub(1).saturating_mul(s))
        .fold(t.offset, usize::saturating_add);
    if numel > 0 && last.saturating_add(1).saturating_mul(elem) > data.len() {
        return Err(format!(
            "its view (offset {}, size {:?}, stride {:?}) exceeds its storage of {} elements",
            t.offset,
            t.size,
            t.stride,
            data.len() / elem
        ));
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; t.size.len()];
    for _ in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&data[at * elem..(at + 1) * elem]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor::from_raw_buffer(&out, t.dtype, &t.size, device).map_err(|e| candle_one_line(&e))
}
