//! Input files of OneLLM's non-image modalities, read into the shapes its tokenizers take:
//!
//! - point clouds: `.npy` (N × 3 or N × 6), `.xyz` / `.txt` / `.csv` (one point per line,
//!   3 or 6 numbers), `.ply` (ASCII or binary little-endian, `x y z` and optional
//!   `red green blue`); colours in 0–1 (0–255 integers are scaled), absent colours 0;
//! - IMU windows: `.npy` (6 × T or T × 6) or `.csv` (T rows of accelerometer x, y, z then
//!   gyroscope x, y, z; a header line is skipped);
//! - fMRI: `.npy` of V voxels, or R × V repetitions (averaged, as the reference does);
//! - depth maps: 16-bit or 8-bit PNG, or `.npy` (H × W), scaled to 0–1 by their maximum;
//! - videos: any file Debian's `ffmpeg` decodes, `frames` frames spread evenly over it.
//!
//! Every reader names the file and the problem: wrong shape, too few channels, NaNs.

use std::path::Path;

use crate::formats::npy::parse_npy;
use crate::{Error, Result};

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Media {
        path: path.to_path_buf(),
        reason: why.to_string(),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let array = parse_npy(&bytes).map_err(|e| bad(path, e))?;
    Ok((array.shape, array.data))
}

/// Rows of numbers from a text file (whitespace- or comma-separated; lines that do not
/// parse before the first that does are a header; `#` starts a comment).
fn read_rows(path: &Path) -> Result<Vec<Vec<f32>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let values: std::result::Result<Vec<f32>, _> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::parse::<f32>)
            .collect();
        match values {
            Ok(v) => rows.push(v),
            Err(_) if rows.is_empty() => continue,
            Err(_) => return Err(bad(path, format!("line {}: not numbers: `{line}`", i + 1))),
        }
    }
    Ok(rows)
}

fn check_finite(path: &Path, data: &[f32], what: &str) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(bad(
            path,
            format!(
                "{what} has a non-finite value ({}) at flat index {i}",
                data[i]
            ),
        )),
        None => Ok(()),
    }
}

/// A point cloud as `points` rows of x, y, z, r, g, b: clouds with more points are
/// thinned evenly, clouds with fewer repeat their points.
pub fn read_point_cloud(path: &Path, points: usize) -> Result<Vec<f32>> {
    let (n, cols, data) = match extension(path).as_str() {
        "npy" => {
            let (shape, data) = read_npy(path)?;
            match shape[..] {
                [n, c @ (3 | 6)] => (n, c, data),
                _ => {
                    return Err(bad(
                        path,
                        format!("a point cloud is N × 3 or N × 6, not {shape:?}"),
                    ));
                }
            }
        }
        "ply" => read_ply(path)?,
        _ => {
            let rows = read_rows(path)?;
            let cols = rows.first().map_or(0, Vec::len);
            if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != cols) {
                return Err(bad(
                    path,
                    format!(
                        "point {} has {} values, the first has {cols}",
                        i + 1,
                        r.len()
                    ),
                ));
            }
            if cols != 3 && cols != 6 {
                return Err(bad(
                    path,
                    format!("points have {cols} values; expected x y z or x y z r g b"),
                ));
            }
            (rows.len(), cols, rows.concat())
        }
    };
    if n == 0 {
        return Err(bad(path, "the point cloud is empty"));
    }
    check_finite(path, &data, "the point cloud")?;
    let colours_in_bytes = cols == 6
        && data
            .chunks_exact(6)
            .any(|p| p[3..].iter().any(|&c| c > 1.0));
    let mut out = Vec::with_capacity(points * 6);
    for i in 0..points {
        // Evenly spaced source rows, wrapping when the cloud is smaller.
        let j = if n >= points { i * n / points } else { i % n };
        let p = &data[j * cols..(j + 1) * cols];
        out.extend_from_slice(&p[..3]);
        match cols {
            6 if colours_in_bytes => out.extend(p[3..].iter().map(|c| c / 255.0)),
            6 => out.extend_from_slice(&p[3..]),
            _ => out.extend([0.0; 3]),
        }
    }
    Ok(out)
}

