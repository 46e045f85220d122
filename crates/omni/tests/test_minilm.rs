//! all-MiniLM-L6-v2 against sentence-transformers on the same files.
//!
//! Fixtures come from `scripts/make_minilm_fixtures.py` (fixtures/minilm/embeddings.json):
//! 20 sentences (unicode, code, empty, two longer than 256 tokens) with their token ids and
//! normalized embeddings. Model: `all-minilm-l6-v2` in the omni cache; the tests skip when it
//! is absent, or fail under `OMNI_REQUIRE_MODELS=1` (CI).

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

mod common;

use candle_core::{DType, Device, Tensor};
use omni::encoder::TextEmbedder;
use omni::encoder::bert::BertEmbedder;
use serde_json::Value;

const MODEL: &str = "all-minilm-l6-v2";
const TOL: f32 = 1e-4;

fn model() -> Option<&'static BertEmbedder> {
    static M: OnceLock<Option<BertEmbedder>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = common::model_dir(MODEL, "model.safetensors")?;
        Some(BertEmbedder::load(&dir).expect("load all-minilm-l6-v2"))
    })
    .as_ref()
}

struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let path = common::fixtures().join("minilm/embeddings.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: serde_json::from_value(c["ids"].clone()).unwrap(),
            embedding: serde_json::from_value(c["embedding"].clone()).unwrap(),
        })
        .collect()
}

#[test]
fn tokenization_matches_sentence_transformers() {
    let Some(m) = model() else { return };
    for c in cases() {
        assert_eq!(m.tokenizer.encode(&c.text).unwrap(), c.ids, "{:?}", c.text);
    }
}

#[test]
fn batched_embeddings_match_sentence_transformers() {
    let Some(m) = model() else { return };
    let cases = cases();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let got = m.embed(&texts).unwrap();
    assert_eq!(got.len(), cases.len());
    let mut worst = 0f32;
    for (g, c) in got.iter().zip(&cases) {
        assert_eq!(g.len(), 384);
        let d = common::max_abs_diff(g, &c.embedding);
        assert!(d <= TOL, "{:?}: max abs diff {d}", c.text);
        worst = worst.max(d);
    }
    eprintln!("batched: worst max abs diff {worst:e}");
}

#[test]
fn one_by_one_embeddings_match_sentence_transformers() {
    let Some(m) = model() else { return };
    let mut worst = 0f32;
    for c in cases() {
        let got = m.embed(&[c.text.as_str()]).unwrap();
        let d = common::max_abs_diff(&got[0], &c.embedding);
        assert!(d <= TOL, "{:?}: max abs diff {d}", c.text);
        worst = worst.max(d);
    }
    eprintln!("one by one: worst max abs diff {worst:e}");
}

#[test]
fn empty_batch_and_unit_norm() {
    let Some(m) = model() else { return };
    assert!(m.embed(&[]).unwrap().is_empty());
    assert_eq!(m.dim(), 384);
    let e = m.embed(&["a unit vector"]).unwrap();
    let norm: f32 = e[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
}

/// A copy of the model directory with `model.safetensors` replaced by `tensors` and
/// `config.json` edited by `edit`.
fn broken_copy(
    tag: &str,
    src: &Path,
    tensors: Option<HashMap<String, Tensor>>,
    edit: impl Fn(&mut Value),
) -> std::path::PathBuf {
    let dir = common::temp_dir(tag);
    for f in [
        "tokenizer.json",
        "sentence_bert_config.json",
        "modules.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    match tensors {
        Some(t) => candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap(),
        None => {
            std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
        }
    }
    dir
}

/// The load error for `dir` (which is removed afterwards).
fn load_err(dir: &Path) -> String {
    let e = BertEmbedder::load(dir).unwrap_err().to_string();
    std::fs::remove_dir_all(dir).ok();
    eprintln!("{e}");
    assert!(!e.contains('\n'), "multi-line error: {e}");
    e
}

#[test]
fn bad_weights_and_tokenizers_give_clear_errors() {
    if model().is_none() {
        return;
    }
    let src = common::model_dir(MODEL, "model.safetensors").unwrap();
    let original = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .expect("read weights");

    // A missing key.
    let mut t = original.clone();
    t.remove("encoder.layer.3.output.dense.weight");
    let dir = broken_copy("minilm-missing", &src, Some(t), |_| {});
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(e.contains("encoder.layer.3.output.dense.weight"), "{e}");

    // A wrong shape.
    let mut t = original.clone();
    let bad = Tensor::zeros((384, 383), DType::F32, &Device::Cpu).unwrap();
    t.insert("encoder.layer.0.attention.self.query.weight".into(), bad);
    let dir = broken_copy("minilm-shape", &src, Some(t), |_| {});
    let e = load_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );

    // A truncated file.
    let dir = broken_copy("minilm-truncated", &src, None, |_| {});
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("model.safetensors"))
        .unwrap();
    f.set_len(1_000_000).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");

    // A tokenizer whose vocabulary is not the model's.
    let dir = broken_copy("minilm-vocab", &src, None, |c| {
        c["vocab_size"] = 50000.into()
    });
    let e = load_err(&dir);
    assert!(
        e.contains("tokenizer.json") && e.contains("vocab_size"),
        "{e}"
    );
}
