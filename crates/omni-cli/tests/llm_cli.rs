//! `omni generate` and `omni chat` end to end: streaming output, JSON, stats, piped chat,
//! and one-line errors (exit code 1, no panic) for bad model files and prompts.
//!
//! Tests that need SmolLM2-135M-Instruct skip when it is absent, or fail under
//! `OMNI_REQUIRE_MODELS=1` (CI).

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn omni() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omni"))
}

fn have_smollm2() -> bool {
    common::model_dir("smollm2-135m-instruct", "").is_some()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed with exit code 1 and exactly one `error: …` line mentioning `needle`.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-llm-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A minimal GGUF v3 file: string metadata and one f32 tensor of `rows × cols`.
fn write_gguf(path: &std::path::Path, metadata: &[(&str, &str)], rows: u64, cols: u64) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        string(&mut b, k);
        b.extend_from_slice(&8u32.to_le_bytes()); // string
        string(&mut b, v);
    }
    string(&mut b, "token_embd.weight");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&cols.to_le_bytes());
    b.extend_from_slice(&rows.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // f32
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(std::iter::repeat_n(0u8, (rows * cols * 4) as usize));
    std::fs::write(path, b).unwrap();
}

#[test]
fn generate_streams_greedy_text() {
    if !have_smollm2() {
        return;
    }
    let o = omni()
        .args([
            "generate",
            "--prompt",
            "The capital of France is",
            "--temperature",
            "0",
            "-n",
            "8",
            "--stats",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), " Paris.\n\nThe United States has\n");
    let err = stderr(&o);
    assert!(
        err.contains("prefill: 5 tokens") && err.contains("tok/s"),
        "{err}"
    );
}

#[test]
fn generate_json_and_stop_strings() {
    if !have_smollm2() {
        return;
    }
    let o = omni()
        .args([
            "generate",
            "-p",
            "The capital of France is",
            "--temperature",
            "0",
            "-n",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["text"], " Paris.\n\nThe United States has");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 8);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["stats"]["prompt_tokens"], 5);
    let o = omni()
        .args([
            "generate",
            "-p",
            "The capital of France is",
            "--temperature",
            "0",
            "--stop",
            "United",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), " Paris.\n\nThe \n");
}

#[test]
fn generate_with_the_chat_template_and_sampling() {
    if !have_smollm2() {
        return;
    }
    let run = || {
        omni()
            .args([
                "generate",
                "--chat",
                "--system",
                "You are terse.",
                "-p",
                "Name a fruit.",
            ])
            .args([
                "--seed",
                "7",
                "--temperature",
                "0.9",
                "--top-k",
                "20",
                "-n",
                "12",
                "--threads",
                "1",
            ])
            .output()
            .unwrap()
    };
    let (a, b) = (run(), run());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(!stdout(&a).trim().is_empty());
    // A seed makes sampling reproducible.
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn chat_reads_piped_lines_and_resets() {
    if !have_smollm2() {
        return;
    }
    let mut child = omni()
        .args(["chat", "--temperature", "0", "-n", "16"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hi, I am Bob.\nWhat is my name?\n/reset\nHi, I am Bob.\n/exit\nnever read\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let replies: Vec<_> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(replies.len() >= 3, "{out}");
    // After /reset the same first message gets the same (greedy) reply.
    assert_eq!(replies.first(), replies.last(), "{out}");
}

#[test]
fn a_prompt_longer_than_the_context_fails_cleanly() {
    if !have_smollm2() {
        return;
    }
    let o = omni()
        .args(["generate", "-p", &"word ".repeat(30), "--ctx", "8"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "context holds 8");
}

#[test]
fn bad_model_files_fail_with_one_line() {
    let dir = scratch("bad");
    let not_gguf = dir.join("notes.gguf");
    std::fs::write(&not_gguf, "just some text").unwrap();
    let o = omni()
        .args(["generate", "-p", "hi", "--model"])
        .arg(&not_gguf)
        .output()
        .unwrap();
    assert_one_line_error(&o, "notes.gguf: not a GGUF file");

    let truncated = dir.join("cut.gguf");
    write_gguf(&truncated, &[("general.architecture", "llama")], 64, 32);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let o = omni()
        .args(["generate", "-p", "hi", "--model"])
        .arg(&truncated)
        .output()
        .unwrap();
    assert_one_line_error(&o, "cut.gguf: truncated");

    let gpt2 = dir.join("gpt2.gguf");
    write_gguf(&gpt2, &[("general.architecture", "gpt2")], 4, 32);
    let o = omni()
        .args(["chat", "--model"])
        .arg(&gpt2)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&o, "unsupported architecture `gpt2`");

    let o = omni()
        .args(["generate", "-p", "hi", "--model", "no-such-model"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "unknown model `no-such-model`");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let o = omni()
        .args(["generate", "-p", "hi", "--temperature=-1", "--model", "x"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "temperature");
    let o = omni()
        .args(["generate", "-p", "hi", "--threads", "0", "--model", "x"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "--threads");
    let missing = scratch("args").join("missing.txt");
    let o = omni()
        .args(["generate", "--prompt-file"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_one_line_error(&o, "missing.txt");
}
