//! The LLaMA-family backbone against llama.cpp on real weights (SmolLM2-135M-Instruct,
//! GGUF Q4_1): greedy tokens, tokenization and chat templates equal llama.cpp's
//! (fixtures made by `scripts/make_llm_fixtures.py` with llama-cpp-python). Also the
//! Qwen2 family (Qwen2.5-Coder-0.5B-Instruct Q4_K_M) when present, and bad inputs.
//!
//! Tests that need weights skip when the model is absent, or fail under
//! `OMNI_REQUIRE_MODELS=1` (CI). `.ci/run` pulls Qwen2.5 besides the defaults.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use omni::Error;
use omni::llm::{
    Backbone, FinishReason, GenerateOptions, GgufFile, Llm, LoadOptions, Message, SamplingParams,
};
use omni::tasks::chat::ChatSession;
use serde_json::Value;

const SMOLLM2: &str = "smollm2-135m-instruct";
const QWEN2: &str = "qwen2.5-coder-0.5b-instruct";

fn load(name: &str) -> Option<Llm> {
    let Ok(Some(path)) = omni::models::resolve_cached(name) else {
        common::absent(&format!(
            "model {name} ({})",
            omni::models::cached_dir(name).display()
        ));
        return None;
    };
    Some(Llm::load(&path, &LoadOptions::default()).expect("the cached model loads"))
}

fn smollm2() -> Option<&'static Llm> {
    static MODEL: OnceLock<Option<Llm>> = OnceLock::new();
    MODEL.get_or_init(|| load(SMOLLM2)).as_ref()
}

fn qwen2() -> Option<&'static Llm> {
    static MODEL: OnceLock<Option<Llm>> = OnceLock::new();
    MODEL.get_or_init(|| load(QWEN2)).as_ref()
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .expect("messages")
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// The prompt of a fixture case as omni builds it, checked against llama.cpp's.
fn prompt_of(llm: &Llm, case: &Value) -> Vec<u32> {
    let name = case["name"].as_str().unwrap();
    let prompt = if let Some(text) = case["prompt"].as_str() {
        llm.tokenizer.encode(text, true, false).unwrap()
    } else {
        let rendered = llm
            .apply_chat_template(&messages(&case["messages"]), true)
            .unwrap();
        assert_eq!(
            rendered,
            case["rendered"].as_str().unwrap(),
            "{name}: chat template"
        );
        llm.tokenizer.encode(&rendered, true, true).unwrap()
    };
    assert_eq!(prompt, ids(&case["prompt_tokens"]), "{name}: prompt tokens");
    prompt
}

fn greedy(max_tokens: usize, ignore_eos: bool) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos,
        ..GenerateOptions::default()
    }
}

#[test]
fn greedy_generation_matches_llama_cpp() {
    let Some(llm) = smollm2() else { return };
    let fx = fixture("smollm2_parity.json");
    for case in fx["generation"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = prompt_of(llm, case);
        let mut cache = llm.new_cache(Some(1024));
        let mut streamed = String::new();
        let g = llm
            .generate(&mut cache, &prompt, &greedy(64, false), &mut |t| {
                streamed.push_str(t);
                true
            })
            .unwrap();
        assert_eq!(g.tokens, ids(&case["tokens"]), "{name}: tokens");
        let finish = if g.finish_reason == FinishReason::Eos {
            "eos"
        } else {
            "length"
        };
        assert_eq!(finish, case["finish"].as_str().unwrap(), "{name}: finish");
        assert_eq!(g.text, case["text"].as_str().unwrap(), "{name}: text");
        assert_eq!(streamed, g.text, "{name}: streamed text");
    }
}

#[test]
fn greedy_generation_ignoring_eos_matches_llama_cpp() {
    let Some(llm) = smollm2() else { return };
    let fx = fixture("smollm2_parity.json");
    for case in fx["generation"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = prompt_of(llm, case);
        let mut cache = llm.new_cache(Some(1024));
        let g = llm
            .generate(&mut cache, &prompt, &greedy(64, true), &mut |_| true)
            .unwrap();
        assert_eq!(
            g.tokens,
            ids(&case["tokens_ignore_eos"]),
            "{name}: 64 tokens"
        );
    }
}

