//! `omni speak`, `omni voices` and `omni chat --voice`: audio files and pipes, clear
//! one-line errors on bad input, long text streamed in bounded memory, and a spoken
//! round trip through Whisper and the chat model.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{assert_clear_error, peak_rss_mib, temp_dir};

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("run omni")
}

fn kokoro_present() -> bool {
    common::model_dir("kokoro-82m", "libonnxruntime.so.1.32.0").is_some()
}

#[test]
fn speaks_to_wav_flac_pcm_and_pipes() {
    if !kokoro_present() {
        return;
    }
    let dir = temp_dir("speak-formats");
    let text = "Good morning. The train leaves at 7:45 and costs $3.50!";
    let wav = dir.join("out.wav");
    let out = omni(&["speak", text, "-o", wav.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["chunks"], 2, "{summary}");
    assert!(summary["duration"].as_f64().unwrap() > 2.0, "{summary}");
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let data = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert_eq!(data, bytes.len() - 44, "sizes patched after streaming");
    assert_eq!(data as u64, summary["audio_bytes"].as_u64().unwrap());

    let flac = dir.join("out.flac");
    let out = omni(&["speak", "A flac file.", "-o", flac.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(&flac).unwrap()[..4], b"fLaC");

    // No -o and a pipe on stdout: the audio goes to the pipe; text from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args([
            "speak", "--format", "pcm", "--voice", "nova", "--speed", "1.3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Read from standard input.")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() > 24_000 && out.stdout.len().is_multiple_of(2),
        "{}",
        out.stdout.len()
    );
    assert_ne!(&out.stdout[..4], b"RIFF");
}

#[test]
fn bad_input_gets_one_clear_line_and_no_file() {
    if !kokoro_present() {
        return;
    }
    let dir = temp_dir("speak-bad");
    let target = dir.join("never.wav");
    let o = target.to_str().unwrap();
    for (args, name, cause) in [
        (
            vec!["speak", "", "-o", o],
            "text",
            "the text to speak is empty",
        ),
        (
            vec!["speak", "   \n", "-o", o],
            "text",
            "the text to speak is empty",
        ),
        (vec!["speak", "?!… ;", "-o", o], "text", "nothing to speak"),
        (vec!["speak", "🎉👍🎉", "-o", o], "text", "nothing to speak"),
        (
            vec!["speak", "hello", "-o", o, "--voice", "af_heart"],
            "af_heart",
            "unknown voice",
        ),
        (
            vec!["speak", "hello", "-o", o, "--voice", "jf_alpha:x"],
            "jf_alpha:x",
            "bad weight",
        ),
        (
            vec!["speak", "hello", "-o", o, "--speed", "9"],
            "speed 9",
            "out of range",
        ),
        (
            vec!["speak", "hello", "-o", o, "--format", "mp3"],
            "`mp3`",
            "unsupported audio format",
        ),
    ] {
        let out = omni(&args);
        assert_clear_error(&out, name, cause);
    }
    let mp3 = dir.join("out.mp3");
    let out = omni(&["speak", "hello", "-o", mp3.to_str().unwrap()]);
    assert_clear_error(&out, "out.mp3", "--format");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "no file (nor .part) is left: {left:?}");
}

#[test]
fn missing_espeak_is_named_with_a_fix() {
    if !kokoro_present() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(["speak", "hello", "-o", "/dev/null"])
        .env("OMNI_ESPEAK", "/nonexistent/espeak-ng")
        .output()
        .unwrap();
    assert_clear_error(&out, "/nonexistent/espeak-ng", "apt install espeak-ng");
}

#[test]
fn corrupted_model_file_is_reported_not_run() {
    let Some(real) = common::model_dir("kokoro-82m", "libonnxruntime.so.1.32.0") else {
        return;
    };
    // A scratch store whose model file has the right size but wrong bytes.
    let home = temp_dir("speak-corrupt");
    let dir = home.join("models/kokoro-82m");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "kokoro-v1.0.int8.onnx" {
            let file = std::fs::File::create(dir.join(name)).unwrap();
            file.set_len(path.metadata().unwrap().len()).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, dir.join(name)).unwrap();
        }
    }
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_omni"))
            .args(args)
            .env("OMNI_HOME", &home)
            .output()
            .unwrap()
    };
    let out = run(&["speak", "hello", "-o", "/dev/null"]);
    assert_clear_error(&out, "kokoro-v1.0.int8.onnx", "Protobuf parsing failed");
    let out = run(&["models", "verify", "kokoro-82m"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn long_text_streams_in_bounded_memory() {
    if !kokoro_present() {
        return;
    }
    // ~100 kB of varied prose: hours of speech. The first audio must come out long before
    // the text could all be spoken, and memory must not grow with the text.
    let sentences = [
        "The river wound slowly through the valley, past farms and quiet villages.",
        "On the third day, the travellers reached a bridge that nobody had crossed in years.",
        "Is it safe, asked the youngest, looking at the rotten planks?",
        "Nobody answered; the wind carried the sound of bells from far away.",
    ];
    let mut text = String::new();
    while text.len() < 100_000 {
        for s in &sentences {
            text.push_str(s);
            text.push(' ');
        }
        text.push('\n');
    }
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(["speak", "--format", "pcm", "-t", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let mut stdout = child.stdout.take().unwrap();
    // Read 12 s of audio (24 kHz, 16-bit): several sentence chunks.
    let want = 24_000 * 2 * 12;
    let mut got = 0;
    let mut first_audio = None;
    let mut buf = vec![0u8; 1 << 16];
    while got < want {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "omni speak ended after {got} bytes");
        first_audio.get_or_insert(start.elapsed());
        got += n;
    }
    let elapsed = start.elapsed();
    let peak = peak_rss_mib(child.id());
    child.kill().unwrap();
    let _ = child.wait();
    let _ = writer.join();
    println!(
        "first audio after {:.2} s, 12 s of audio after {:.2} s, peak RSS {peak} MiB",
        first_audio.unwrap().as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert!(peak > 0 && peak < 1024, "peak RSS {peak} MiB");
}

#[test]
fn voices_are_listed_with_openai_names() {
    if !kokoro_present() {
        return;
    }
    let out = omni(&["voices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("jm_kumo (default)") && text.contains("alloy"),
        "{text}"
    );
    let out = omni(&["voices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["voices"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(v["openai_aliases"]["onyx"], "jm_kumo");
}

#[test]
fn voice_chat_hears_answers_and_speaks() {
    if !kokoro_present()
        || common::model_dir("whisper-base", "model.bin").is_none()
        || common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf").is_none()
    {
        return;
    }
    let dir = temp_dir("voice-chat");
    let question = dir.join("question.wav");
    let out = omni(&[
        "speak",
        "What is the capital of France?",
        "-o",
        question.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args([
            "chat",
            "--voice",
            "--reply-dir",
            dir.to_str().unwrap(),
            "--max-tokens",
            "24",
        ])
        .args(["--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = format!("/audio {}\n", question.display());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("(heard: What is the capital of France?)"),
        "{stderr}"
    );
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(!reply.trim().is_empty(), "a text reply");
    let spoken = dir.join("reply-1.wav");
    assert!(stderr.contains("(spoken:"), "{stderr}");
    assert!(
        Path::new(&spoken).metadata().unwrap().len() > 24_000,
        "reply audio written"
    );
}
