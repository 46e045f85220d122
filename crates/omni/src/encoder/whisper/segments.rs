//! Long-form transcription: 30 s windows over the log-mel of a whole file, moved by the
//! timestamps the model predicts, with temperature fallback and the previous text as prompt.
//! A port of faster-whisper's `WhisperModel.generate_segments`, `generate_with_fallback`,
//! `get_prompt` and `_split_segments_by_timestamps` (`faster_whisper/transcribe.py`, 1.2.1),
//! themselves following OpenAI `whisper/transcribe.py`.

use std::io::Write;

use candle_core::Tensor;

use super::Whisper;
use super::decoding::{GenerateOptions, Generation, generate};
use crate::modality::audio::{HOP_LENGTH, LogMel, SAMPLE_RATE};
use crate::{Error, Result};

/// Seconds per timestamp token.
const TIME_PRECISION: f64 = 0.02;
/// Mel frames per encoder position (the second convolution's stride).
const INPUT_STRIDE: usize = 2;

/// What to do with the speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Text in the spoken language.
    #[default]
    Transcribe,
    /// English text (multilingual models only).
    Translate,
}

/// Options of a transcription, with faster-whisper's defaults.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Spoken language code (`en`, `fr`, …); `None` detects it on the first 30 s.
    pub language: Option<String>,
    pub task: Task,
    /// 1 = greedy decoding.
    pub beam_size: usize,
    /// Samples drawn at temperatures above 0.
    pub best_of: usize,
    pub patience: f32,
    pub length_penalty: f32,
    /// Temperatures tried in order until a window's output passes the thresholds below.
    pub temperatures: Vec<f32>,
    /// A window whose text gzip-compresses better than this is a repetition loop: retry.
    pub compression_ratio_threshold: Option<f32>,
    /// A window whose average log-probability is below this is unreliable: retry.
    pub log_prob_threshold: Option<f32>,
    /// A window with `P(<|nospeech|>)` above this (and a low log-probability) is silence.
    pub no_speech_threshold: Option<f32>,
    /// Prompt each window with the text decoded so far.
    pub condition_on_previous_text: bool,
    /// Stop conditioning on previous text after a fallback above this temperature.
    pub prompt_reset_on_temperature: f32,
    /// Text given as if it preceded the audio (names, spelling, style).
    pub initial_prompt: Option<String>,
    /// Do not start with a blank or `<|endoftext|>`.
    pub suppress_blank: bool,
    /// Token ids never generated; `-1` adds the non-speech symbols.
    pub suppress_tokens: Vec<i64>,
    /// Decode text only (no timestamp tokens); segments then span whole windows.
    pub without_timestamps: bool,
    /// Latest first timestamp of a window, in seconds.
    pub max_initial_timestamp: f64,
    /// Cap on generated tokens per window.
    pub max_new_tokens: Option<usize>,
    /// Seed of the sampler used at temperatures above 0.
    pub seed: u64,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            language: None,
            task: Task::Transcribe,
            beam_size: 5,
            best_of: 5,
            patience: 1.0,
            length_penalty: 1.0,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            initial_prompt: None,
            suppress_blank: true,
            suppress_tokens: vec![-1],
            without_timestamps: false,
            max_initial_timestamp: 1.0,
            max_new_tokens: None,
            seed: 0,
        }
    }
}

/// One transcribed stretch of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// 1-based index.
    pub id: usize,
    /// Mel frame where the window that produced it started.
    pub seek: usize,
    /// Start and end, in seconds from the start of the audio.
    pub start: f64,
    pub end: f64,
    /// Decoded text (usually with a leading space).
    pub text: String,
    /// Its tokens, timestamps included.
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// Temperature of the decoding that was kept.
    pub temperature: f32,
}

/// What the model found besides the segments.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionInfo {
    /// Language code used for decoding.
    pub language: String,
    /// Its detected probability (1 when given or English-only).
    pub language_probability: f32,
    /// Audio duration in seconds.
    pub duration: f64,
}

/// Progress of a transcription, reported after each window.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Seconds of audio done.
    pub done: f64,
    /// Seconds of audio in total.
    pub total: f64,
}

