//! NumPy's `.npy` arrays and `.npz` archives (a zip of `.npy` members): Kokoro's voice
//! packs, and point clouds, IMU recordings, fMRI vectors and depth maps. Little-endian
//! floats and integers are read (converted to `f32`); `float32` arrays are written.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// A dense array as `f32`: its shape and its values in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads every member of an `.npz` archive, in archive order, named without `.npy`.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::model_file(path, format!("not an .npz (zip) archive: {e}")))?;
    let mut arrays = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::model_file(path, format!("member {i}: {e}")))?;
        let name = member
            .name()
            .map_err(|e| Error::model_file(path, format!("member {i}: {e}")))?
            .to_string();
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| Error::model_file(path, format!("{name}: {e}")))?;
        let array =
            parse_npy(&bytes).map_err(|r| Error::model_file(path, format!("{name}: {r}")))?;
        arrays.push((name.trim_end_matches(".npy").to_string(), array));
    }
    Ok(arrays)
}

/// Parses one `.npy` file's bytes (format versions 1–3, dtype `<f4`, C order).
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic)".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "non-UTF-8 .npy header")?;
    let descr = dict_value(header, "descr").ok_or("no `descr` in the .npy header")?;
    let dtype = descr.trim_matches(['\'', '"']);
    let width = match dtype {
        "|u1" | "|i1" | "|b1" => 1,
        "<f2" | "<i2" | "<u2" => 2,
        "<f4" | "<i4" | "<u4" => 4,
        "<f8" | "<i8" | "<u8" => 8,
        _ => {
            return Err(format!(
                "dtype {descr} (little-endian floats and integers are read)"
            ));
        }
    };
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order arrays are not read".into());
    }
    let shape = parse_shape(&dict_value(header, "shape").ok_or("no `shape` in the header")?)?;
    let count: usize = shape.iter().product();
    let payload = &bytes[header_start + header_len..];
    if payload.len() != count * width {
        return Err(format!(
            "shape {shape:?} needs {} bytes of data, found {}",
            count * width,
            payload.len()
        ));
    }
    let data = payload
        .chunks_exact(width)
        .map(|b| match dtype {
            "|u1" | "|b1" => b[0] as f32,
            "|i1" => b[0] as i8 as f32,
            "<f2" => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            "<i2" => i16::from_le_bytes([b[0], b[1]]) as f32,
            "<u2" => u16::from_le_bytes([b[0], b[1]]) as f32,
            "<f4" => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            "<i4" => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            "<u4" => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            "<f8" => f64::from_le_bytes(b.try_into().unwrap_or_default()) as f32,
            "<i8" => i64::from_le_bytes(b.try_into().unwrap_or_default()) as f32,
            _ => u64::from_le_bytes(b.try_into().unwrap_or_default()) as f32,
        })
        .collect();
    Ok(NpyArray { shape, data })
}

/// The bytes of a `float32` `.npy` file (format 1.0) holding `data` in `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value(header: &str, key: &str) -> Option<String> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim().to_string())
}

/// `(510, 1, 256)` → `[510, 1, 256]`.
fn parse_shape(text: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {text}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().map_err(|_| format!("bad shape {text}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, values: &[f32]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let mut header = header.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn reads_float32_arrays() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 3), }",
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5],
        );
        let array = parse_npy(&bytes).unwrap();
        assert_eq!(array.shape, vec![2, 1, 3]);
        assert_eq!(array.data[5], 6.5);
        let scalar = parse_npy(&npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            &[7.0],
        ))
        .unwrap();
        assert_eq!((scalar.shape.len(), scalar.data[0]), (0, 7.0));
    }

    #[test]
    fn reads_other_dtypes_and_writes_what_it_reads() {
        let mut f8 = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
            &[],
        );
        f8.extend_from_slice(&2.5f64.to_le_bytes());
        assert_eq!(parse_npy(&f8).unwrap().data, vec![2.5]);
        let mut u2 = npy(
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }",
            &[],
        );
        u2.extend_from_slice(&[0x10, 0x27, 1, 0]);
        assert_eq!(parse_npy(&u2).unwrap().data, vec![10000.0, 1.0]);
        let written = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let read = parse_npy(&written).unwrap();
        assert_eq!((read.shape, read.data[5]), (vec![2, 3], 6.0));
        assert_eq!(
            parse_npy(&npy_bytes(&[3], &[0.0; 3])).unwrap().shape,
            vec![3]
        );
    }

    #[test]
    fn rejects_other_dtypes_and_truncation() {
        let c16 = npy(
            "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }",
            &[],
        );
        assert!(parse_npy(&c16).unwrap_err().contains("<c16"));
        let short = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &[1.0],
        );
        assert!(parse_npy(&short).unwrap_err().contains("needs 12 bytes"));
        assert!(parse_npy(b"PK\x03\x04 not npy").is_err());
    }
}
