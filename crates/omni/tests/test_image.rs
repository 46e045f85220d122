//! Image preprocessing against transformers' processors (fixtures from
//! `scripts/make_image_fixtures.py`) and bad-input handling.

mod common;

use std::path::Path;

use candle_core::Device;
use omni::modality::image::{ImageProcessor, ImageProcessorConfig, Kernel, load_rgb};
use serde_json::Value;

fn fixture() -> Value {
    let path = common::fixtures().join("image/pixels.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture script's positions: a 64-bit LCG, index = (state >> 33) % n.
fn positions(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % n as u64) as usize
        })
        .collect()
}

/// Compares omni's output on every fixture photo with the processor recorded under `key`:
/// every sampled value within one 8-bit level (1/255 before normalization).
fn check(key: &str, family: &str, kernel: Kernel) {
    let Some(data) = common::skimage_data() else {
        return;
    };
    let fx = fixture();
    let config = ImageProcessorConfig::from_file(
        &common::fixtures().join(format!("image/{family}/preprocessor_config.json")),
    )
    .unwrap();
    let config = ImageProcessorConfig { kernel, ..config };
    let (mean, std) = config.normalize.unwrap();
    let processor = ImageProcessor::new(config);
    let seed = fx["seed"].as_u64().unwrap();
    let count = fx["positions"].as_u64().unwrap() as usize;
    let mut total = 0;
    let mut exact = 0;
    for (name, entry) in fx["images"].as_object().unwrap() {
        let want = &entry[key];
        let image = processor.load(&data.join(name)).unwrap();
        let (chw, (h, w)) = processor.preprocess(&image);
        let shape: Vec<u64> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(shape, vec![3, u64::from(h), u64::from(w)], "{name} {key}");
        let plane = (h * w) as usize;
        let values = want["values"].as_array().unwrap();
        let exact_before = exact;
        for (&i, v) in positions(chw.len(), count, seed).iter().zip(values) {
            let c = i / plane;
            let ours = (f64::from(chw[i]) * f64::from(std[c]) + f64::from(mean[c])) * 255.0;
            let theirs = v.as_f64().unwrap();
            let diff = (ours - theirs).abs();
            assert!(
                diff <= 1.0 + 1e-3,
                "{name} {key}: value {i} is {ours:.3}, transformers {theirs} (> 1/255 apart)"
            );
            total += 1;
            exact += usize::from(diff < 1e-3);
        }
        if exact - exact_before < values.len() {
            eprintln!(
                "{key} {name}: {} of {} sampled values one level off",
                values.len() - (exact - exact_before),
                values.len()
            );
        }
        for c in 0..3 {
            let m = chw[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / plane as f64;
            let want_m = want["channel_mean"][c].as_f64().unwrap();
            assert!(
                (m - want_m).abs() <= 1.0 / 255.0 / f64::from(std[c]),
                "{name} {key}: channel {c} mean {m} vs {want_m}"
            );
        }
    }
    eprintln!("{key}: {exact}/{total} sampled values bit-exact, all within 1/255");
}

#[test]
fn clip_processor_matches_transformers() {
    check("clip", "clip", Kernel::Torch);
}

#[test]
fn clip_pil_processor_matches_transformers() {
    check("clip_pil", "clip", Kernel::Pil);
}

#[test]
fn siglip_processor_matches_transformers() {
    check("siglip", "siglip", Kernel::Torch);
}

#[test]
fn siglip_pil_processor_matches_transformers() {
    check("siglip_pil", "siglip", Kernel::Pil);
}

#[test]
fn exif_orientation_is_applied() {
    let fx = fixture();
    let image = load_rgb(&common::fixtures().join("image/exif6.jpg")).unwrap();
    let want = &fx["exif6"];
    let (w, h) = image.dimensions();
    assert_eq!(
        [u64::from(h), u64::from(w)],
        [
            want["size"][0].as_u64().unwrap(),
            want["size"][1].as_u64().unwrap()
        ]
    );
    let px = image.get_pixel(0, 0);
    for c in 0..3 {
        let theirs = want["top_left"][c].as_i64().unwrap();
        assert!((i64::from(px[c]) - theirs).abs() <= 2, "{px:?} vs {want}");
    }
}

#[test]
fn batch_equals_items() {
    let Some(data) = common::skimage_data() else {
        return;
    };
    let processor = ImageProcessor::new(ImageProcessorConfig::clip());
    let paths = [data.join("chelsea.png"), data.join("rocket.jpg")];
    let batch = processor.load_batch(&paths, &Device::Cpu).unwrap();
    assert_eq!(batch.dims(), &[2, 3, 224, 224]);
    for (i, p) in paths.iter().enumerate() {
        let one = processor.load_batch(&[p.as_path()], &Device::Cpu).unwrap();
        let diff = (batch.get(i).unwrap() - one.get(0).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{}", Path::new(p).display());
    }
}

// ---- bad input: one clear error naming the file, never a panic ----

/// Asserts that loading `path` fails with a media error naming it and containing `needle`.
fn refused(path: &Path, needle: &str) {
    let err = load_rgb(path).expect_err("bad input must be refused");
    let msg = err.to_string();
    assert!(
        matches!(err, omni::Error::Media { .. }),
        "{}: not a media error: {msg}",
        path.display()
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A few hundred bytes declaring a `width`×`height` RGB PNG.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes: far too little data for the declared size.
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn small_png() -> Vec<u8> {
    let mut img = image::RgbImage::new(64, 48);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([x as u8 * 4, y as u8 * 5, (x ^ y) as u8]);
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[test]
fn decompression_bomb_header_is_refused_before_allocating() {
    let dir = common::temp_dir("image-limits");
    let path = dir.join("bomb.png");
    std::fs::write(&path, png_header(30000, 30000)).unwrap();
    refused(&path, "decompression bomb");
    // The same header at a sane size decodes or fails as a corrupt file, not as a bomb.
    let path = dir.join("small-header.png");
    std::fs::write(&path, png_header(16, 16)).unwrap();
    if let Err(e) = load_rgb(&path) {
        assert!(e.to_string().contains("corrupt png"), "{e}");
    }
}

#[test]
fn truncated_and_corrupt_files_are_refused() {
    let dir = common::temp_dir("image-corrupt");
    let png = small_png();
    let path = dir.join("ok.png");
    std::fs::write(&path, &png).unwrap();
    assert_eq!(load_rgb(&path).unwrap().dimensions(), (64, 48));

    let path = dir.join("truncated.png");
    std::fs::write(&path, &png[..png.len() / 2]).unwrap();
    refused(&path, "png");

    let mut bad = png.clone();
    for b in &mut bad[60..120] {
        *b ^= 0x5a;
    }
    let path = dir.join("corrupt.png");
    std::fs::write(&path, &bad).unwrap();
    refused(&path, "png");

    let jpeg = std::fs::read(common::fixtures().join("image/exif6.jpg")).unwrap();
    let path = dir.join("truncated.jpg");
    std::fs::write(&path, &jpeg[..jpeg.len() / 3]).unwrap();
    // A truncated JPEG may decode with its missing rows grey (as PIL with
    // LOAD_TRUNCATED_IMAGES); what it must not do is panic. Cut inside the headers instead:
    let _ = load_rgb(&path);
    let path = dir.join("headers-only.jpg");
    std::fs::write(&path, &jpeg[..40]).unwrap();
    refused(&path, "jpeg");

    let path = dir.join("empty.jpg");
    std::fs::write(&path, b"").unwrap();
    refused(&path, "not a recognised image");
}

#[test]
fn non_images_and_unsupported_formats_are_refused() {
    let dir = common::temp_dir("image-unsupported");
    let path = dir.join("notes.png");
    std::fs::write(&path, "this is a text file, not a picture\n").unwrap();
    refused(&path, "not a recognised image");

    let path = dir.join("drawing.svg");
    std::fs::write(
        &path,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#,
    )
    .unwrap();
    refused(&path, "not a recognised image");

    // A little-endian TIFF header: recognised, but not a format omni reads.
    let path = dir.join("scan.tiff");
    std::fs::write(&path, b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00").unwrap();
    refused(&path, "unsupported image format");

    let missing = dir.join("missing.png");
    let err = load_rgb(&missing).unwrap_err();
    assert!(matches!(err, omni::Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.png"), "{err}");
}

#[test]
fn scikit_image_tiffs_are_refused() {
    let Some(data) = common::skimage_data() else {
        return;
    };
    for name in ["multipage.tif", "multipage_rgb.tif"] {
        refused(&data.join(name), "unsupported image format");
    }
}
