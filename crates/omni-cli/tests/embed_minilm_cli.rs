//! `omni embed text` end to end with all-MiniLM-L6-v2 (skips when the model is absent, fails
//! under `OMNI_REQUIRE_MODELS=1`).

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("run omni")
}

#[test]
fn embed_text_json_matches_the_fixture() {
    let Some(dir) = common::model_dir("all-minilm-l6-v2", "model.safetensors") else {
        return;
    };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("minilm/embeddings.json")).unwrap(),
    )
    .unwrap();
    let case = &fixture["cases"][0];
    let text = case["text"].as_str().unwrap();
    let dir = dir.to_str().unwrap();
    let out = omni(&[
        "embed",
        "text",
        "--model",
        dir,
        "--json",
        text,
        "second text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["dim"], 384);
    assert_eq!(doc["normalized"], true);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["input"], text);
    let got: Vec<f32> = serde_json::from_value(items[0]["embedding"].clone()).unwrap();
    let want: Vec<f32> = serde_json::from_value(case["embedding"].clone()).unwrap();
    let d = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-4, "max abs diff {d}");

    // Plain output: one line of 384 numbers per text.
    let out = omni(&["embed", "text", "--model", dir, "a", "b", "c"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().all(|l| l.split(' ').count() == 384));
}

#[test]
fn embed_text_with_a_bad_model_dir_is_one_clear_line() {
    let dir = common::temp_dir("embed-bad-model");
    let out = omni(&["embed", "text", "--model", dir.to_str().unwrap(), "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("config.json"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