/// gzip-style compression ratio of `text` (faster-whisper's `get_compression_ratio`).
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    let compressed = enc
        .write_all(bytes)
        .and_then(|_| enc.finish())
        .map_or(1, |c| c.len().max(1));
    bytes.len() as f32 / compressed as f32
}

struct Decoded {
    generation: Generation,
    avg_logprob: f32,
    temperature: f32,
    compression_ratio: f32,
}

impl Whisper {
    /// Transcribes 16 kHz mono samples (see [`Self::transcribe_mel`]).
    pub fn transcribe(
        &self,
        samples: &[f32],
        opts: &TranscribeOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Vec<Segment>, TranscriptionInfo)> {
        let mel = self.mel.compute(samples);
        let duration = samples.len() as f64 / SAMPLE_RATE as f64;
        self.transcribe_mel(&mel, duration, opts, progress)
    }

    /// Transcribes a whole file's log-mel (from [`crate::modality::audio::MelExtractor`]).
    pub fn transcribe_mel(
        &self,
        mel: &LogMel,
        duration: f64,
        opts: &TranscribeOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Vec<Segment>, TranscriptionInfo)> {
        if mel.n_mels != self.config.n_mels {
            return Err(Error::InvalidInput(format!(
                "the model reads {} mel bins, the features have {}",
                self.config.n_mels, mel.n_mels
            )));
        }
        let tok = &self.tokenizer;
        let multilingual = self.config.is_multilingual();
        let (language, language_probability) = match (&opts.language, multilingual) {
            (Some(code), false) if code != "en" => {
                tracing::warn!("the model is English-only; transcribing as `en`, not `{code}`");
                ("en".to_string(), 1.0)
            }
            (_, false) => ("en".to_string(), 1.0),
            (Some(code), true) => {
                if tok.language_token(code).is_none() {
                    let known: Vec<&str> = tok.language_codes().collect();
                    return Err(Error::InvalidInput(format!(
                        "unknown language `{code}` (the model knows: {})",
                        known.join(", ")
                    )));
                }
                (code.clone(), 1.0)
            }
            (None, true) => {
                let window = mel.window(0, self.config.n_frames(), self.config.n_frames());
                let features = self.encode_window(&window)?;
                let probs = self.detect_language(&features)?;
                probs
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::InvalidInput("no language tokens in the model".into()))?
            }
        };
        let sot_sequence = if multilingual {
            let task = match opts.task {
                Task::Transcribe => tok.transcribe,
                Task::Translate => tok.translate,
            };
            tok.sot_sequence(tok.language_token(&language), Some(task))
        } else {
            tok.sot_sequence(None, None)
        };
        let suppress_tokens = if opts.suppress_tokens.is_empty() {
            Vec::new()
        } else {
            tok.suppressed_tokens(&opts.suppress_tokens)?
        };
        let suppress_begin = if opts.suppress_blank {
            if self.ct2_config.suppress_ids_begin.is_empty() {
                let mut begin = tok.encode(" ")?;
                begin.push(tok.eot);
                begin
            } else {
                self.ct2_config.suppress_ids_begin.clone()
            }
        } else {
            Vec::new()
        };
        let max_length = 448usize.min(self.config.n_text_ctx);

        let n_frames = self.config.n_frames();
        let time_per_frame = HOP_LENGTH as f64 / SAMPLE_RATE as f64;
        let content_frames = mel.content_frames();
        let content_duration = content_frames as f64 * time_per_frame;