/// The vertices of a `.ply` file: (count, 3 or 6, values).
fn read_ply(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let end = bytes
        .windows(11)
        .position(|w| w == b"end_header\n")
        .ok_or_else(|| bad(path, "not a PLY file (no `end_header`)"))?;
    let header =
        std::str::from_utf8(&bytes[..end]).map_err(|_| bad(path, "non-text PLY header"))?;
    let body = &bytes[end + 11..];
    let mut lines = header.lines();
    if lines.next() != Some("ply") {
        return Err(bad(path, "not a PLY file (no `ply` magic)"));
    }
    let (mut format, mut count) = ("", 0usize);
    let mut props: Vec<(String, String)> = Vec::new();
    let mut in_vertex = false;
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["format", f, _] => format = f,
            ["element", "vertex", n] => {
                count = n.parse().map_err(|_| bad(path, "bad vertex count"))?;
                in_vertex = true;
            }
            ["element", ..] => in_vertex = false,
            ["property", "list", ..] if in_vertex => {
                return Err(bad(path, "list properties on vertices are not read"));
            }
            ["property", ty, name] if in_vertex => props.push((ty.into(), name.into())),
            _ => {}
        }
    }
    let size = |ty: &str| match ty {
        "char" | "uchar" | "int8" | "uint8" => Some(1),
        "short" | "ushort" | "int16" | "uint16" => Some(2),
        "int" | "uint" | "float" | "int32" | "uint32" | "float32" => Some(4),
        "double" | "float64" => Some(8),
        _ => None,
    };
    let index = |name: &str| props.iter().position(|(_, n)| n == name);
    let [Some(x), Some(y), Some(z)] = [index("x"), index("y"), index("z")] else {
        return Err(bad(path, "the PLY vertices have no x, y, z"));
    };
    let colour = [index("red"), index("green"), index("blue")];
    let cols = if colour.iter().all(Option::is_some) {
        6
    } else {
        3
    };
    let picks: Vec<usize> = [Some(x), Some(y), Some(z)]
        .into_iter()
        .chain(colour)
        .take(cols)
        .flatten()
        .collect();
    let mut values = vec![0f32; props.len()];
    let mut data = Vec::with_capacity(count * cols);
    match format {
        "ascii" => {
            let text = std::str::from_utf8(body).map_err(|_| bad(path, "non-text ASCII PLY"))?;
            let mut rows = text.lines().filter(|l| !l.trim().is_empty());
            for v in 0..count {
                let row = rows
                    .next()
                    .ok_or_else(|| bad(path, format!("{count} vertices declared, {v} found")))?;
                for (slot, word) in values.iter_mut().zip(row.split_whitespace()) {
                    *slot = word
                        .parse()
                        .map_err(|_| bad(path, format!("vertex {v}: `{word}` is not a number")))?;
                }
                data.extend(picks.iter().map(|&i| values[i]));
            }
        }
        "binary_little_endian" => {
            let sizes: Vec<usize> = props
                .iter()
                .map(|(ty, _)| size(ty).ok_or_else(|| bad(path, format!("PLY type `{ty}`"))))
                .collect::<Result<_>>()?;
            let stride: usize = sizes.iter().sum();
            if body.len() < count * stride {
                return Err(bad(
                    path,
                    format!("{count} vertices declared, the file is shorter"),
                ));
            }
            for vertex in body.chunks_exact(stride).take(count) {
                let mut at = 0;
                for (k, ((ty, _), n)) in props.iter().zip(&sizes).enumerate() {
                    let b = &vertex[at..at + n];
                    values[k] = match ty.as_str() {
                        "char" | "int8" => b[0] as i8 as f32,
                        "uchar" | "uint8" => b[0] as f32,
                        "short" | "int16" => i16::from_le_bytes([b[0], b[1]]) as f32,
                        "ushort" | "uint16" => u16::from_le_bytes([b[0], b[1]]) as f32,
                        "int" | "int32" => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                        "uint" | "uint32" => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                        "float" | "float32" => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                        _ => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
                    };
                    at += n;
                }
                data.extend(picks.iter().map(|&i| values[i]));
            }
        }
        other => return Err(bad(path, format!("PLY format `{other}` is not read"))),
    }
    Ok((count, cols, data))
}

