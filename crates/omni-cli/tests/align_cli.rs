//! Zero-shot classification, similarity and the two image→text aligners end to end:
//! ConSE (training-free) and the projector `.ci/run` trains with `omni train align`.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omni::modality::image::{Rgb, RgbImage};
use omni::train::datasets::{FASHION_MNIST_DIR, Split, fashion_mnist};

/// The aligner `.ci/run` makes (`omni train align`'s default name).
const ALIGNER: &str = "effnet-minilm-fashion";
/// Fashion-MNIST test images the evaluation tests score.
const EVAL_IMAGES: &str = "2000";

fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn conse_models() -> bool {
    common::model_dir("all-minilm-l6-v2", "model.safetensors").is_some()
        && common::model_dir("efficientnet-lite0", "").is_some()
}

/// The photos and labels of `fixtures/skimage-labels.tsv`.
fn labelled_photos(data: &Path) -> Vec<(PathBuf, String)> {
    let table = std::fs::read_to_string(common::fixtures().join("skimage-labels.tsv")).unwrap();
    table
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(file, label)| (data.join(file), label.to_string()))
        .collect()
}

/// Zero-shot top-1 on the scikit-image photos over the label set of
/// `fixtures/skimage-labels.tsv` (the number README reports), and a bad file among them is
/// reported while the others are still classified.
#[test]
fn classifies_the_scikit_image_photos() {
    let Some(data) = common::skimage_data() else {
        return;
    };
    if !conse_models() {
        return;
    }
    let photos = labelled_photos(&data);
    let labels: Vec<&str> = photos.iter().map(|(_, l)| l.as_str()).collect();
    let bad = common::temp_dir("classify").join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff truncated").unwrap();
    let mut args = vec!["classify", "--json", "--top", "1"];
    let joined = labels.join(",");
    args.extend(["--labels", &joined]);
    let paths: Vec<String> = photos
        .iter()
        .map(|(p, _)| p.display().to_string())
        .chain([bad.display().to_string()])
        .collect();
    args.extend(paths.iter().map(String::as_str));
    let out = omni(&args);
    assert_eq!(out.status.code(), Some(1), "one bad file fails the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 18 images"), "{err}");
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 18);
    assert!(items[17]["error"].as_str().unwrap().contains("broken.jpg"));
    let correct = photos
        .iter()
        .zip(&items)
        .filter(|((_, want), item)| item["labels"][0]["label"] == want.as_str())
        .count();
    eprintln!(
        "ConSE zero-shot top-1 on the photos: {correct}/{}",
        photos.len()
    );
    // Measured: 9/17 (chance: 1/17). The floor leaves room for float noise across machines.
    assert!(correct >= 8, "{correct}/{} correct", photos.len());
}

#[test]
fn similarity_ranks_the_matching_photo_first() {
    let Some(data) = common::skimage_data() else {
        return;
    };
    if !conse_models() {
        return;
    }
    let photo = |n: &str| data.join(n).display().to_string();
    let v = ok(&omni(&[
        "similarity",
        "--json",
        "a cat sleeping",
        &photo("coffee.png"),
        &photo("chelsea.png"),
        &photo("rocket.jpg"),
        "a kitten",
    ]));
    let scores: Vec<f64> = v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cosine"].as_f64().unwrap())
        .collect();
    assert_eq!(v["scores"][1]["kind"], "image");
    assert_eq!(v["scores"][3]["kind"], "text");
    assert!(scores[1] > scores[0] && scores[1] > scores[2], "{scores:?}");
    assert!(scores[3] > scores[0], "{scores:?}");
}

