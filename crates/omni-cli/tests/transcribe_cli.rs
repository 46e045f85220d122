//! `omni transcribe`: formats, options and clear one-line errors on bad input.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use common::{assert_clear_error, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CLIP: &str = "sense_and_sensibility_01_austen_64kb-0930.wav";

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("run omni")
}

/// A valid 16-bit mono wav of a 440 Hz tone.
fn write_tone(path: &Path, seconds: f32) {
    let rate = 16_000u32;
    let n = (rate as f32 * seconds) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(2 * rate).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let v = (0.3
            * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()
            * 32767.0) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn empty_file() {
    let path = temp_dir("empty").join("empty.wav");
    std::fs::write(&path, b"").unwrap();
    assert_clear_error(
        &omni(&["transcribe", path.to_str().unwrap()]),
        "empty.wav",
        "empty",
    );
}

#[test]
fn text_file_named_wav() {
    let path = temp_dir("text").join("notes.wav");
    std::fs::write(&path, "meeting notes\n".repeat(50)).unwrap();
    assert_clear_error(
        &omni(&["transcribe", path.to_str().unwrap()]),
        "notes.wav",
        "not a recognised audio file",
    );
}

#[test]
fn corrupt_bytes() {
    let path = temp_dir("corrupt").join("corrupt.mp3");
    let noise: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&path, noise).unwrap();
    let out = omni(&["transcribe", path.to_str().unwrap()]);
    assert_clear_error(&out, "corrupt.mp3", "");
}

#[test]
fn truncated_wav() {
    let dir = temp_dir("truncated");
    let full = dir.join("full.wav");
    write_tone(&full, 2.0);
    let bytes = std::fs::read(&full).unwrap();
    let path = dir.join("truncated.wav");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_clear_error(
        &omni(&["transcribe", path.to_str().unwrap()]),
        "truncated.wav",
        "truncated",
    );
}

#[test]
fn missing_file() {
    let path = temp_dir("missing").join("missing.wav");
    assert_clear_error(
        &omni(&["transcribe", path.to_str().unwrap()]),
        "missing.wav",
        "no such file",
    );
}

#[test]
fn wrong_and_truncated_model() {
    let dir = temp_dir("model");
    let audio = dir.join("tone.wav");
    write_tone(&audio, 1.0);
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::write(wrong.join("model.bin"), "not a model").unwrap();
    let out = omni(&[
        "transcribe",
        audio.to_str().unwrap(),
        "--model",
        wrong.to_str().unwrap(),
    ]);
    assert_clear_error(&out, "model.bin", "CTranslate2");

    let out = omni(&[
        "transcribe",
        audio.to_str().unwrap(),
        "--model",
        "whisper-nonexistent",
    ]);
    assert_clear_error(&out, "whisper-nonexistent", "unknown model");

    let real = dirs_model("whisper-tiny.en");
    let Some(real) = real else { return };
    let bytes = std::fs::read(real.join("model.bin")).unwrap();
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    for f in ["tokenizer.json", "config.json"] {
        std::fs::copy(real.join(f), cut.join(f)).unwrap();
    }
    std::fs::write(cut.join("model.bin"), &bytes[..bytes.len() / 3]).unwrap();
    let out = omni(&[
        "transcribe",
        audio.to_str().unwrap(),
        "--model",
        cut.to_str().unwrap(),
    ]);
    assert_clear_error(&out, "model.bin", "truncated");
}

fn dirs_model(name: &str) -> Option<PathBuf> {
    common::model_dir(name, "model.bin")
}

fn clip() -> Option<String> {
    let path = Path::new(common::LIBRIVOX).join(CLIP);
    if path.exists() {
        Some(path.to_string_lossy().into_owned())
    } else {
        common::absent(&format!("{} (pocketsphinx-testdata)", path.display()));
        None
    }
}

#[test]
fn formats() {
    let (Some(clip), Some(_)) = (clip(), dirs_model("whisper-tiny.en")) else {
        return;
    };
    let run = |extra: &[&str]| {
        let mut args = vec![
            "transcribe",
            clip.as_str(),
            "--beam-size",
            "1",
            "--threads",
            "2",
        ];
        args.extend_from_slice(extra);
        let out = omni(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[]);
    assert_eq!(text, "He might even have been made amiable himself.\n");
    assert_eq!(run(&["--text"]), text);
    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(json["language"], "en");
    assert_eq!(
        json["text"],
        "He might even have been made amiable himself."
    );
    assert_eq!(json["segments"][0]["start"], 0.0);
    assert_eq!(json["segments"][0]["end"], 3.0);
    assert_eq!(
        run(&["--srt"]),
        "1\n00:00:00,000 --> 00:00:03,000\nHe might even have been made amiable himself.\n\n"
    );
    assert_eq!(
        run(&["--vtt"]),
        "WEBVTT\n\n00:00:00.000 --> 00:00:03.000\nHe might even have been made amiable himself.\n\n"
    );
}

#[test]
fn several_files_and_base_model() {
    let (Some(clip), Some(_)) = (clip(), dirs_model("whisper-base")) else {
        return;
    };
    let other = Path::new(common::LIBRIVOX).join("sense_and_sensibility_01_austen_64kb-0880.wav");
    let out = omni(&[
        "transcribe",
        &clip,
        other.to_str().unwrap(),
        "--model",
        "whisper-base",
        "--language",
        "en",
        "--beam-size",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].ends_with(": He might even have been made amiable himself."),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with(": He was not an ill-disposed young man."),
        "{stdout}"
    );
}

#[test]
fn conflicting_formats_are_rejected() {
    let out = omni(&["transcribe", "x.wav", "--json", "--srt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
