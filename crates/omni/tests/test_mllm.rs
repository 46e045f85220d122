//! The image/audio → LLM model on the real SmolLM2, EfficientNet-Lite0 and Whisper
//! tiny.en, with freshly initialised projectors: the plumbing (placeholders, media
//! slots, context limits, sessions) and its errors. What a trained projector answers is
//! measured by `omni train mllm`'s evaluation, not here.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use omni::llm::{
    DenseLlama, GenerateOptions, GgufFile, Llm, LoadOptions, LoraConfig, Message, SamplingParams,
};
use omni::modality::image::ImageSource;
use omni::projector::{Projector, ProjectorConfig, ProjectorKind};
use omni::tasks::mllm::{
    ImageTokens, Media, MediaEncoder, MllmInfo, MllmSession, Modality, MultimodalLlm,
};

fn build(modality: Modality) -> Option<MultimodalLlm> {
    let llm_dir = common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")?;
    match &modality {
        Modality::Image { .. } => common::model_dir("efficientnet-lite0", "")?,
        Modality::Audio { .. } => common::model_dir("whisper-tiny.en", "model.bin")?,
    };
    let llm = Llm::load(&llm_dir, &LoadOptions::default()).unwrap();
    let encoder = MediaEncoder::load(&modality).unwrap();
    let config = ProjectorConfig::new(
        ProjectorKind::Mlp2xGelu,
        encoder.feature_dim(),
        llm.config().hidden_size,
    );
    let vars = VarMap::new();
    let projector = Projector::new(
        config,
        VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let info = MllmInfo {
        llm: "smollm2-135m-instruct".into(),
        modality,
        system: Some("Answer with one word.".into()),
        training: serde_json::Value::Null,
    };
    Some(MultimodalLlm::from_parts(llm, encoder, projector, None, info).unwrap())
}

fn image_model() -> Option<&'static MultimodalLlm> {
    static MODEL: OnceLock<Option<MultimodalLlm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            build(Modality::Image {
                tokens: ImageTokens::Spatial,
            })
        })
        .as_ref()
}

fn scene() -> PathBuf {
    common::fixtures().join("llava/scene.png")
}

fn options() -> GenerateOptions {
    GenerateOptions {
        max_tokens: 4,
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    }
}

#[test]
fn an_image_takes_49_positions_and_the_answer_streams() {
    let Some(model) = image_model() else { return };
    let path = scene();
    let mut streamed = String::new();
    let answer = model
        .ask(
            &Media::Image(ImageSource::File(&path)),
            "What colour is the circle?",
            None,
            &options(),
            &mut |t| {
                streamed.push_str(t);
                true
            },
        )
        .unwrap();
    assert_eq!(streamed, answer.text);
    assert!(answer.stats.prompt_tokens > 49, "{:?}", answer.stats);
    let embeds = model
        .embeddings(&Media::Image(ImageSource::File(&path)))
        .unwrap();
    assert_eq!(embeds.dims(), &[49, 576]);
}

#[test]
fn placeholders_and_media_must_match() {
    let Some(model) = image_model() else { return };
    let path = scene();
    let image = Media::Image(ImageSource::File(&path));
    let run = |messages: &[Message], media: &[Media]| {
        let mut cache = model.new_cache(Some(512));
        model
            .generate(&mut cache, messages, media, &options(), &mut |_| true)
            .unwrap_err()
            .to_string()
    };
    let err = run(&[Message::user("<image>\nWhat is it?")], &[]);
    assert!(
        err.contains("1 <image> placeholder(s) but 0 image(s)"),
        "{err}"
    );
    let err = run(&[Message::user("What is it?")], &[image]);
    assert!(
        err.contains("0 <image> placeholder(s) but 1 image(s)"),
        "{err}"
    );
    let err = run(&[Message::user("<audio>\nWhat is it?")], &[image]);
    assert!(
        err.contains("0 <image> placeholder(s) but 1 image(s)"),
        "{err}"
    );
    let samples = vec![0f32; 16_000];
    let err = run(
        &[Message::user("<audio>\nWhat?")],
        &[Media::Audio(&samples)],
    );
    assert!(err.contains("reads images, not audio"), "{err}");
}

