//! What the integration tests share: where the real models and clips are, and what to do
//! when one is absent. Locally a test without its model says so and passes; in CI
//! (`OMNI_REQUIRE_MODELS=1`, set by `.ci/run`) an absent model or clip fails the test.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

/// The five LibriVox clips of Debian's `pocketsphinx-testdata`.
pub const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// Reports that `what` is absent: panics under `OMNI_REQUIRE_MODELS=1`, else prints SKIP.
pub fn absent(what: &str) {
    let required = std::env::var("OMNI_REQUIRE_MODELS").is_ok_and(|v| v == "1");
    assert!(!required, "{what} is absent and OMNI_REQUIRE_MODELS=1");
    eprintln!("SKIP: {what} is absent");
}

/// The cache directory of model `name` if it has been fetched (holding `marker`).
pub fn model_dir(name: &str, marker: &str) -> Option<PathBuf> {
    let home = std::env::var_os("OMNI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/omni")
        });
    let dir = home.join("models").join(name);
    if dir.join(marker).exists() {
        Some(dir)
    } else {
        absent(&format!("model {name} ({})", dir.display()));
        None
    }
}

/// The LibriVox clips, sorted by name, when all five are installed.
pub fn librivox_clips() -> Option<Vec<PathBuf>> {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(LIBRIVOX)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    clips.sort();
    if clips.len() == 5 {
        Some(clips)
    } else {
        absent(&format!(
            "the LibriVox clips in {LIBRIVOX} (apt-get install pocketsphinx-testdata)"
        ));
        None
    }
}

/// Whether the command-line tool `name` runs (sox writes the flac/ogg/mp3 test files).
pub fn tool(name: &str) -> bool {
    let ok = Command::new(name).arg("--version").output().is_ok();
    if !ok {
        absent(&format!("the `{name}` tool"));
    }
    ok
}

/// A fresh scratch directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// scikit-image's bundled photos (`skimage/data/`, scikit-image 0.26.0): `$OMNI_SKIMAGE_DATA`,
/// else `$OMNI_HOME/data/skimage` (or `~/.cache/omni/data/skimage`), else a Debian or venv
/// install. CI unpacks them from the PyPI wheel (see `.ci/run`).
pub fn skimage_data() -> Option<PathBuf> {
    let home = std::env::var_os("OMNI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/omni")
        });
    let candidates = [
        std::env::var_os("OMNI_SKIMAGE_DATA").map(PathBuf::from),
        Some(home.join("data/skimage")),
        Some(PathBuf::from("/usr/lib/python3/dist-packages/skimage/data")),
        Some(PathBuf::from(
            "/work/peers/lib/python3.11/site-packages/skimage/data",
        )),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("astronaut.png").exists() && d.join("rocket.jpg").exists());
    if found.is_none() {
        absent("the scikit-image photos (set OMNI_SKIMAGE_DATA to a skimage/data directory)");
    }
    found
}

/// Every number in a JSON value (nested arrays flattened), as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| out.extend(floats(i))),
        serde_json::Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
        other => panic!("not a number: {other}"),
    }
    out
}

/// The largest element-wise difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Exit code 1 and exactly one stderr line `error: …` naming `name` and `cause`.
pub fn assert_clear_error(out: &std::process::Output, name: &str, cause: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(name), "names {name}: {stderr}");
    assert!(lines[0].contains(cause), "says {cause}: {stderr}");
    println!("{}", lines[0]);
}

/// Peak resident memory of a running process, in MiB (Linux; 0 when unknown).
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
