//! Transcription: an audio file → a timed transcript, and its text / JSON / SRT / WebVTT forms.
//!
//! Composes `modality::audio` (decode, resample to 16 kHz, log-mel) with `encoder::whisper`
//! (encoder, decoder, long-form decoding).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::encoder::whisper::Whisper;
pub use crate::encoder::whisper::{Progress, Task, TranscribeOptions};
use crate::modality::audio::{SAMPLE_RATE, load_mono};
use crate::{Error, Result};

/// One timed piece of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptSegment {
    /// Start and end in seconds from the start of the audio.
    pub start: f64,
    pub end: f64,
    /// Text as decoded (usually with a leading space).
    pub text: String,
}

/// A transcribed audio file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// Language code the speech was decoded as.
    pub language: String,
    /// Audio duration in seconds.
    pub duration: f64,
    /// The segments' text joined, trimmed.
    pub text: String,
    pub segments: Vec<TranscriptSegment>,
}

/// Output formats of [`Transcript::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TranscriptFormat {
    /// Plain text.
    #[default]
    Text,
    /// One JSON object: language, duration, text, segments.
    Json,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
}

/// Transcribes 16 kHz mono samples.
pub fn transcribe_samples(
    model: &Whisper,
    samples: &[f32],
    opts: &TranscribeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Transcript> {
    if samples.is_empty() {
        return Err(Error::InvalidInput("no audio samples to transcribe".into()));
    }
    let (segments, info) = model.transcribe(samples, opts, progress)?;
    let segments: Vec<TranscriptSegment> = segments
        .into_iter()
        .map(|s| TranscriptSegment {
            start: s.start,
            end: s.end,
            text: s.text,
        })
        .collect();
    let text = segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<String>()
        .trim()
        .to_string();
    Ok(Transcript {
        language: info.language,
        duration: samples.len() as f64 / SAMPLE_RATE as f64,
        text,
        segments,
    })
}

/// Decodes `path` (wav, flac, mp3, ogg, …), resamples it to 16 kHz and transcribes it.
pub fn transcribe_file(
    model: &Whisper,
    path: &Path,
    opts: &TranscribeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Transcript> {
    let samples = load_mono(path, SAMPLE_RATE)?;
    transcribe_samples(model, &samples, opts, progress)
}

/// `HH:MM:SS{sep}mmm`.
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

impl Transcript {
    /// The transcript as text, JSON, SRT or WebVTT.
    pub fn render(&self, format: TranscriptFormat) -> String {
        match format {
            TranscriptFormat::Text => format!("{}\n", self.text),
            TranscriptFormat::Json => {
                let mut s = serde_json::to_string(self).unwrap_or_default();
                s.push('\n');
                s
            }
            TranscriptFormat::Srt => {
                let mut out = String::new();
                for (i, seg) in self.segments.iter().enumerate() {
                    let _ = write!(
                        out,
                        "{}\n{} --> {}\n{}\n\n",
                        i + 1,
                        timestamp(seg.start, ','),
                        timestamp(seg.end, ','),
                        seg.text.trim()
                    );
                }
                out
            }
            TranscriptFormat::Vtt => {
                let mut out = String::from("WEBVTT\n\n");
                for seg in &self.segments {
                    let _ = write!(
                        out,
                        "{} --> {}\n{}\n\n",
                        timestamp(seg.start, '.'),
                        timestamp(seg.end, '.'),
                        seg.text.trim()
                    );
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transcript {
        Transcript {
            language: "en".into(),
            duration: 65.5,
            text: "Hello there. General Kenobi.".into(),
            segments: vec![
                TranscriptSegment {
                    start: 0.0,
                    end: 2.5,
                    text: " Hello there.".into(),
                },
                TranscriptSegment {
                    start: 61.04,
                    end: 3725.2,
                    text: " General Kenobi.".into(),
                },
            ],
        }
    }

    #[test]
    fn renders_srt_and_vtt() {
        let t = sample();
        assert_eq!(
            t.render(TranscriptFormat::Srt),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n\
             2\n00:01:01,040 --> 01:02:05,200\nGeneral Kenobi.\n\n"
        );
        assert_eq!(
            t.render(TranscriptFormat::Vtt),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n\
             00:01:01.040 --> 01:02:05.200\nGeneral Kenobi.\n\n"
        );
        assert_eq!(
            t.render(TranscriptFormat::Text),
            "Hello there. General Kenobi.\n"
        );
    }

    #[test]
    fn renders_json() {
        let v: serde_json::Value =
            serde_json::from_str(&sample().render(TranscriptFormat::Json)).unwrap();
        assert_eq!(v["language"], "en");
        assert_eq!(v["segments"][1]["start"], 61.04);
        assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    }
}