#[test]
fn too_many_images_for_the_context_is_an_error() {
    let Some(model) = image_model() else { return };
    let path = scene();
    let media = vec![Media::Image(ImageSource::File(&path)); 3];
    let mut cache = model.new_cache(Some(120));
    let messages = [Message::user("<image><image><image>\nWhich differ?")];
    let err = model
        .generate(&mut cache, &messages, &media, &options(), &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, omni::Error::ContextOverflow { .. }), "{err}");
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_session_survives_bad_media_and_stray_placeholders() {
    let Some(model) = image_model() else { return };
    let mut session = MllmSession::new(model, options(), Some(1024));
    let bad = std::env::temp_dir().join(format!("omni-corrupt-{}.png", std::process::id()));
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = session.attach(&bad).unwrap_err().to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert_eq!(session.pending(), 0);
    let err = session.send("<image> what?", &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("placeholder"), "{err}");

    session.attach(&scene()).unwrap();
    let first = session.send("What colour?", &mut |_| true).unwrap();
    // The second turn sees the first image through the KV cache: only its new positions
    // run, and it answers as a fresh run of the whole conversation does.
    let second = session.send("And the shape?", &mut |_| true).unwrap();
    let s = second.stats;
    assert!(
        s.prefill_tokens < s.prompt_tokens - 49,
        "{} of {} positions re-run",
        s.prefill_tokens,
        s.prompt_tokens
    );
    let path = scene();
    let mut fresh = model.new_cache(Some(1024));
    let messages = [
        Message::user("<image>\nWhat colour?"),
        Message::assistant(first.text.clone()),
        Message::user("And the shape?"),
    ];
    let again = model
        .generate(
            &mut fresh,
            &messages,
            &[Media::Image(ImageSource::File(&path))],
            &options(),
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(again.tokens, second.tokens);
    assert_eq!(again.stats.prompt_tokens, s.prompt_tokens);
    std::fs::remove_file(&bad).unwrap();
    assert!(session.attach(Path::new("/no/such/image.png")).is_err());
    session.send("How many?", &mut |_| true).unwrap();
}

#[test]
fn audio_clips_become_pooled_whisper_states() {
    let Some(model) = build(Modality::Audio {
        whisper: "whisper-tiny.en".into(),
        pool: 4,
    }) else {
        return;
    };
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/audio/dashwood.wav");
    let samples = omni::modality::audio::load_mono(&clip, 16_000).unwrap();
    let seconds = samples.len() as f64 / 16_000.0;
    let embeds = model.embeddings(&Media::Audio(&samples)).unwrap();
    // 50 encoder states per second, 4 to a token.
    let expected = ((seconds * 50.0).ceil() / 4.0).ceil() as usize;
    assert!(
        embeds.dim(0).unwrap().abs_diff(expected) <= 1,
        "{:?} vs {expected}",
        embeds.dims()
    );
    let long = vec![0f32; 16_000 * 31];
    let err = model.embeddings(&Media::Audio(&long)).unwrap_err();
    assert!(err.to_string().contains("at most 30 s"), "{err}");
}

#[test]
fn spoken_sentences_are_written_with_espeak() {
    if !common::tool("espeak-ng") {
        return;
    }
    let dir = common::temp_dir("speech-synth");
    let sizes = omni::train::synth::SynthSizes { train: 3, test: 2 };
    let report = omni::train::synth::write_speech(&dir, 5, sizes, &mut || {}).unwrap();
    assert_eq!(report.images, 5);
    let test = omni::train::manifest::Manifest::read(&dir.join("test.jsonl")).unwrap();
    assert_eq!(test.records.len(), 4);
    let clip = test.records[0].audio.as_deref().unwrap();
    let samples = omni::modality::audio::load_mono(Path::new(clip), 16_000).unwrap();
    // A spoken sentence: more than a second of sound.
    assert!(samples.len() > 16_000, "{}", samples.len());
    assert_eq!(test.records[0].kind.as_deref(), Some("transcript"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Last-position logits of `tokens` through the quantized model.
fn quantized_logits(llm: &Llm, tokens: &[u32]) -> Vec<f32> {
    let mut cache = llm.new_cache(Some(64));
    let embeds = llm.model.embed_tokens(tokens).unwrap();
    llm.model.forward_hidden(&embeds, &mut cache).unwrap()
}

/// Last-position logits of `tokens` through the dense (training) model.
fn dense_logits(dense: &DenseLlama, tokens: &[u32]) -> Vec<f32> {
    let x = dense.embed_tokens(tokens).unwrap().unsqueeze(0).unwrap();
    let hidden = dense.forward_embeds(&x).unwrap().squeeze(0).unwrap();
    let last = hidden.narrow(0, tokens.len() - 1, 1).unwrap();
    dense
        .logits(&last)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Half-width of the adapter's B values: strong enough that its effect on the logits is
/// ~10× the re-quantization noise.
const B_SCALE: f32 = 0.5;

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn merged_lora_changes_the_quantized_llm_as_training_saw_it() {
    let Some(dir) = common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    else {
        return;
    };
    let path = omni::llm::find_gguf(&dir).unwrap();
    let mut llm = Llm::load(&path, &LoadOptions::default()).unwrap();
    let mut dense = {
        let mut gguf = GgufFile::open(&path).unwrap();
        DenseLlama::from_gguf(&mut gguf, llm.config().clone(), DType::F32).unwrap()
    };
    let tokens = llm
        .tokenizer
        .encode("The capital of France is", true, false)
        .unwrap();
    let d0 = dense_logits(&dense, &tokens);
    let original = quantized_logits(&llm, &tokens);

    // An adapter with non-zero B on three layer kinds of every block.
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["attn_q".into(), "attn_v".into(), "ffn_down".into()],
    };
    let vars = VarMap::new();
    dense
        .add_lora(
            &config,
            &VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu),
        )
        .unwrap();
    // The same layers merged with B = 0: re-quantized to Q8_0, unchanged otherwise.
    let zero = dense.lora_weights(&config).unwrap().unwrap();
    let mut requantized = Llm::load(&path, &LoadOptions::default()).unwrap();
    requantized.model.merge_lora(&zero).unwrap();
    let q0 = quantized_logits(&requantized, &tokens);
    let noise: Vec<f32> = q0.iter().zip(&original).map(|(a, b)| a - b).collect();
    let noise = norm(&noise);
    // Fixed pseudo-random A and B (uniform in ±scale, from an LCG): a strong adapter, so
    // its effect stands well above the re-quantization noise.
    // Variables in name order: the map's own order changes from run to run.
    let mut seed = 7u64;
    let data = vars.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    for (name, var) in named {
        let scale = if name.ends_with("lora_b") {
            B_SCALE
        } else {
            0.04
        };
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    let lora = dense.lora_weights(&config).unwrap().unwrap();
    llm.model.merge_lora(&lora).unwrap();
    let (q1, d1) = (
        quantized_logits(&llm, &tokens),
        dense_logits(&dense, &tokens),
    );

    // The adapter's effect on the logits is the same through the merged Q8_0 weights as
    // through the dense A/B path, up to re-quantization noise (measured above with B = 0).
    let dq: Vec<f32> = q1.iter().zip(&q0).map(|(a, b)| a - b).collect();
    let dd: Vec<f32> = d1.iter().zip(&d0).map(|(a, b)| a - b).collect();
    let gap: Vec<f32> = dq.iter().zip(&dd).map(|(a, b)| a - b).collect();
    let (effect, gap) = (norm(&dd), norm(&gap));
    assert!(effect > 5.0 * noise, "effect {effect}, noise {noise}");
    assert!(
        gap < 3.0 * noise,
        "merged vs dense: {gap} apart, noise {noise}"
    );

    let bad = LoraConfig {
        targets: vec!["attn_z".into()],
        ..config
    };
    let err = omni::llm::LoraWeights {
        config: bad,
        tensors: Default::default(),
    };
    assert!(llm.model.merge_lora(&err).is_err());
}