/// An IMU window `(6, samples)`: channels accelerometer x, y, z then gyroscope x, y, z;
/// longer recordings are cut, shorter ones zero-padded (as the reference's `padIMU`).
pub fn read_imu(path: &Path, samples: usize) -> Result<Vec<f32>> {
    // Time-major rows of 6 channels.
    let (t, rows) = match extension(path).as_str() {
        "npy" => {
            let (shape, data) = read_npy(path)?;
            match shape[..] {
                [6, t] if t != 6 => {
                    let mut rows = vec![0f32; t * 6];
                    for ch in 0..6 {
                        for i in 0..t {
                            rows[i * 6 + ch] = data[ch * t + i];
                        }
                    }
                    (t, rows)
                }
                [t, 6] => (t, data),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "an IMU recording is 6 × T or T × 6 (accelerometer x, y, z, \
                             gyroscope x, y, z), not {shape:?}"
                        ),
                    ));
                }
            }
        }
        _ => {
            let rows = read_rows(path)?;
            if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != 6) {
                return Err(bad(
                    path,
                    format!(
                        "sample {} has {} channels; expected 6 (accelerometer x, y, z, \
                         gyroscope x, y, z)",
                        i + 1,
                        r.len()
                    ),
                ));
            }
            (rows.len(), rows.concat())
        }
    };
    if t == 0 {
        return Err(bad(path, "the IMU recording is empty"));
    }
    check_finite(path, &rows, "the IMU recording")?;
    let mut out = vec![0f32; 6 * samples];
    for i in 0..t.min(samples) {
        for ch in 0..6 {
            out[ch * samples + i] = rows[i * 6 + ch];
        }
    }
    Ok(out)
}

/// An fMRI voxel vector of `voxels` values (repetitions averaged).
pub fn read_fmri(path: &Path, voxels: usize) -> Result<Vec<f32>> {
    let (shape, data) = read_npy(path)?;
    let reps = match shape[..] {
        [v] if v == voxels => 1,
        [r, v] if v == voxels && r > 0 => r,
        _ => {
            return Err(bad(
                path,
                format!("fMRI data is {voxels} voxels (or R × {voxels}), not {shape:?}"),
            ));
        }
    };
    check_finite(path, &data, "the fMRI data")?;
    Ok((0..voxels)
        .map(|v| (0..reps).map(|r| data[r * voxels + v]).sum::<f32>() / reps as f32)
        .collect())
}

/// A depth map as a 0–1 grey image (nearest = largest value, as the file has it),
/// resized to `size` × `size`.
pub fn read_depth(path: &Path, size: u32) -> Result<image::GrayImage> {
    let (w, h, values) = if extension(path) == "npy" {
        let (shape, data) = read_npy(path)?;
        let [h, w] = shape[..] else {
            return Err(bad(path, format!("a depth map is H × W, not {shape:?}")));
        };
        check_finite(path, &data, "the depth map")?;
        (w as u32, h as u32, data)
    } else {
        let img = image::open(path).map_err(|e| bad(path, e))?.into_luma16();
        let (w, h) = img.dimensions();
        (w, h, img.into_raw().into_iter().map(f32::from).collect())
    };
    let max = values.iter().cloned().fold(0f32, f32::max);
    let scale = if max > 0.0 { 255.0 / max } else { 0.0 };
    let grey = image::GrayImage::from_raw(
        w,
        h,
        values
            .iter()
            .map(|v| (v.max(0.0) * scale).round() as u8)
            .collect(),
    )
    .ok_or_else(|| bad(path, "depth map size does not match its data"))?;
    Ok(image::imageops::resize(
        &grey,
        size,
        size,
        image::imageops::FilterType::Triangle,
    ))
}