        let mut all_tokens: Vec<u32> = Vec::new();
        let mut prompt_reset_since = 0usize;
        if let Some(prompt) = &opts.initial_prompt {
            all_tokens.extend(tok.encode(&format!(" {}", prompt.trim()))?);
        }
        let mut segments = Vec::new();
        let mut seek = 0usize;
        while seek < content_frames {
            let time_offset = seek as f64 * time_per_frame;
            let segment_size = n_frames.min(content_frames - seek);
            let segment_duration = segment_size as f64 * time_per_frame;
            let window = mel.window(seek, segment_size, n_frames);
            let features = self.encode_window(&window)?;

            let previous = &all_tokens[prompt_reset_since..];
            let mut prompt = Vec::new();
            if !previous.is_empty() {
                prompt.push(tok.sot_prev);
                let keep = previous.len().min(max_length / 2 - 1);
                prompt.extend_from_slice(&previous[previous.len() - keep..]);
            }
            prompt.extend_from_slice(&sot_sequence);
            if opts.without_timestamps {
                prompt.push(tok.no_timestamps);
            }
            let decoded = self.generate_with_fallback(
                &features,
                &prompt,
                opts,
                &suppress_tokens,
                &suppress_begin,
                max_length,
            )?;

            if let Some(threshold) = opts.no_speech_threshold {
                let mut skip = decoded.generation.no_speech_prob > threshold;
                if let Some(lp) = opts.log_prob_threshold
                    && decoded.avg_logprob > lp
                {
                    skip = false;
                }
                if skip {
                    seek += segment_size;
                    progress(Progress {
                        done: (seek.min(content_frames)) as f64 * time_per_frame,
                        total: content_duration,
                    });
                    continue;
                }
            }
            let previous_seek = seek;
            let tokens = &decoded.generation.tokens;
            let (pieces, new_seek) =
                self.split_by_timestamps(tokens, time_offset, segment_size, segment_duration, seek);
            seek = new_seek;
            for (start, end, piece) in pieces {
                let text = tok.decode(&piece)?;
                if start == end || text.trim().is_empty() {
                    continue;
                }
                all_tokens.extend_from_slice(&piece);
                segments.push(Segment {
                    id: segments.len() + 1,
                    seek: previous_seek,
                    start,
                    end,
                    text,
                    tokens: piece,
                    avg_logprob: decoded.avg_logprob,
                    compression_ratio: decoded.compression_ratio,
                    no_speech_prob: decoded.generation.no_speech_prob,
                    temperature: decoded.temperature,
                });
            }
            if !opts.condition_on_previous_text
                || decoded.temperature > opts.prompt_reset_on_temperature
            {
                prompt_reset_since = all_tokens.len();
            }
            // Guard against a window that does not move (faster-whisper would loop forever).
            if seek <= previous_seek {
                seek = previous_seek + segment_size;
            }
            progress(Progress {
                done: seek.min(content_frames) as f64 * time_per_frame,
                total: content_duration,
            });
        }
        Ok((
            segments,
            TranscriptionInfo {
                language,
                language_probability,
                duration,
            },
        ))
    }

    /// Encodes one `[n_mels, n_frames]` window (row-major) → `[1, n_audio_ctx, d]`.
    pub fn encode_window(&self, window: &[f32]) -> Result<Tensor> {
        let mel = Tensor::from_slice(
            window,
            (1, self.config.n_mels, self.config.n_frames()),
            &self.device,
        )?;
        self.encoder.forward(&mel)
    }

    fn generate_with_fallback(
        &self,
        features: &Tensor,
        prompt: &[u32],
        opts: &TranscribeOptions,
        suppress_tokens: &[u32],
        suppress_begin: &[u32],
        max_length: usize,
    ) -> Result<Decoded> {
        let max_length = match opts.max_new_tokens {
            Some(n) => (prompt.len() + n).min(max_length),
            None => max_length,
        };
        let max_initial_timestamp_index =
            (opts.max_initial_timestamp / TIME_PRECISION).round() as u32;
        let mut all: Vec<Decoded> = Vec::new();
        let mut below_cr: Vec<usize> = Vec::new();
        let temperatures = if opts.temperatures.is_empty() {
            vec![0.0]
        } else {
            opts.temperatures.clone()
        };
        for (attempt, &temperature) in temperatures.iter().enumerate() {
            let gen_opts = GenerateOptions {
                beam_size: if temperature > 0.0 {
                    1
                } else {
                    opts.beam_size.max(1)
                },
                patience: opts.patience,
                length_penalty: opts.length_penalty,
                temperature,
                num_hypotheses: if temperature > 0.0 {
                    opts.best_of.max(1)
                } else {
                    1
                },
                max_length,
                suppress_tokens: suppress_tokens.to_vec(),
                suppress_begin: suppress_begin.to_vec(),
                max_initial_timestamp_index,
                seed: opts.seed.wrapping_add(attempt as u64),
            };
            let generation = generate(
                &self.decoder,
                &self.tokenizer,
                features,
                prompt,
                &gen_opts,
                self.config.n_vocab,
            )?;
            let seq_len = generation.tokens.len() as f32;
            let cum_logprob = generation.score * seq_len.powf(opts.length_penalty);
            let avg_logprob = cum_logprob / (seq_len + 1.0);
            let text = self.tokenizer.decode(&generation.tokens)?;
            let ratio = compression_ratio(text.trim());
            let decoded = Decoded {
                generation,
                avg_logprob,
                temperature,
                compression_ratio: ratio,
            };
            let mut needs_fallback = false;
            if let Some(threshold) = opts.compression_ratio_threshold {
                if ratio > threshold {
                    needs_fallback = true;
                } else {
                    below_cr.push(all.len());
                }
            }
            if let Some(threshold) = opts.log_prob_threshold
                && avg_logprob < threshold
            {
                needs_fallback = true;
            }
            if let (Some(ns), Some(lp)) = (opts.no_speech_threshold, opts.log_prob_threshold)
                && decoded.generation.no_speech_prob > ns
                && avg_logprob < lp
            {
                needs_fallback = false;
            }
            all.push(decoded);
            if !needs_fallback {
                return all
                    .pop()
                    .ok_or_else(|| Error::InvalidInput("no decoding".into()));
            }
        }
        // Every temperature failed: keep the best average log-probability, preferring outputs
        // under the compression threshold, but report the last temperature tried.
        let last_temperature = *temperatures.last().unwrap_or(&0.0);
        let pool: Vec<usize> = if below_cr.is_empty() {
            (0..all.len()).collect()
        } else {
            below_cr
        };
        let best = pool
            .into_iter()
            .max_by(|&a, &b| all[a].avg_logprob.total_cmp(&all[b].avg_logprob))
            .ok_or_else(|| Error::InvalidInput("no decoding".into()))?;
        let mut decoded = all.swap_remove(best);
        decoded.temperature = last_temperature;
        Ok(decoded)
    }

    /// Cuts a window's tokens into segments at consecutive timestamp pairs; returns the
    /// segments `(start, end, tokens)` and the next seek position (in mel frames).
    fn split_by_timestamps(
        &self,
        tokens: &[u32],
        time_offset: f64,
        segment_size: usize,
        segment_duration: f64,
        seek: usize,
    ) -> (Vec<(f64, f64, Vec<u32>)>, usize) {
        let ts_begin = self.tokenizer.timestamp_begin;
        let is_ts = |t: u32| t >= ts_begin;
        let n = tokens.len();
        let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
        let consecutive: Vec<usize> = (1..n)
            .filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]))
            .collect();
        let mut out = Vec::new();
        let position = |t: u32| t as f64 - ts_begin as f64;
        if !consecutive.is_empty() {
            let mut slices = consecutive;
            if single_timestamp_ending {
                slices.push(n);
            }
            let mut last_slice = 0;
            for &current in &slices {
                let sliced = &tokens[last_slice..current];
                let start = time_offset + position(sliced[0]) * TIME_PRECISION;
                let end = time_offset + position(sliced[sliced.len() - 1]) * TIME_PRECISION;
                out.push((start, end, sliced.to_vec()));
                last_slice = current;
            }
            let seek = if single_timestamp_ending {
                seek + segment_size
            } else {
                let last = tokens[last_slice - 1].saturating_sub(ts_begin) as usize;
                seek + last * INPUT_STRIDE
            };
            (out, seek)
        } else {
            let mut duration = segment_duration;
            if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t))
                && last != ts_begin
            {
                duration = position(last) * TIME_PRECISION;
            }
            out.push((time_offset, time_offset + duration, tokens.to_vec()));
            (out, seek + segment_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_ratio_flags_repetition() {
        let normal = compression_ratio("He was not an ill-disposed young man.");
        let looped = compression_ratio(&"thank you ".repeat(40));
        assert!(normal < 2.4, "{normal}");
        assert!(looped > 2.4, "{looped}");
        assert_eq!(compression_ratio(""), 0.0);
    }
}
