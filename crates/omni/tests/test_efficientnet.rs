//! EfficientNet-Lite0 against `efficientnet_lite_pytorch` on the same `.pth`, and the legacy
//! PyTorch checkpoint reader against `torch.save`.
//!
//! Fixtures come from `scripts/make_efficientnet_fixtures.py` (fixtures/efficientnet/): the
//! 224×224 uint8 crops of four scikit-image photos with the reference logits, pooled features
//! and (for the first) the 7×7×1280 feature map; small `torch.save` files for the reader.
//! Model: `efficientnet-lite0` in the omni cache; tests that need it skip when it is absent,
//! or fail under `OMNI_REQUIRE_MODELS=1` (CI).

use std::path::PathBuf;
use std::sync::OnceLock;

mod common;

use candle_core::{DType, Device, Tensor};
use omni::encoder::efficientnet::{
    EfficientNet, feature_tokens, imagenet_classes, processor::rgb_to_input,
};
use omni::formats::torch_legacy::read_state_dict;
use serde_json::Value;

const MODEL: &str = "efficientnet-lite0";
const PTH: &str = "efficientnet-lite0-57934424.pth";

fn fixtures() -> PathBuf {
    common::fixtures().join("efficientnet")
}

fn model() -> Option<&'static EfficientNet> {
    static M: OnceLock<Option<EfficientNet>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = common::model_dir(MODEL, PTH)?;
        Some(EfficientNet::load(&dir.join(PTH)).expect("load efficientnet-lite0"))
    })
    .as_ref()
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(5);
    idx
}

/// The four reference crops as network inputs `[3, 224, 224]`, with their fixture entries.
fn crops() -> Vec<(Tensor, Value)> {
    let c = json("crops.json");
    c["crops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap();
            let rgb = std::fs::read(fixtures().join(format!("crops/{name}.rgb"))).unwrap();
            (
                rgb_to_input(&rgb, 224, 224, &Device::Cpu).unwrap(),
                e.clone(),
            )
        })
        .collect()
}

#[test]
fn legacy_reader_matches_torch_save() {
    let expect = json("legacy_small.json");
    for file in ["legacy_small.pth", "zip_small.pth"] {
        let tensors = read_state_dict(&fixtures().join(file), &Device::Cpu).unwrap();
        let names: Vec<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names.len(),
            expect.as_object().unwrap().len(),
            "{file}: {names:?}"
        );
        for (name, t) in &tensors {
            let e = &expect[name.as_str()];
            let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
            assert_eq!(t.dims(), shape.as_slice(), "{file}: {name}");
            let got = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            let got = got.to_vec1::<f32>().unwrap();
            assert_eq!(got, common::floats(&e["values"]), "{file}: {name}");
        }
    }
}

#[test]
fn checkpoint_reads_as_a_state_dict() {
    let Some(dir) = common::model_dir(MODEL, PTH) else {
        return;
    };
    let tensors = read_state_dict(&dir.join(PTH), &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), 296);
    let stem = tensors
        .iter()
        .find(|(k, _)| k == "_conv_stem.weight")
        .unwrap();
    assert_eq!(stem.1.dims(), &[32, 3, 3, 3]);
    let fc = tensors.iter().find(|(k, _)| k == "_fc.weight").unwrap();
    assert_eq!(fc.1.dims(), &[1000, 1280]);
}

#[test]
fn architecture_is_read_from_the_checkpoint() {
    let Some(m) = model() else { return };
    let c = &m.config;
    assert_eq!(
        (c.stem_channels, c.head_channels, c.num_classes),
        (32, 1280, 1000)
    );
    assert_eq!(c.blocks.len(), 16);
    let strides: Vec<usize> = c.blocks.iter().map(|b| b.stride).collect();
    assert_eq!(strides, [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]);
    let kernels: Vec<usize> = c.blocks.iter().map(|b| b.kernel).collect();
    assert_eq!(kernels, [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]);
}

#[test]
fn logits_and_features_match_pytorch_batched() {
    let Some(m) = model() else { return };
    let crops = crops();
    let inputs: Vec<Tensor> = crops.iter().map(|(t, _)| t.clone()).collect();
    let out = m.forward(&Tensor::stack(&inputs, 0).unwrap()).unwrap();
    assert_eq!(out.feature_map.dims(), &[4, 1280, 7, 7]);
    let logits = out.logits.to_vec2::<f32>().unwrap();
    let pooled = out.pooled.to_vec2::<f32>().unwrap();
    for (i, (_, e)) in crops.iter().enumerate() {
        let name = e["name"].as_str().unwrap();
        let d = common::max_abs_diff(&logits[i], &common::floats(&e["logits"]));
        assert!(d <= 1e-3, "{name}: logits max abs diff {d}");
        let want: Vec<usize> = serde_json::from_value(e["top5"].clone()).unwrap();
        assert_eq!(top5(&logits[i]), want, "{name}");
        let d = common::max_abs_diff(&pooled[i], &common::floats(&e["pooled"]));
        assert!(d <= 1e-4, "{name}: pooled max abs diff {d}");
        eprintln!("{name}: top-1 {}", imagenet_classes()[want[0]].name());
    }
    // The 7×7×1280 feature map of the first crop.
    let bytes = std::fs::read(fixtures().join("feature_map.f32")).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let got = out.feature_map.get(0).unwrap().flatten_all().unwrap();
    let d = common::max_abs_diff(&got.to_vec1::<f32>().unwrap(), &want);
    assert!(d <= 1e-3, "feature map max abs diff {d}");
    let tokens = feature_tokens(&out.feature_map).unwrap();
    assert_eq!(tokens.dims(), &[4, 49, 1280]);
}

