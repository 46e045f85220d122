//! Whisper (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
//! Supervision"): audio encoder, text decoder and the decoding that turns them into timed
//! transcripts. Loads CTranslate2 checkpoints (`model.bin`, `config.json`, `tokenizer.json`)
//! and reproduces faster-whisper 1.2.1 on them: same features, same prompts, same logit
//! rules, same greedy and beam search, same long-form windowing.
//!
//! ```text
//! samples ─► log-mel [80, frames] ─► 30 s windows ─► AudioEncoder ─► [1, 1500, d]
//!        ─► TextDecoder (+ KV cache) ─► decoding rules ─► tokens ─► timed segments
//! ```

mod config;
mod decoder;
mod decoding;
mod encoder;
mod layers;
pub(crate) mod linear;
mod segments;
mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

pub use config::{Ct2WhisperConfig, WhisperConfig};
pub use decoder::{DecoderState, TextDecoder};
pub use decoding::{GenerateOptions, Generation, generate};
pub use encoder::{AudioEncoder, ConvStem};
pub(crate) use layers::Weights;
pub use segments::{
    Progress, Segment, Task, TranscribeOptions, TranscriptionInfo, compression_ratio,
};
pub use tokenizer::WhisperTokenizer;

use crate::formats::ct2::Ct2File;
use crate::modality::audio::MelExtractor;
use crate::{Error, Result};

/// A loaded Whisper model with its tokenizer and feature extractor.
#[derive(Debug)]
pub struct Whisper {
    /// Dimensions read from the checkpoint.
    pub config: WhisperConfig,
    /// CTranslate2 decoding settings (`config.json`).
    pub ct2_config: Ct2WhisperConfig,
    pub encoder: AudioEncoder,
    pub decoder: TextDecoder,
    pub tokenizer: WhisperTokenizer,
    /// Log-mel extractor with the model's number of bins.
    pub mel: MelExtractor,
    device: Device,
    dir: PathBuf,
}

impl Whisper {
    /// Loads a CTranslate2 Whisper model from a directory holding `model.bin`,
    /// `tokenizer.json` and (optionally) `config.json`, or from the path of its `model.bin`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_on(path, &Device::Cpu)
    }

    /// As [`Self::load`], on `device`.
    pub fn load_on(path: &Path, device: &Device) -> Result<Self> {
        let (dir, model_bin) = if path.is_dir() {
            (path.to_path_buf(), path.join("model.bin"))
        } else {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, path.to_path_buf())
        };
        if !model_bin.exists() {
            return Err(Error::model_file(
                &model_bin,
                "no such file: a CTranslate2 Whisper model directory needs model.bin, \
                 tokenizer.json and config.json",
            ));
        }
        let file = Ct2File::open(&model_bin)?;
        let config = WhisperConfig::from_ct2(&file)?;
        let ct2_config = Ct2WhisperConfig::load(&dir.join("config.json"))?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(Error::model_file(
                &tokenizer_path,
                "no such file: the Whisper model needs its tokenizer.json",
            ));
        }
        let tokenizer = WhisperTokenizer::from_file(&tokenizer_path)?;
        let n_vocab = config.n_vocab as u32;
        if tokenizer.timestamp_begin >= n_vocab || tokenizer.eot >= n_vocab {
            return Err(Error::model_file(
                &tokenizer_path,
                format!(
                    "the tokenizer does not match the model: its special tokens reach id {} but \
                     the model has {n_vocab} tokens",
                    tokenizer.timestamp_begin
                ),
            ));
        }
        let encoder_weights = Weights {
            file: &file,
            device,
            keep_f16: false,
        };
        let encoder = AudioEncoder::load(&encoder_weights, &config)?;
        let decoder_weights = Weights {
            keep_f16: true,
            ..encoder_weights
        };
        let decoder = TextDecoder::load(&decoder_weights, &config)?;
        Ok(Whisper {
            mel: MelExtractor::new(config.n_mels),
            config,
            ct2_config,
            encoder,
            decoder,
            tokenizer,
            device: device.clone(),
            dir,
        })
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encoder's states for up to 30 s of 16 kHz mono audio, `(positions, d_model)`:
    /// one per 20 ms of audio, the states of the window's silent padding dropped.
    pub fn encoder_states(&self, samples: &[f32]) -> Result<Tensor> {
        let n_frames = self.config.n_frames();
        let mel = self.mel.compute(samples);
        let frames = mel.content_frames();
        if frames > n_frames {
            return Err(Error::InvalidInput(format!(
                "{:.1} s of audio; an audio clip for the LLM holds at most 30 s",
                samples.len() as f64 / 16_000.0
            )));
        }
        let states = self
            .encode_window(&mel.window(0, n_frames, n_frames))?
            .squeeze(0)?;
        let keep = frames.div_ceil(2).clamp(1, states.dim(0)?);
        Ok(states.narrow(0, 0, keep)?)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Language probabilities for one encoded window `[1, s, d]`, most likely first
    /// (CTranslate2's `detect_language`: softmax over the language tokens after SOT).
    pub fn detect_language(&self, audio_features: &Tensor) -> Result<Vec<(String, f32)>> {
        let tok = &self.tokenizer;
        let lang_ids: Vec<u32> = if self.ct2_config.lang_ids.is_empty() {
            tok.language_codes()
                .filter_map(|c| tok.language_token(c))
                .collect()
        } else {
            self.ct2_config.lang_ids.clone()
        };
        let mut state = self.decoder.start(audio_features)?;
        let input = Tensor::new(&[[tok.sot]], &self.device)?;
        let hidden = self.decoder.forward(&input, &mut state)?.squeeze(1)?;
        let logits = self
            .decoder
            .logits(&hidden)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let scores: Vec<f32> = lang_ids
            .iter()
            .map(|&id| {
                logits
                    .get(id as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY)
            })
            .collect();
        let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
        let mut probs: Vec<(String, f32)> = lang_ids
            .iter()
            .zip(&scores)
            .filter_map(|(&id, &s)| {
                Some((tok.language_code(id)?.to_string(), (s - max).exp() / total))
            })
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(probs)
    }
}
