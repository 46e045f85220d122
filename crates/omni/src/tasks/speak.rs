//! Text to speech into a file, a pipe or an HTTP body: Kokoro's chunks encoded as they come.

use std::io::Write;

use serde::Serialize;

use crate::generator::speech::{Kokoro, SpeechChunk, SpeechOptions};
use crate::modality::audio::{AudioEncoder, AudioFormat};
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
