//! `omni index add|info` and `omni search`: the plumbing and errors on an index made with
//! the library, and the default MiniLM + ConSE space end to end on real photos.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::process::Command;

use omni::index::{Index, IndexOptions, Kind, NewEntry};

fn omni() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omni"))
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("omni-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn info_reports_an_index_made_by_the_library() {
    let dir = temp("index-info");
    {
        let mut index = Index::open(&dir, "test-space", 4, IndexOptions::default()).unwrap();
        let e = |path: &str, kind, v: [f32; 4]| NewEntry {
            path: path.into(),
            kind,
            hash: [0; 32],
            modified_ns: 0,
            thumbnail: None,
            snippet: None,
            vector: v.to_vec(),
        };
        index
            .add(vec![
                e("/a.png", Kind::Image, [1.0, 0.0, 0.0, 0.0]),
                e("/b.txt", Kind::Text, [0.0, 1.0, 0.0, 0.0]),
                e("/c.jpg", Kind::Image, [0.0, 0.0, 1.0, 0.0]),
            ])
            .unwrap();
    }
    let out = omni()
        .args(["index", "info", "--json", "--index"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "test-space");
    assert_eq!(v["dim"], 4);
    assert_eq!(v["entries"], 3);
    assert_eq!(v["images"], 2);
    assert_eq!(v["search"], "exact");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn search_without_an_index_says_so() {
    let dir = temp("index-none");
    let out = omni()
        .args(["search", "a red car", "--index"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("no index here"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// The default space end to end: MiniLM texts and EfficientNet-Lite0 + ConSE images, on
/// scikit-image photos; a bad file is reported and skipped.
#[test]
fn index_add_then_search_across_modalities() {
    let (Some(_), Some(_), Some(data)) = (
        common::model_dir("all-minilm-l6-v2", ""),
        common::model_dir("efficientnet-lite0", ""),
        common::skimage_data(),
    ) else {
        return;
    };
    let docs = common::temp_dir("index-docs");
    for name in ["chelsea.png", "coffee.png", "rocket.jpg", "horse.png"] {
        std::fs::copy(data.join(name), docs.join(name)).unwrap();
    }
    std::fs::write(
        docs.join("bread.txt"),
        "Bake the bread at 200 degrees for forty minutes.",
    )
    .unwrap();
    std::fs::write(docs.join("bad.png"), "not a picture").unwrap();
    let index = common::temp_dir("index-db").join("idx");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_omni"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let idx = index.to_str().unwrap();
    let report = run(&["index", "add", docs.to_str().unwrap(), "--index", idx]);
    assert!(
        report.contains("5 added") && report.contains("1 failed"),
        "{report}"
    );
    for (query, want) in [
        ("a cat", "chelsea.png"),
        ("a cup of coffee", "coffee.png"),
        ("a space rocket", "rocket.jpg"),
        ("a horse", "horse.png"),
        ("baking bread", "bread.txt"),
    ] {
        let top = run(&["search", query, "--index", idx, "-k", "1"]);
        assert!(top.contains(want), "{query}: {top}");
    }
    // Image hits carry a JPEG thumbnail made at indexing time.
    let hits: serde_json::Value = serde_json::from_str(&run(&[
        "search", "a cat", "--index", idx, "-k", "1", "--json",
    ]))
    .unwrap();
    let thumb = hits[0]["thumbnail"].as_str().unwrap();
    let (w, h) = image_size(thumb);
    assert!(w.max(h) <= 256 && w.max(h) >= 128, "{thumb}: {w}x{h}");
    let again = run(&["index", "add", docs.to_str().unwrap(), "--index", idx]);
    assert!(again.contains("5 unchanged"), "{again}");
}

fn image_size(path: &str) -> (u32, u32) {
    let image = omni::modality::image::load_rgb(std::path::Path::new(path)).unwrap();
    image.dimensions()
}
