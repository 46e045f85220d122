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