/// `frames` frames spread evenly over the video at `path`, each `size` × `size` RGB,
/// decoded by the `ffmpeg` program (Debian: `apt-get install ffmpeg`).
pub fn read_video(path: &Path, frames: usize, size: u32) -> Result<Vec<image::RgbImage>> {
    if !path.is_file() {
        return Err(bad(path, "no such file"));
    }
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", &format!("scale={size}:{size}:flags=bilinear")])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .output()
        .map_err(|e| {
            bad(
                path,
                format!("cannot run ffmpeg ({e}); install it (Debian: apt-get install ffmpeg)"),
            )
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("").trim();
        return Err(bad(
            path,
            format!("ffmpeg cannot decode it as video: {why}"),
        ));
    }
    let frame_bytes = (size * size * 3) as usize;
    let decoded = out.stdout.len() / frame_bytes.max(1);
    if decoded == 0 {
        return Err(bad(path, "no video frames in it"));
    }
    Ok((0..frames)
        .map(|i| {
            let k = ((2 * i + 1) * decoded / (2 * frames)).min(decoded - 1);
            let bytes = out.stdout[k * frame_bytes..(k + 1) * frame_bytes].to_vec();
            image::RgbImage::from_raw(size, size, bytes).unwrap_or_default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("omni-readers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn point_clouds_from_text_and_ply() {
        let xyz = temp("a.xyz", b"# x y z\n0 0 0\n1 2 3\n");
        let p = read_point_cloud(&xyz, 4).unwrap();
        assert_eq!(p.len(), 24);
        assert_eq!(&p[6..12], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]);
        let ply = temp(
            "a.ply",
            b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n\
              property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n\
              end_header\n0 0 0 255 0 0\n1 1 1 0 0 255\n",
        );
        let p = read_point_cloud(&ply, 2).unwrap();
        assert_eq!(
            p,
            vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
        );
        let mut bin = b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n\
                        property float x\nproperty float y\nproperty float z\nend_header\n"
            .to_vec();
        for v in [1.5f32, -2.0, 0.25] {
            bin.extend_from_slice(&v.to_le_bytes());
        }
        let p = read_point_cloud(&temp("b.ply", &bin), 1).unwrap();
        assert_eq!(p, vec![1.5, -2.0, 0.25, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_files_are_named() {
        let nan = temp("nan.xyz", b"0 0 0\nnan 1 1\n");
        let err = read_point_cloud(&nan, 4).unwrap_err().to_string();
        assert!(
            err.contains("nan.xyz") && err.contains("non-finite"),
            "{err}"
        );
        let imu = temp("five.csv", b"ax,ay,az,gx,gy\n1,2,3,4,5\n");
        let err = read_imu(&imu, 10).unwrap_err().to_string();
        assert!(
            err.contains("five.csv") && err.contains("5 channels"),
            "{err}"
        );
        let two = temp("two.xyz", b"0 0\n");
        assert!(
            read_point_cloud(&two, 4)
                .unwrap_err()
                .to_string()
                .contains("2 values")
        );
    }

    #[test]
    fn npy_inputs_in_either_layout() {
        use crate::formats::npy::npy_bytes;
        let fmri = temp(
            "f.npy",
            &npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 3.0, 4.0, 5.0]),
        );
        assert_eq!(read_fmri(&fmri, 3).unwrap(), vec![2.0, 3.0, 4.0]);
        let err = read_fmri(&fmri, 4).unwrap_err().to_string();
        assert!(err.contains("f.npy") && err.contains("4 voxels"), "{err}");
        let channels_first: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let imu = temp("i.npy", &npy_bytes(&[6, 2], &channels_first));
        let w = read_imu(&imu, 2).unwrap();
        assert_eq!(w, channels_first);
    }

    #[test]
    fn imu_windows_are_cut_or_padded() {
        let csv = temp("imu.csv", b"1,2,3,4,5,6\n7,8,9,10,11,12\n");
        let w = read_imu(&csv, 3).unwrap();
        // Channel-major: accelerometer x over time, then y, …
        assert_eq!(&w[0..3], &[1.0, 7.0, 0.0]);
        assert_eq!(&w[15..18], &[6.0, 12.0, 0.0]);
    }
}
