//! `omni serve` as a process, end to end: the official `openai` Python client unchanged
//! (chat with text, image, audio and streaming; embeddings of texts and images;
//! transcriptions), the web page in headless Chromium (search, then a streamed chat about
//! an image), and a bounded load test (64 clients, mixed endpoints, over-limit traffic)
//! with no 5xx and bounded memory; then a clean shutdown on SIGTERM.
//!
//! Needs a Python with `openai` and `playwright` (`$OMNI_TEST_PYTHON`, else
//! `$OMNI_HOME/venv/bin/python`; `.ci/run` makes it) and Debian's `chromium`.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "sk-omni-test";

/// Kills the server if the test fails half-way.
struct Server(Child);

impl Server {
    /// Sends SIGTERM and waits (a minute at most) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Option<PathBuf> {
    let home = std::env::var_os("OMNI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/omni")
        });
    let candidate = std::env::var_os("OMNI_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import openai, playwright, httpx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(candidate)
    } else {
        common::absent(&format!(
            "a Python with openai and playwright ({}; set OMNI_TEST_PYTHON)",
            candidate.display()
        ));
        None
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../omni-server/tests/python")
        .join(name)
}

fn run_script(python: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(script(name))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "--- {name}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn serve_works_with_openai_clients_a_browser_and_under_load() {
    let models = [
        "smollm2-135m-instruct",
        "all-minilm-l6-v2",
        "efficientnet-lite0",
        "whisper-tiny.en",
    ];
    if models.iter().any(|m| common::model_dir(m, "").is_none()) {
        return;
    }
    let (Some(photos), Some(python)) = (common::skimage_data(), python()) else {
        return;
    };
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        common::absent("Debian's chromium (/usr/bin/chromium)");
        return;
    }
    let docs = common::temp_dir("serve-docs");
    for name in ["chelsea.png", "coffee.png", "rocket.jpg", "horse.png"] {
        std::fs::copy(photos.join(name), docs.join(name)).unwrap();
    }
    let index = common::temp_dir("serve-index").join("idx");
    let omni = env!("CARGO_BIN_EXE_omni");
    let added = Command::new(omni)
        .arg("index")
        .arg("add")
        .arg(&docs)
        .arg("--index")
        .arg(&index)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let mut child = Command::new(omni)
        .args([
            "serve",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--max-body-mb",
            "8",
            "--max-batch",
            "8",
            "--max-queue",
            "64",
        ])
        .arg("--index")
        .arg(&index)
        .arg("--allow-files")
        .arg(&docs)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let start = Instant::now();
    let url = loop {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the server did not start"
        );
        let line = lines
            .next()
            .expect("the server exited before listening")
            .unwrap();
        if let Some(url) = line.split("listening on ").nth(1) {
            break url.trim().to_string();
        }
    };

    let image = docs.join("chelsea.png");
    let speech = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/audio/dashwood.wav");
    run_script(
        &python,
        "openai_client.py",
        &[
            "--base-url",
            &format!("{url}/v1"),
            "--api-key",
            KEY,
            "--image",
            image.to_str().unwrap(),
            "--audio",
            speech.to_str().unwrap(),
            "--expect-word",
            "dashwood",
        ],
    );

    let shot = std::env::temp_dir().join(format!("omni-page-{}.png", std::process::id()));
    run_script(
        &python,
        "browser.py",
        &[
            "--url",
            &format!("{url}/"),
            "--api-key",
            KEY,
            "--query",
            "a cat",
            "--expect",
            "chelsea.png",
            "--image",
            image.to_str().unwrap(),
            "--screenshot",
            shot.to_str().unwrap(),
        ],
    );

    let report = run_script(
        &python,
        "load.py",
        &[
            "--base-url",
            &url,
            "--api-key",
            KEY,
            "--image",
            image.to_str().unwrap(),
            "--clients",
            "64",
            "--requests",
            "256",
            "--flood",
            "150",
            "--max-body-mb",
            "8",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["completed"], 256, "{report}");
    assert!(
        report["over_limit"]["flood"]["429"].as_u64().unwrap_or(0) > 0,
        "a flood past the queue gets 429: {report}"
    );
    let peak = common::peak_rss_mib(pid);
    assert!(peak < 4096, "the server peaked at {peak} MiB");
    eprintln!("server peak RSS: {peak} MiB");

    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
