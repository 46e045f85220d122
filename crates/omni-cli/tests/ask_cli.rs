//! `omni ask --audio`: the README's first job (Whisper transcript → SmolLM2 answer), and
//! one-line errors for bad input.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("run omni")
}

fn example_clip() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/audio/dashwood.wav")
        .to_string_lossy()
        .into_owned()
}

fn have_models() -> bool {
    common::model_dir("whisper-tiny.en", "model.bin").is_some()
        && common::model_dir("smollm2-135m-instruct", "").is_some()
}

#[test]
fn answers_from_the_transcript() {
    if !have_models() {
        return;
    }
    let clip = example_clip();
    let out = omni(&[
        "ask",
        "--audio",
        &clip,
        "Who is mentioned?",
        "--json",
        "-n",
        "48",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let transcript = json["transcript"]["text"].as_str().unwrap();
    assert!(transcript.contains("John Dashwood"), "{transcript}");
    let answer = json["answer"].as_str().unwrap();
    println!("answer: {answer}");
    assert!(!answer.is_empty());
    assert_eq!(json["question"], "Who is mentioned?");
    let tokens = json["generation"]["tokens"].as_array().unwrap().len();
    assert!((1..=48).contains(&tokens), "{tokens} tokens");

    // Greedy by default: the same question gives the same answer.
    let again = omni(&[
        "ask",
        "--audio",
        &clip,
        "Who is mentioned?",
        "--json",
        "-n",
        "48",
    ]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["answer"], json["answer"]);

    // Text output: the transcript, then the answer.
    let out = omni(&["ask", "--audio", &clip, "Who is mentioned?", "-n", "8"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Transcript: And Mr. John Dashwood"),
        "{text}"
    );
    assert!(text.contains("\nAnswer: "), "{text}");
}

fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(line.contains(needle), "`{needle}` not in: {line}");
    }
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = common::temp_dir("ask");
    let missing = dir.join("missing.wav");
    let out = omni(&["ask", "--audio", missing.to_str().unwrap(), "What?"]);
    assert_one_line_error(&out, &["missing.wav"]);

    let text = dir.join("notes.wav");
    std::fs::write(&text, "these are notes, not audio\n").unwrap();
    if common::model_dir("whisper-tiny.en", "model.bin").is_some() {
        let out = omni(&["ask", "--audio", text.to_str().unwrap(), "What?"]);
        assert_one_line_error(&out, &["notes.wav", "audio"]);
    }

    let out = omni(&["ask", "--audio", &example_clip(), "  "]);
    assert_one_line_error(&out, &["question"]);
}

/// The tiny OneLLM checkpoint of the parity fixtures (a LLaMA without a tokenizer).
fn tiny_onellm() -> String {
    common::fixtures()
        .join("onellm/tiny")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn onellm_inputs_in_the_wrong_shape_or_units_are_one_line_errors() {
    let dir = common::temp_dir("ask-onellm");
    let model = tiny_onellm();
    let ask = |flag: &str, path: &Path| {
        omni(&[
            "ask",
            flag,
            path.to_str().unwrap(),
            "--onellm",
            &model,
            "What shape is this?",
        ])
    };
    // A point cloud with a NaN coordinate.
    let nan = dir.join("nan.xyz");
    std::fs::write(&nan, "0 0 0\n1 nan 0\n0 1 0\n").unwrap();
    assert_one_line_error(&ask("--point", &nan), &["nan.xyz", "finite"]);
    // IMU readings with four channels instead of six.
    let imu = dir.join("imu.csv");
    std::fs::write(&imu, "1,2,3,4\n".repeat(50)).unwrap();
    assert_one_line_error(&ask("--imu", &imu), &["imu.csv", "6"]);
    // A depth map needs the photo it belongs to.
    let out = omni(&[
        "ask",
        "--depth",
        "d.png",
        "--onellm",
        &model,
        "Which is nearer?",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--image"));
    // A good point cloud reaches the model, whose decoder has no tokenizer to answer with.
    let cloud = dir.join("cloud.xyz");
    let rows: String = (0..96)
        .map(|i| format!("{} {} {} 0.5 0.5 0.5\n", i % 7, i % 5, i % 3))
        .collect();
    std::fs::write(&cloud, rows).unwrap();
    assert_one_line_error(&ask("--point", &cloud), &["tokenizer"]);
    let out = omni(&[
        "ask",
        "--point",
        cloud.to_str().unwrap(),
        "--onellm",
        "no-such-onellm",
        "?",
    ]);
    assert_one_line_error(&out, &["no-such-onellm", "omni train onellm"]);
}
