//! `omni bench`: omni's side of the benchmark rows runs on the real models and reports
//! rates as JSON; bad arguments fail with one clear line (skips when the models are absent,
//! fails under `OMNI_REQUIRE_MODELS=1`).

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("run omni")
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (median, best) = (
        doc["median"].as_f64().unwrap(),
        doc["best"].as_f64().unwrap(),
    );
    assert!(median > 0.0 && best >= median, "{doc}");
    doc
}

#[test]
fn text_encoder_and_preprocess_report_rates() {
    let Some(dir) = common::model_dir("all-minilm-l6-v2", "model.safetensors") else {
        return;
    };
    let texts = common::temp_dir("bench-text").join("texts.txt");
    std::fs::write(
        &texts,
        "a short text\n\nanother, longer text about rivers\nthird\n",
    )
    .unwrap();
    let (dir, texts) = (dir.to_str().unwrap(), texts.to_str().unwrap());
    let doc = report(&omni(&[
        "bench",
        "text-encoder",
        "--model",
        dir,
        "--file",
        texts,
        "--rounds",
        "2",
        "--json",
    ]));
    assert_eq!(doc["items"], 3, "blank lines are not texts");
    assert_eq!(doc["rates"].as_array().unwrap().len(), 2);
    assert_eq!(doc["unit"], "texts/s");

    let clip = common::fixtures().join("clip/tiny-clip");
    if let Some(photos) = common::skimage_data() {
        let (a, b) = (photos.join("astronaut.png"), photos.join("rocket.jpg"));
        let doc = report(&omni(&[
            "bench",
            "preprocess",
            "--model",
            clip.to_str().unwrap(),
            "--rounds",
            "1",
            "--json",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ]));
        assert_eq!(doc["items"], 2);
    }
}

#[test]
fn image_encoder_runs_a_clip_directory() {
    let clip = common::fixtures().join("clip/tiny-clip");
    let doc = report(&omni(&[
        "bench",
        "image-encoder",
        "--model",
        clip.to_str().unwrap(),
        "--batch",
        "2",
        "--rounds",
        "1",
        "--json",
    ]));
    assert_eq!(doc["unit"], "images/s");
}

#[test]
fn bad_arguments_fail_with_one_clear_line() {
    let missing = common::temp_dir("bench-bad").join("missing.txt");
    let clip = common::fixtures().join("clip/tiny-clip");
    let clip = clip.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["bench", "image-encoder", "--model", clip, "--rounds", "0"],
            "--rounds must be at least 1",
        ),
        (
            vec!["bench", "image-encoder", "--model", clip, "--batch", "0"],
            "--batch must be at least 1",
        ),
        (
            vec![
                "bench",
                "text-encoder",
                "--model",
                clip,
                "--file",
                missing.to_str().unwrap(),
            ],
            "missing.txt",
        ),
    ] {
        let out = omni(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
