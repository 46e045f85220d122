//! CLIP and SigLIP against transformers on tiny random models (fixtures from
//! `scripts/make_clip_fixtures.py`), preprocessing included, and bad model directories.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use omni::encoder::{ImageTextModel, Towers};
use serde_json::Value;

fn model_dir(family: &str) -> PathBuf {
    common::fixtures().join(format!("{family}/tiny-{family}"))
}

fn reference(family: &str) -> Value {
    let path = common::fixtures().join(format!("{family}/reference.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model(family: &str) -> &'static ImageTextModel {
    static CLIP: OnceLock<ImageTextModel> = OnceLock::new();
    static SIGLIP: OnceLock<ImageTextModel> = OnceLock::new();
    let cell = if family == "clip" { &CLIP } else { &SIGLIP };
    cell.get_or_init(|| ImageTextModel::load(&model_dir(family), &Device::Cpu).unwrap())
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(ours: &Tensor, theirs: &[Vec<f32>]) -> f32 {
    let ours = ours.to_vec2::<f32>().unwrap();
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len());
            a.iter().zip(b).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn texts(r: &Value) -> Vec<String> {
    r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn photos(r: &Value, data: &Path) -> Vec<PathBuf> {
    r["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| data.join(p.as_str().unwrap()))
        .collect()
}

fn text_parity(family: &str) {
    let r = reference(family);
    let m = model(family);
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tok = match m {
        ImageTextModel::Clip(c) => c.tokenizer(),
        ImageTextModel::Siglip(s) => s.tokenizer(),
    };
    let batch = tok.encode(&refs).unwrap();
    for (i, want) in r["input_ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            &batch.ids[i][..want.len()],
            &want[..],
            "{family} text {i} ids"
        );
    }
    let ours = m.text_embeddings(&refs, false).unwrap();
    let diff = max_abs_diff(&ours, &rows(&r["text_embeds"]));
    eprintln!("{family} text embeddings: max abs diff {diff:e}");
    assert!(diff <= 1e-4, "{family} text embeddings differ by {diff}");
    // A batch equals its items one by one.
    for (i, t) in refs.iter().enumerate() {
        let one = m.text_embeddings(&[t], false).unwrap();
        let d = max_abs_diff(&one, &rows(&r["text_embeds"])[i..i + 1]);
        assert!(d <= 1e-4, "{family} text {i} alone differs by {d}");
    }
}

fn image_parity(family: &str) {
    let Some(data) = common::skimage_data() else {
        return;
    };
    let r = reference(family);
    let m = model(family);
    let paths = photos(&r, &data);
    let pixels = m.processor().load_batch(&paths, &Device::Cpu).unwrap();
    let sums = pixels.sum((1, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
    for (s, want) in sums.iter().zip(r["pixel_sum"].as_array().unwrap()) {
        let want = want.as_f64().unwrap() as f32;
        assert!((s - want).abs() <= 1e-2, "{family} pixel sum {s} vs {want}");
    }
    let ours = m.image_embeddings(&pixels, false).unwrap();
    let diff = max_abs_diff(&ours, &rows(&r["image_embeds"]));
    eprintln!("{family} image embeddings: max abs diff {diff:e}");
    assert!(diff <= 1e-4, "{family} image embeddings differ by {diff}");
    for (i, p) in paths.iter().enumerate() {
        let one = m.embed_image_files(&[p], false).unwrap();
        let d = max_abs_diff(&one, &rows(&r["image_embeds"])[i..i + 1]);
        assert!(d <= 1e-4, "{family} image {i} alone differs by {d}");
    }
    // logits_per_image = exp(scale) * cos(image, text) + bias
    let (scale, bias) = m.logit_params();
    assert!((scale - r["logit_scale"].as_f64().unwrap() as f32).abs() < 1e-6);
    if let Some(b) = r["logit_bias"].as_f64() {
        assert!((bias - b as f32).abs() < 1e-6);
    }
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = m.text_embeddings(&refs, true).unwrap();
    let i = m.image_embeddings(&pixels, true).unwrap();
    let logits = ((i.matmul(&t.t().unwrap()).unwrap() * f64::from(scale.exp())).unwrap()
        + f64::from(bias))
    .unwrap();
    let diff = max_abs_diff(&logits, &rows(&r["logits_per_image"]));
    assert!(diff <= 1e-4, "{family} logits differ by {diff}");
}

#[test]
fn clip_text_matches_transformers() {
    text_parity("clip");
}

#[test]
fn clip_image_matches_transformers() {
    image_parity("clip");
}

#[test]
fn siglip_text_matches_transformers() {
    text_parity("siglip");
}

#[test]
fn siglip_image_matches_transformers() {
    image_parity("siglip");
}

// ---- model directories that do not hold together: one clear error ----

/// A copy of the tiny CLIP directory with `edit` applied to its config.json.
#[test]
fn one_tower_loads_embed_the_same_and_refuse_the_other_tower() {
    for family in ["clip", "siglip"] {
        let both = model(family);
        let dir = model_dir(family);
        let texts = ["a photo of a cat", "two dogs"];
        let text_only = ImageTextModel::load_towers(&dir, &Device::Cpu, Towers::Text).unwrap();
        let want = both.text_embeddings(&texts, false).unwrap();
        let got = text_only.text_embeddings(&texts, false).unwrap();
        assert_eq!(
            max_abs_diff(&got, &want.to_vec2().unwrap()),
            0.0,
            "{family}"
        );

        let image_only = ImageTextModel::load_towers(&dir, &Device::Cpu, Towers::Image).unwrap();
        let size = match &image_only {
            ImageTextModel::Clip(m) => m.config().vision_config.image_size,
            ImageTextModel::Siglip(m) => m.config().vision_config.image_size,
        };
        let pixels = Tensor::rand(-1f32, 1.0, (2, 3, size, size), &Device::Cpu).unwrap();
        let want = both.image_embeddings(&pixels, false).unwrap();
        let got = image_only.image_embeddings(&pixels, false).unwrap();
        assert_eq!(
            max_abs_diff(&got, &want.to_vec2().unwrap()),
            0.0,
            "{family}"
        );

        let err = image_only.text_embeddings(&texts, false).unwrap_err();
        assert!(err.to_string().contains("without its text tower"), "{err}");
        let err = text_only.image_embeddings(&pixels, false).unwrap_err();
        assert!(err.to_string().contains("without its image tower"), "{err}");
    }
}

fn edited_clip(tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let src = model_dir("clip");
    let dir = common::temp_dir(&format!("clip-{tag}"));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let err = ImageTextModel::load(dir, &Device::Cpu).expect_err("must be refused");
    err.to_string()
}

#[test]
fn tokenizer_larger_than_the_vocabulary_is_refused() {
    let dir = edited_clip("vocab", |c| c["text_config"]["vocab_size"] = 100.into());
    let msg = load_error(&dir);
    assert!(msg.contains("tokenizer.json"), "{msg}");
    assert!(msg.contains("vocab_size is 100"), "{msg}");
}

#[test]
fn dims_that_do_not_match_the_weights_are_refused() {
    let dir = edited_clip("dims", |c| c["vision_config"]["hidden_size"] = 64.into());
    let msg = load_error(&dir);
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("shape mismatch"), "{msg}");

    let dir = edited_clip("proj", |c| c["projection_dim"] = 16.into());
    let msg = load_error(&dir);
    assert!(msg.contains("projection"), "{msg}");
}

#[test]
fn preprocessing_that_does_not_fit_the_tower_is_refused() {
    let dir = edited_clip("size", |c| c["vision_config"]["image_size"] = 33.into());
    let msg = load_error(&dir);
    assert!(msg.contains("preprocessor_config.json"), "{msg}");
    assert!(msg.contains("33×33"), "{msg}");
}

#[test]
fn unknown_families_and_missing_files_are_refused() {
    let dir = edited_clip("family", |c| c["model_type"] = "blip".into());
    let msg = load_error(&dir);
    assert!(msg.contains("unsupported architecture `blip`"), "{msg}");

    let dir = edited_clip("no-tokenizer", |_| {});
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let msg = load_error(&dir);
    assert!(msg.contains("tokenizer.json"), "{msg}");
}
