//! LLaVA-1.5-style checkpoints against transformers' `LlavaForConditionalGeneration` on
//! tiny random models (fixtures from `scripts/make_llava_fixtures.py`): a LLaMA decoder
//! with its own output head, and a Qwen2 one (q/k/v biases, tied embeddings).

mod common;

use std::path::PathBuf;

use omni::modality::image::ImageSource;
use omni::tasks::llava::Llava;
use serde_json::Value;

fn fixture(family: &str) -> (Llava, Value) {
    let dir = common::fixtures().join("llava");
    let model = Llava::load(&dir.join(format!("tiny-llava-{family}"))).unwrap();
    let text = std::fs::read_to_string(dir.join(format!("reference-{family}.json"))).unwrap();
    (model, serde_json::from_str(&text).unwrap())
}

fn image() -> PathBuf {
    common::fixtures().join("llava/scene.png")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    match v {
        Value::Array(items) => items.iter().for_each(|i| out.extend(floats(i))),
        Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
        other => panic!("not a number: {other}"),
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(family: &str) {
    let (model, reference) = fixture(family);
    let path = image();
    let pixels = model.pixels(&[ImageSource::File(&path)]).unwrap();
    let ours: Vec<f32> = pixels.flatten_all().unwrap().to_vec1().unwrap();
    // The CLIP preprocessing (bicubic resize, crop, normalise) as transformers does it.
    let diff = max_abs_diff(&ours, &floats(&reference["pixel_values"]));
    assert!(diff < 1e-4, "{family}: pixel values differ by {diff}");

    let prompt = ids(&reference["input_ids"]);
    let logits = model.logits(&prompt, Some(&pixels)).unwrap();
    let ours: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    let diff = max_abs_diff(&ours, &floats(&reference["logits"]));
    assert!(diff <= 1e-4, "{family}: logits differ by {diff}");

    let greedy = model.generate_greedy(&prompt, Some(&pixels), 8).unwrap();
    assert_eq!(greedy, ids(&reference["greedy"]), "{family}");
}

#[test]
fn llama_llava_matches_transformers() {
    check("llama");
}

#[test]
fn qwen2_llava_matches_transformers() {
    check("qwen2");
}

#[test]
fn image_tokens_must_match_the_images() {
    let (model, reference) = fixture("llama");
    let path = image();
    let pixels = model.pixels(&[ImageSource::File(&path)]).unwrap();
    let mut prompt = ids(&reference["input_ids"]);
    prompt.remove(5);
    let err = model
        .logits(&prompt, Some(&pixels))
        .unwrap_err()
        .to_string();
    assert!(err.contains("15 image tokens"), "{err}");
    let err = model
        .logits(&ids(&reference["input_ids"]), None)
        .unwrap_err();
    assert!(err.to_string().contains("16 image tokens"), "{err}");
}
