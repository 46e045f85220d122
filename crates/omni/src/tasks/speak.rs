//! Text to speech into a file, a pipe or an HTTP body (Kokoro's chunks encoded as they
//! come), and how intelligible the result is to Whisper.

use std::io::Write;

use serde::Serialize;

use crate::encoder::whisper::Whisper;
use crate::generator::speech::{Kokoro, SpeechChunk, SpeechOptions};
use crate::modality::audio::{AudioEncoder, AudioFormat, SAMPLE_RATE as WHISPER_RATE, resample};
use crate::tasks::mllm_train::word_edits;
use crate::tasks::transcribe::{TranscribeOptions, transcribe_samples};
use crate::{Error, Result};

/// What was spoken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeechSummary {
    /// The voice (or blend) that spoke.
    pub voice: String,
    pub sample_rate: u32,
    /// Seconds of audio.
    pub duration: f64,
    /// Sentence chunks synthesised.
    pub chunks: usize,
    /// Bytes of audio data written (after any header).
    pub audio_bytes: u64,
}

/// Speaks `text` into `out` as `format`, one sentence chunk at a time (memory stays bounded
/// whatever the text's length); `on_chunk` sees each chunk before it is written. Bad input
/// (nothing to say, unknown voice, speed out of range) fails before any byte is written.
pub fn speak_to(
    kokoro: &Kokoro,
    text: &str,
    opts: &SpeechOptions,
    format: AudioFormat,
    out: &mut dyn Write,
    on_chunk: &mut dyn FnMut(&SpeechChunk),
) -> Result<SpeechSummary> {
    let stream = kokoro.stream(text, opts)?;
    let voice = stream.voice().to_string();
    let sample_rate = kokoro.sample_rate();
    let mut encoder = AudioEncoder::new(format, sample_rate);
    let write_err = |e: std::io::Error| Error::io("<audio output>", e);
    out.write_all(&encoder.header()).map_err(write_err)?;
    let (mut samples, mut chunks, mut audio_bytes) = (0usize, 0usize, 0u64);
    for chunk in stream {
        let chunk = chunk?;
        on_chunk(&chunk);
        let bytes = encoder.encode(&chunk.samples);
        out.write_all(&bytes).map_err(write_err)?;
        out.flush().map_err(write_err)?;
        samples += chunk.samples.len();
        chunks += 1;
        audio_bytes += bytes.len() as u64;
    }
    let tail = encoder.finish();
    out.write_all(&tail).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(SpeechSummary {
        voice,
        sample_rate,
        duration: samples as f64 / f64::from(sample_rate),
        chunks,
        audio_bytes: audio_bytes + tail.len() as u64,
    })
}

/// All of `text`'s audio as one buffer (for short answers: chat replies, tests).
pub fn speak_samples(kokoro: &Kokoro, text: &str, opts: &SpeechOptions) -> Result<Vec<f32>> {
    let mut samples = Vec::new();
    for chunk in kokoro.stream(text, opts)? {
        samples.extend(chunk?.samples);
    }
    Ok(samples)
}

/// Ten plain sentences (no numbers, no homophone compounds) for measuring how well
/// synthesised speech is understood.
pub const TEST_SENTENCES: [&str; 10] = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Birds sing loudly in the garden every summer morning.",
    "A rainbow is a division of white light into many beautiful colors.",
    "The museum opens early on weekends, so we should arrive before noon.",
    "Reading books before bed helps many people fall asleep faster.",
    "The weather forecast says it will rain heavily tomorrow afternoon.",
    "Our team finished the project ahead of schedule and under budget.",
    "Could you tell me the way to the nearest train station?",
    "Fresh bread from the bakery smells wonderful in the morning.",
];

/// How well Whisper understood one voice: its word error rate over the sentences.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceWer {
    pub voice: String,
    /// Word edits / reference words, over all sentences.
    pub wer: f64,
    pub edits: usize,
    pub words: usize,
    /// (sentence, what Whisper heard) where they differ.
    pub misheard: Vec<(String, String)>,
}

/// Speaks each sentence in each voice, transcribes it with `whisper` (as English) and
/// scores the transcripts (lower case, punctuation ignored). `progress` is told each finished pair.
pub fn intelligibility(
    kokoro: &Kokoro,
    whisper: &Whisper,
    voices: &[String],
    sentences: &[&str],
    progress: &mut dyn FnMut(),
) -> Result<Vec<VoiceWer>> {
    // The sentences are English: a multilingual Whisper would otherwise guess the
    // language from the (Japanese) voices' accent.
    let listen = TranscribeOptions {
        language: Some("en".into()),
        ..TranscribeOptions::default()
    };
    let mut results = Vec::with_capacity(voices.len());
    for voice in voices {
        let opts = SpeechOptions {
            voice: voice.clone(),
            ..SpeechOptions::default()
        };
        let (mut edits, mut words, mut misheard) = (0, 0, Vec::new());
        for sentence in sentences {
            let audio = speak_samples(kokoro, sentence, &opts)?;
            let audio = resample(&audio, kokoro.sample_rate(), WHISPER_RATE)?;
            let heard = transcribe_samples(whisper, &audio, &listen, &mut |_| {})?;
            let (e, w) = word_edits(sentence, &heard.text);
            if e > 0 {
                misheard.push((sentence.to_string(), heard.text));
            }
            edits += e;
            words += w;
            progress();
        }
        results.push(VoiceWer {
            voice: voice.clone(),
            wer: edits as f64 / words.max(1) as f64,
            edits,
            words,
            misheard,
        });
    }
    Ok(results)
}