#[test]
fn one_by_one_equals_batched() {
    let Some(m) = model() else { return };
    for (input, e) in crops() {
        let out = m.forward(&input.unsqueeze(0).unwrap()).unwrap();
        let logits = out.logits.get(0).unwrap().to_vec1::<f32>().unwrap();
        let d = common::max_abs_diff(&logits, &common::floats(&e["logits"]));
        assert!(d <= 1e-3, "{}: {d}", e["name"]);
    }
}

#[test]
fn chelsea_is_a_cat() {
    let Some(m) = model() else { return };
    let (input, _) = crops().remove(0);
    let out = m.forward(&input.unsqueeze(0).unwrap()).unwrap();
    let top = top5(&out.logits.get(0).unwrap().to_vec1::<f32>().unwrap());
    let names: Vec<&str> = top.iter().map(|&i| imagenet_classes()[i].name()).collect();
    assert!(
        names[..3]
            .iter()
            .any(|n| n.contains("cat") || *n == "tabby"),
        "{names:?}"
    );
}

fn error_of(path: &std::path::Path) -> String {
    let e = EfficientNet::load(path).unwrap_err().to_string();
    eprintln!("{e}");
    assert!(!e.contains('\n'), "multi-line error: {e}");
    assert!(
        e.contains(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let e = error_of(&fixtures().join("not_state_dict.pth"));
    assert!(e.contains("state dict"), "{e}");
    let e = error_of(&fixtures().join("legacy_small.json"));
    assert!(e.contains("not a PyTorch checkpoint"), "{e}");
    // A state dict that is not an EfficientNet.
    let e = error_of(&fixtures().join("legacy_small.pth"));
    assert!(e.contains("_conv_stem.weight"), "{e}");

    let Some(dir) = common::model_dir(MODEL, PTH) else {
        return;
    };
    let bytes = std::fs::read(dir.join(PTH)).unwrap();
    let tmp = common::temp_dir("efficientnet-bad");
    // Cut in the header, in the state dict pickle, in the storage list and in the data.
    for cut in [10, 5_000, 40_000, bytes.len() / 2, bytes.len() - 1] {
        let path = tmp.join(format!("cut-{cut}.pth"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = error_of(&path);
        assert!(
            e.contains("truncated") || e.contains("corrupt") || e.contains("not a PyTorch"),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// The scikit-image photos through omni's own decoding and Pillow-exact resize, as the
/// fixture script prepares them (PIL `convert("RGB")`, short side to 256 with Python's
/// rounding, bicubic, crop 224 at `(size - 224) // 2`): every photo has the reference's
/// top-5; lossless ones match its logits within 1e-3 (~1e-5 seen). JPEGs differ by up to
/// ~0.1 in logits: the `image` crate's JPEG decoder is not libjpeg's.
#[test]
fn scikit_image_photos_through_omni_preprocessing() {
    use omni::modality::image::{AlphaMode, DecodeLimits, Filter, Kernel, ResizeTo};
    let (Some(model), Some(data)) = (model(), common::skimage_data()) else {
        return;
    };
    let photos = json("photos.json");
    let photos = photos.as_object().unwrap();
    let mut worst_exact = 0f32;
    for (name, reference) in photos {
        let path = data.join(name);
        let img =
            omni::modality::image::load_rgb_with(&path, DecodeLimits::default(), AlphaMode::Drop)
                .unwrap();
        let (w, h) = img.dimensions();
        let s = 256.0 / w.min(h) as f64;
        let (rw, rh) = (
            (w as f64 * s).round_ties_even() as u32,
            (h as f64 * s).round_ties_even() as u32,
        );
        let resized = omni::modality::image::resize(
            &img,
            ResizeTo::Exact {
                height: rh,
                width: rw,
            },
            Filter::Bicubic,
            Kernel::Pil,
        );
        let (left, top) = ((rw - 224) / 2, (rh - 224) / 2);
        let crop = image::imageops::crop_imm(&resized, left, top, 224, 224).to_image();
        let input = rgb_to_input(crop.as_raw(), 224, 224, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<f32> = model
            .forward(&input)
            .unwrap()
            .logits
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = common::floats(&reference["logits"]);
        let diff = common::max_abs_diff(&logits, &want);
        let want_top5: Vec<usize> = serde_json::from_value(reference["top5"].clone()).unwrap();
        println!(
            "{name}: max |diff| {diff:.2e}, top-5 {:?} vs {want_top5:?}",
            top5(&logits)
        );
        assert_eq!(top5(&logits), want_top5, "{name}: top-5");
        if !(name.ends_with(".jpg") || name.ends_with(".jpeg")) {
            worst_exact = worst_exact.max(diff);
            assert!(diff <= 1e-3, "{name}: logits differ by {diff}");
        }
    }
    println!("worst lossless-photo logit diff: {worst_exact:.2e}");
}