#[test]
fn classify_needs_two_labels() {
    let out = omni(&["classify", "x.png", "--labels", "cat"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least two labels"), "{err}");
}

/// The trained aligner beats ConSE on Fashion-MNIST's held-out test images, and classifies
/// a Fashion-MNIST test image written as a PNG through the ordinary image path.
#[test]
fn trained_aligner_beats_conse_on_fashion_mnist() {
    if !Path::new(FASHION_MNIST_DIR).is_dir() {
        common::absent("Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    }
    let Some(aligner) = common::model_dir(ALIGNER, "aligner.json") else {
        return;
    };
    if !conse_models() {
        return;
    }
    let eval = |model: &str| {
        let v = ok(&omni(&[
            "eval",
            "fashion-mnist",
            "--json",
            "--limit",
            EVAL_IMAGES,
            "--model",
            model,
        ]));
        v["scores"].clone()
    };
    let trained = eval(ALIGNER);
    let conse = eval("all-minilm-l6-v2");
    eprintln!("trained: {trained}\nConSE: {conse}");
    let top1 = |v: &serde_json::Value| v["top1"].as_f64().unwrap();
    assert!(top1(&trained) > 0.7, "{trained}");
    assert!(top1(&trained) > top1(&conse) + 0.2, "{trained} vs {conse}");
    assert!(trained["recall_at_5"].as_f64().unwrap() > 0.8, "{trained}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(aligner.join("aligner.json")).unwrap()).unwrap();
    assert!(
        info["command"]
            .as_str()
            .unwrap()
            .starts_with("omni train align")
    );

    // Test images 0 and 1 are an ankle boot and a pullover.
    let test = fashion_mnist(None, Split::Test).unwrap();
    let dir = common::temp_dir("fashion-png");
    let mut paths = Vec::new();
    for i in 0..2 {
        let path = dir.join(format!("test-{i}.png"));
        let gray = test.image(i);
        RgbImage::from_fn(28, 28, |x, y| {
            let v = gray[(y * 28 + x) as usize];
            Rgb([v, v, v])
        })
        .save(&path)
        .unwrap();
        paths.push(path.display().to_string());
    }
    let labels = omni::tasks::align::FASHION_NAMES.join(",");
    let v = ok(&omni(&[
        "classify", "--json", "--top", "1", "--model", ALIGNER, "--labels", &labels, &paths[0],
        &paths[1],
    ]));
    assert_eq!(v[0]["labels"][0]["label"], "ankle boot", "{v}");
    assert_eq!(v[1]["labels"][0]["label"], "pullover", "{v}");
}

/// A CLIP checkpoint works as a space too (tiny random weights: only the plumbing and the
/// probabilities are checked).
#[test]
fn classify_with_a_clip_checkpoint() {
    let model = common::fixtures().join("clip/tiny-clip");
    let image = common::fixtures().join("image/exif6.jpg");
    let v = ok(&omni(&[
        "classify",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--labels",
        "cat,dog,car",
        image.to_str().unwrap(),
    ]));
    let labels = v[0]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 3);
    let total: f64 = labels
        .iter()
        .map(|l| l["probability"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "{v}");
}

/// An aligner whose projector writes vectors of another width than its text model's is
/// refused by name, with both widths.
#[test]
fn an_aligner_of_the_wrong_width_is_refused() {
    if common::model_dir("all-minilm-l6-v2", "model.safetensors").is_none() {
        return;
    }
    let dir = common::temp_dir("bad-aligner");
    let aligner = dir.join("narrow");
    std::fs::create_dir_all(&aligner).unwrap();
    let weights = std::collections::HashMap::from([
        (
            "weight".to_string(),
            candle_core::Tensor::zeros(
                (100, 1280),
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .unwrap(),
        ),
        (
            "bias".to_string(),
            candle_core::Tensor::zeros(100, candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&weights, aligner.join("model.safetensors")).unwrap();
    std::fs::write(
        aligner.join("projector.json"),
        r#"{"kind": "linear", "input_dim": 1280, "output_dim": 100}"#,
    )
    .unwrap();
    let info = serde_json::json!({
        "image_model": "efficientnet-lite0", "text_model": "all-minilm-l6-v2",
        "logit_scale": 10.0, "command": "by hand",
        "recipe": {"name": "narrow", "text_model": "all-minilm-l6-v2", "train_images": 1,
                   "eval_images": 1, "image_size": 112,
                   "config": omni::train::align::AlignConfig::default()},
        "evaluation": {"images": 0, "top1": 0.0, "recall_at_1": 0.0, "recall_at_5": 0.0, "queries": 0},
    });
    std::fs::write(aligner.join("aligner.json"), info.to_string()).unwrap();
    let out = omni(&[
        "embed",
        "text",
        "--model",
        aligner.to_str().unwrap(),
        "hello",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("projector.json") && err.contains("100") && err.contains("384"),
        "{err}"
    );
}

/// `omni train align` in a scratch store: a run saves a named model, the same command
/// resumes (here: finds the run finished), and other settings under the same name are
/// refused instead of being mixed into the run.
#[test]
fn train_align_saves_resumes_and_refuses_other_settings() {
    if !Path::new(FASHION_MNIST_DIR).is_dir() {
        common::absent("Fashion-MNIST (apt-get install dataset-fashion-mnist)");
        return;
    }
    let (Some(minilm), Some(effnet)) = (
        common::model_dir("all-minilm-l6-v2", "model.safetensors"),
        common::model_dir("efficientnet-lite0", ""),
    ) else {
        return;
    };
    let home = common::temp_dir("train-home");
    std::fs::create_dir_all(home.join("models")).unwrap();
    std::os::unix::fs::symlink(&minilm, home.join("models/all-minilm-l6-v2")).unwrap();
    std::os::unix::fs::symlink(&effnet, home.join("models/efficientnet-lite0")).unwrap();
    let train = |steps: &str| {
        Command::new(env!("CARGO_BIN_EXE_omni"))
            .env("OMNI_HOME", &home)
            .env("OMNI_OFFLINE", "1")
            .args([
                "train",
                "align",
                "--name",
                "tiny",
                "--json",
                "--train-images",
                "48",
            ])
            .args([
                "--eval-images",
                "16",
                "--batch-size",
                "16",
                "--steps",
                steps,
            ])
            .output()
            .unwrap()
    };
    let first = ok(&train("4"));
    assert_eq!(first["model"], "tiny");
    let dir = home.join("models/tiny");
    for file in ["aligner.json", "projector.json", "model.safetensors"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let again = ok(&train("4"));
    assert_eq!(again["logit_scale"], first["logit_scale"]);
    let other = train("5");
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("other settings"), "{err}");
    std::fs::remove_dir_all(&home).ok();
}
