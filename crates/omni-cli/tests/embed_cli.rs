//! `omni embed image|text` end to end on the tiny CLIP and SigLIP fixtures.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::process::Command;

use serde_json::Value;

fn omni(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .unwrap()
}

fn model(family: &str) -> String {
    common::fixtures()
        .join(format!("{family}/tiny-{family}"))
        .display()
        .to_string()
}

#[test]
fn embed_text_json_is_unit_length_and_matches_transformers() {
    let out = omni(&[
        "embed",
        "text",
        "--model",
        &model("clip"),
        "--json",
        "a photo of a cat",
        "an astronaut",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["dim"], 24);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("clip/reference.json")).unwrap(),
    )
    .unwrap();
    // "a photo of a cat" is the reference's first text, "an astronaut" its third.
    for (item, r) in items.iter().zip([0, 2]) {
        let e: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let norm: f64 = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let want: Vec<f64> = reference["text_embeds"][r]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want_norm: f64 = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (a, b) in e.iter().zip(&want) {
            assert!((a - b / want_norm).abs() < 1e-4, "{a} vs {}", b / want_norm);
        }
    }
}

#[test]
fn embed_image_plain_output_has_one_line_per_file() {
    let Some(data) = common::skimage_data() else {
        return;
    };
    let files = [data.join("chelsea.png"), data.join("coffee.png")];
    let mut args = vec!["embed", "image", "--model"];
    let m = model("siglip");
    args.push(&m);
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = omni(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, name) in lines.iter().zip(&names) {
        let (input, values) = line.split_once('\t').unwrap();
        assert_eq!(input, name);
        assert_eq!(values.split(' ').count(), 32);
    }
}

#[test]
fn embed_image_bad_file_is_one_error_line() {
    let dir = common::temp_dir("embed-bad");
    let bad = dir.join("notes.png");
    std::fs::write(&bad, "not an image").unwrap();
    let out = omni(&[
        "embed",
        "image",
        "--model",
        &model("clip"),
        &bad.display().to_string(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("notes.png"), "{err}");
}