fn check_tokenization(llm: &Llm, fx: &Value) {
    for case in fx["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            llm.tokenizer.encode(text, false, true).unwrap(),
            ids(&case["special"]),
            "{text:?} (special)"
        );
        assert_eq!(
            llm.tokenizer.encode(text, false, false).unwrap(),
            ids(&case["plain"]),
            "{text:?} (plain)"
        );
        // Detokenizing gives the text back (control tokens print as nothing).
        let plain = llm.tokenizer.decode(&ids(&case["plain"]));
        assert_eq!(plain, text, "{text:?} round trip");
    }
}

#[test]
fn tokenization_matches_llama_cpp() {
    let Some(llm) = smollm2() else { return };
    check_tokenization(llm, &fixture("smollm2_parity.json"));
}

#[test]
fn qwen2_tokenization_matches_llama_cpp() {
    let Some(llm) = qwen2() else { return };
    check_tokenization(llm, &fixture("qwen2_tokenization.json"));
}

#[test]
fn qwen2_chat_template_renders_like_jinja2() {
    let Some(llm) = qwen2() else { return };
    let fx = fixture("qwen2_tokenization.json");
    for case in fx["chat"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rendered = llm
            .apply_chat_template(&messages(&case["messages"]), true)
            .unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}");
        let ids_ = llm.tokenizer.encode(&rendered, true, true).unwrap();
        assert_eq!(ids_, ids(&case["prompt_tokens"]), "{name}");
    }
}

#[test]
fn a_tokenizer_json_gives_the_same_tokens() {
    let Some(llm) = smollm2() else { return };
    let json = scratch("tokenizer-json").join("tokenizer.json");
    llm.tokenizer.save_json(&json).unwrap();
    let gguf = GgufFile::open(llm.path()).unwrap();
    let from_json = omni::llm::LlmTokenizer::from_json_file(&json, &gguf.meta()).unwrap();
    let fx = fixture("smollm2_parity.json");
    for case in fx["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            from_json.encode(text, false, true).unwrap(),
            ids(&case["special"]),
            "{text:?}"
        );
        assert_eq!(from_json.decode(&ids(&case["plain"])), text, "{text:?}");
    }
    assert_eq!(from_json.eos_id(), llm.tokenizer.eos_id());
    assert!(from_json.is_eog(2) && from_json.is_eog(0));
    let bad = scratch("tokenizer-json").join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let err = omni::llm::LlmTokenizer::from_json_file(&bad, &gguf.meta())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.json"), "{err}");
}

