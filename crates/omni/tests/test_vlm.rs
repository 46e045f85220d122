//! Vision-language checkpoints against transformers on tiny random models:
//! - LLaVA-1.5 (`LlavaForConditionalGeneration`, fixtures from
//!   `scripts/make_llava_fixtures.py`): a LLaMA decoder with its own output head, and a
//!   Qwen2 one (q/k/v biases, tied embeddings);
//! - Idefics3 / SmolVLM (`Idefics3ForConditionalGeneration` with `Idefics3Processor`,
//!   fixtures from `scripts/make_idefics3_fixtures.py`): image splitting, the expanded
//!   prompt, pixel values, logits and greedy tokens, with and without splitting.

mod common;

use std::path::PathBuf;

use omni::llm::Message;
use omni::modality::image::ImageSource;
use omni::tasks::idefics3::Idefics3;
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

fn check(family: &str) {
    let (model, reference) = fixture(family);
    let path = image();
    let pixels = model.pixels(&[ImageSource::File(&path)]).unwrap();
    let ours: Vec<f32> = pixels.flatten_all().unwrap().to_vec1().unwrap();
    // The CLIP preprocessing (bicubic resize, crop, normalise) as transformers does it.
    let diff = common::max_abs_diff(&ours, &common::floats(&reference["pixel_values"]));
    assert!(diff < 1e-4, "{family}: pixel values differ by {diff}");

    let prompt = ids(&reference["input_ids"]);
    let logits = model.logits(&prompt, Some(&pixels)).unwrap();
    let ours: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    let diff = common::max_abs_diff(&ours, &common::floats(&reference["logits"]));
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

fn idefics3() -> (Idefics3, Value) {
    let dir = common::fixtures().join("idefics3");
    let model = Idefics3::load(&dir.join("tiny-idefics3")).unwrap();
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    (model, serde_json::from_str(&text).unwrap())
}

#[test]
fn idefics3_matches_transformers_with_and_without_splitting() {
    let (model, reference) = idefics3();
    let image = common::fixtures().join("idefics3/wide.png");
    for case in ["split", "nosplit"] {
        let r = &reference[case];
        let text = r["text"].as_str().unwrap();
        let prompt = if case == "split" {
            model.prompt(text, &[ImageSource::File(&image)]).unwrap()
        } else {
            // The same checkpoint with `do_image_splitting: false`.
            let dir = common::temp_dir("idefics3-nosplit");
            let source = common::fixtures().join("idefics3/tiny-idefics3");
            for entry in std::fs::read_dir(&source).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
            let config = dir.join("preprocessor_config.json");
            let mut json: Value =
                serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
            json["do_image_splitting"] = false.into();
            std::fs::write(&config, json.to_string()).unwrap();
            let nosplit = Idefics3::load(&dir).unwrap();
            let prompt = nosplit.prompt(text, &[ImageSource::File(&image)]).unwrap();
            std::fs::remove_dir_all(dir).unwrap();
            prompt
        };
        let grid = (
            r["rows"].as_u64().unwrap() as usize,
            r["cols"].as_u64().unwrap() as usize,
        );
        assert_eq!(prompt.grids, [grid], "{case}");
        assert_eq!(
            prompt.input_ids,
            ids(&r["input_ids"]),
            "{case}: expanded prompt"
        );

        let pixels = prompt.pixels.unwrap();
        let ours: Vec<f32> = pixels.flatten_all().unwrap().to_vec1().unwrap();
        let diff = common::max_abs_diff(&ours, &common::floats(&r["pixel_values"]));
        assert!(diff < 1e-4, "{case}: pixel values differ by {diff}");

        let logits = model.logits(&prompt.input_ids, Some(&pixels)).unwrap();
        let ours: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let diff = common::max_abs_diff(&ours, &common::floats(&r["logits"]));
        assert!(diff <= 1e-4, "{case}: logits differ by {diff}");

        let greedy = model
            .generate_greedy(&prompt.input_ids, Some(&pixels), 8)
            .unwrap();
        assert_eq!(greedy, ids(&r["greedy"]), "{case}");
    }
}

#[test]
fn idefics3_placeholders_must_match_the_images() {
    let (model, _) = idefics3();
    let image = common::fixtures().join("idefics3/wide.png");
    let err = model
        .prompt("User:what is in the image?", &[ImageSource::File(&image)])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("0 `<image>` placeholders but 1 images"),
        "{err}"
    );
    let missing = common::fixtures().join("idefics3/absent.png");
    let err = model
        .prompt("User:<image>what?", &[ImageSource::File(&missing)])
        .unwrap_err();
    assert!(err.to_string().contains("absent.png"), "{err}");
}

/// Messages of `fixtures/vlm-chat/reference.json` (content parts) in omni's form (text
/// with `<image>` placeholders).
fn chat_messages(parts: &Value) -> Vec<Message> {
    parts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content: String = m["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| match p["type"].as_str().unwrap() {
                    "image" => "<image>",
                    _ => p["text"].as_str().unwrap(),
                })
                .collect();
            Message::new(m["role"].as_str().unwrap(), content)
        })
        .collect()
}

#[test]
fn checkpoints_render_their_chat_templates_as_transformers() {
    let text = std::fs::read_to_string(common::fixtures().join("vlm-chat/reference.json"));
    let reference: Value = serde_json::from_str(&text.unwrap()).unwrap();
    let (llava, _) = fixture("llama");
    let (idefics3, _) = idefics3();
    for (family, case) in ["llava", "idefics3"].iter().flat_map(|f| {
        reference[f]
            .as_array()
            .unwrap()
            .iter()
            .map(move |c| (*f, c))
    }) {
        let messages = chat_messages(&case["messages"]);
        let ours = match family {
            "llava" => llava.chat_text(&messages),
            _ => idefics3.chat_text(&messages),
        };
        assert_eq!(ours.unwrap(), case["text"].as_str().unwrap(), "{family}");
    }
}
