//! Kokoro-82M text-to-speech against the reference (fixtures by
//! `scripts/make_kokoro_fixtures.py`): audio equal to Python onnxruntime's on the same model
//! file for fixed (ids, voice, speed) triples, phonemes equal to Kokoro's own G2P (phonemizer
//! + misaki) on the same espeak-ng, and speech that omni's Whisper understands.

mod common;

use std::sync::OnceLock;

use omni::generator::speech::{Kokoro, SpeechOptions, g2p::G2p};
use omni::tasks::speak::{TEST_SENTENCES, intelligibility};
use serde_json::Value;

/// The model, loaded once for every test of this binary.
fn kokoro() -> Option<&'static Kokoro> {
    static MODEL: OnceLock<Option<Kokoro>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = common::model_dir("kokoro-82m", "libonnxruntime.so.1.32.0")?;
            Some(Kokoro::load(&dir, 2).expect("load kokoro-82m"))
        })
        .as_ref()
}

fn fixture(name: &str) -> Value {
    let path = common::fixtures().join("kokoro").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn audio_matches_onnxruntime_python() {
    let Some(kokoro) = kokoro() else { return };
    let cases = fixture("audio.json");
    for case in cases["cases"].as_array().unwrap() {
        let ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(case["style_row"].as_u64().unwrap() as usize, ids.len() - 1);
        let voice = kokoro
            .voices()
            .resolve(case["voice"].as_str().unwrap())
            .unwrap();
        let speed = case["speed"].as_f64().unwrap() as f32;
        let audio = kokoro.synthesize_ids(&ids, &voice, speed).unwrap();
        let file = common::fixtures()
            .join("kokoro")
            .join(case["file"].as_str().unwrap());
        let expected: Vec<f32> = std::fs::read(&file)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(audio.len(), expected.len(), "{}", file.display());
        let diff = common::max_abs_diff(&audio, &expected);
        assert!(diff <= 1e-5, "{}: max abs diff {diff}", file.display());
    }
}

#[test]
fn phonemes_match_kokoros_g2p() {
    if !common::tool("espeak-ng") {
        return;
    }
    let g2p = G2p::new().unwrap();
    let cases = fixture("phonemes.json");
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 30);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = case["espeak_fallback"].as_str().unwrap();
        assert_eq!(g2p.phonemize(text).unwrap(), expected, "{text}");
    }
}

#[test]
fn long_text_streams_in_sentence_chunks() {
    let Some(kokoro) = kokoro() else { return };
    let text = "First sentence here. Second one follows! And a third?";
    let chunks: Vec<_> = kokoro
        .stream(text, &SpeechOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1].text, "Second one follows!");
    assert!(chunks.iter().all(|c| c.samples.len() > 12_000));
    assert_eq!(chunks[2].done, chunks[2].total);
}

#[test]
fn input_with_nothing_to_say_is_refused() {
    let Some(kokoro) = kokoro() else { return };
    let opts = SpeechOptions::default();
    for text in ["", "   ", "?!... ;", "🎉👍"] {
        let err = kokoro.stream(text, &opts).err().expect(text).to_string();
        assert!(
            err.contains("empty") || err.contains("nothing to speak"),
            "{text}: {err}"
        );
    }
    let bad_voice = SpeechOptions {
        voice: "alloy".into(),
        ..opts.clone()
    };
    let err = kokoro
        .stream("hello", &bad_voice)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unknown voice `alloy`") && err.contains("jm_kumo"),
        "{err}"
    );
    let too_fast = SpeechOptions { speed: 9.0, ..opts };
    assert!(
        kokoro
            .stream("hello", &too_fast)
            .err()
            .unwrap()
            .to_string()
            .contains("speed")
    );
}

#[test]
fn speech_is_intelligible_to_whisper() {
    let Some(kokoro) = kokoro() else { return };
    let Some(dir) = common::model_dir("whisper-base", "model.bin") else {
        return;
    };
    let whisper = omni::encoder::whisper::Whisper::load(&dir).unwrap();
    let voices = [omni::generator::speech::DEFAULT_VOICE.to_string()];
    let results = intelligibility(kokoro, &whisper, &voices, &TEST_SENTENCES, &mut || {}).unwrap();
    let r = &results[0];
    eprintln!(
        "{}: WER {:.3} ({}/{}); misheard: {:?}",
        r.voice, r.wer, r.edits, r.words, r.misheard
    );
    assert!(r.wer <= 0.05, "WER {:.3}: {:?}", r.wer, r.misheard);
}