#[test]
fn qwen2_metadata_and_text() {
    let Some(llm) = qwen2() else { return };
    let c = llm.config();
    assert_eq!(c.arch, omni::llm::Arch::Qwen2);
    assert_eq!(
        (c.hidden_size, c.n_layer, c.n_head, c.n_kv_head),
        (896, 24, 14, 2)
    );
    assert_eq!(
        (c.rope_theta, c.rope_style),
        (1_000_000.0, omni::llm::RopeStyle::Neox)
    );
    assert!(c.qkv_bias && !c.tied_embeddings);
    let text = llm
        .apply_chat_template(
            &[Message::user("What is the capital of France? One word.")],
            true,
        )
        .unwrap();
    let prompt = llm.tokenizer.encode(&text, true, true).unwrap();
    let mut cache = llm.new_cache(Some(256));
    let g = llm
        .generate(&mut cache, &prompt, &greedy(8, false), &mut |_| true)
        .unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn embeddings_in_give_the_same_logits_as_tokens_in() {
    let Some(llm) = smollm2() else { return };
    let tokens = llm
        .tokenizer
        .encode("Embeddings or tokens", true, false)
        .unwrap();
    let mut a = llm.new_cache(Some(64));
    let from_tokens = llm.model.forward(&tokens, &mut a).unwrap();
    let embeds = llm.model.embed(&tokens).unwrap();
    assert_eq!(embeds.dims(), &[tokens.len(), llm.config().hidden_size]);
    let mut b = llm.new_cache(Some(64));
    let from_embeds = llm.model.forward_embeds(&embeds, &mut b).unwrap();
    assert_eq!(from_tokens, from_embeds);
    assert_eq!(a.len(), tokens.len());
    // Wrongly shaped embeddings are refused, not a panic.
    let bad = Tensor::zeros((2, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        llm.model.forward_embeds(&bad, &mut b),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        llm.model.forward(&[u32::MAX], &mut b),
        Err(Error::InvalidInput(_))
    ));
}

/// Continuous batching: decoding three sequences of different lengths together, one
/// token each per batched step, gives each the tokens it gets alone.
#[test]
fn batched_decoding_gives_each_sequence_its_own_tokens() {
    let Some(llm) = smollm2() else { return };
    let prompts = [
        "The capital of France is",
        "1, 2, 3, 4,",
        "Once upon a time, in a small village",
    ];
    let steps = 12;
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let tokens = llm.tokenizer.encode(p, true, false).unwrap();
            let mut cache = llm.new_cache(Some(128));
            let out = llm
                .generate(&mut cache, &tokens, &greedy(steps, true), &mut |_| true)
                .unwrap();
            out.tokens
        })
        .collect();
    let mut caches: Vec<_> = prompts.iter().map(|_| llm.new_cache(Some(128))).collect();
    let mut next: Vec<u32> = prompts
        .iter()
        .zip(&mut caches)
        .map(|(p, cache)| {
            let tokens = llm.tokenizer.encode(p, true, false).unwrap();
            omni::llm::argmax(&llm.model.forward(&tokens, cache).unwrap())
        })
        .collect();
    let mut batched: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    for _ in 0..steps {
        for (seq, &t) in batched.iter_mut().zip(&next) {
            seq.push(t);
        }
        let mut refs: Vec<&mut omni::llm::KvCache> = caches.iter_mut().collect();
        let logits = llm.model.forward_batch(&next, &mut refs).unwrap();
        next = logits.iter().map(|l| omni::llm::argmax(l)).collect();
    }
    assert_eq!(batched, alone);
    // A batch and its caches must agree in number.
    let mut refs: Vec<&mut omni::llm::KvCache> = caches.iter_mut().take(1).collect();
    assert!(matches!(
        llm.model.forward_batch(&[1, 2], &mut refs),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let Some(llm) = smollm2() else { return };
    let prompt = llm
        .tokenizer
        .encode(&"word ".repeat(40), true, false)
        .unwrap();
    let mut cache = llm.new_cache(Some(16));
    let err = llm
        .generate(&mut cache, &prompt, &greedy(4, false), &mut |_| true)
        .unwrap_err();
    assert!(
        matches!(err, Error::ContextOverflow { tokens, context: 16 } if tokens == prompt.len()),
        "{err}"
    );
    // Generation stops at a full context instead of failing.
    let prompt = &prompt[..12];
    let g = llm
        .generate(&mut cache, prompt, &greedy(100, true), &mut |_| true)
        .unwrap();
    assert_eq!(g.finish_reason, FinishReason::ContextFull);
    assert_eq!(cache.len(), 16);
}

#[test]
fn stop_strings_end_generation_before_them() {
    let Some(llm) = smollm2() else { return };
    let prompt = llm
        .tokenizer
        .encode("The capital of France is", true, false)
        .unwrap();
    let mut cache = llm.new_cache(Some(256));
    // Greedy text: " Paris.\n\nThe United States has a population of ..."
    let options = GenerateOptions {
        stop: vec!["United".into()],
        ..greedy(64, false)
    };
    let g = llm
        .generate(&mut cache, &prompt, &options, &mut |_| true)
        .unwrap();
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(g.text, " Paris.\n\nThe ");
    let g = llm
        .generate(&mut cache, &prompt, &greedy(3, false), &mut |_| true)
        .unwrap();
    assert_eq!((g.finish_reason, g.tokens.len()), (FinishReason::Length, 3));
    // The cache held the prompt from the call before: only the last prompt token ran.
    assert_eq!(g.stats.prefill_tokens, 1);
}

#[test]
fn chat_session_reuses_its_cache_across_turns() {
    let Some(llm) = smollm2() else { return };
    let options = greedy(32, false);
    let mut chat = ChatSession::new(
        llm,
        Some("You are a concise assistant.".into()),
        options.clone(),
        Some(1024),
    );
    let first = chat.send("Hi! My name is Ada.", &mut |_| true).unwrap();
    assert!(!first.text.is_empty());
    let second = chat.send("What is my name?", &mut |_| true).unwrap();
    assert_eq!(chat.messages().len(), 4);
    // Only the new turn was run, not the whole conversation again.
    assert!(
        second.stats.prefill_tokens < second.stats.prompt_tokens / 2,
        "{:?}",
        second.stats
    );
    chat.reset();
    assert_eq!(chat.cached_tokens(), 0);
    let again = chat.send("Hi! My name is Ada.", &mut |_| true).unwrap();
    assert_eq!(again.tokens, first.tokens);
    // The same first turn through the one-shot task.
    let request = omni::tasks::generate::GenerateRequest {
        prompt: "Hi! My name is Ada.".into(),
        chat: true,
        system: Some("You are a concise assistant.".into()),
        context: Some(1024),
        options,
    };
    let one_shot = omni::tasks::generate::generate(llm, &request, &mut |_| true).unwrap();
    assert_eq!(one_shot.tokens, first.tokens);
}

/// Writes a small valid GGUF with the given architecture and one f32 tensor.
fn tiny_gguf(dir: &std::path::Path, name: &str, arch: &str) -> PathBuf {
    let path = dir.join(name);
    let weights = Tensor::arange(0f32, 64.0 * 32.0, &Device::Cpu)
        .unwrap()
        .reshape((64, 32))
        .unwrap();
    let t = QTensor::quantize(&weights, GgmlDType::F32).unwrap();
    let arch = gguf_file::Value::String(arch.to_string());
    let blocks = gguf_file::Value::U32(1);
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &[
            ("general.architecture", &arch),
            ("llama.block_count", &blocks),
        ],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("omni-test-llama-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_truncated_gguf_is_refused_naming_the_file() {
    let dir = scratch("truncated");
    let path = tiny_gguf(&dir, "model.gguf", "llama");
    GgufFile::open(&path).expect("the whole file opens");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Llm::load(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.gguf") && err.contains("truncated"),
        "{err}"
    );
    // Cut inside the header too.
    std::fs::write(&path, &bytes[..40]).unwrap();
    let err = Llm::load(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.gguf") && err.contains("GGUF header"),
        "{err}"
    );
}

#[test]
fn an_unsupported_architecture_is_refused_by_name() {
    let dir = scratch("gpt2");
    let path = tiny_gguf(&dir, "gpt2.gguf", "gpt2");
    let err = Llm::load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedArchitecture { arch, .. } if arch == "gpt2"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("gpt2.gguf") && msg.contains("llama"), "{msg}");
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let dir = scratch("notgguf");
    let path = dir.join("weights.gguf");
    std::fs::write(&path, "this is not a model\n").unwrap();
    let msg = Llm::load(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("weights.gguf") && msg.contains("not a GGUF file"),
        "{msg}"
    );
    std::fs::write(&path, "").unwrap();
    let msg = Llm::load(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a GGUF file"), "{msg}");
    let missing = dir.join("missing.gguf");
    let err = Llm::load(&missing, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("missing.gguf"),
        "{err}"
    );
    // A directory without a .gguf file.
    let msg = Llm::load(&scratch("empty"), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no .gguf file"), "{msg}");
}
