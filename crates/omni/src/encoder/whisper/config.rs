//! Whisper hyper-parameters, derived from the checkpoint's tensors, and the CTranslate2
//! `config.json` that sits next to `model.bin`.

use std::path::Path;

use serde::Deserialize;

use crate::formats::ct2::Ct2File;
use crate::{Error, Result};

/// Model dimensions, named as OpenAI's `ModelDimensions` (`whisper/model.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// Mel bins of the input (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Encoder positions: 1500 for 30 s of audio (3000 mel frames after the stride-2 conv).
    pub n_audio_ctx: usize,
    /// Encoder width (`d_model`).
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder width.
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    /// Vocabulary size (rows of the token embedding, which is also the output head).
    pub n_vocab: usize,
}

impl WhisperConfig {
    /// Reads the dimensions from the tensors and scalars of a CTranslate2 `WhisperSpec`.
    pub fn from_ct2(file: &Ct2File) -> Result<Self> {
        if file.spec != "WhisperSpec" {
            return Err(Error::UnsupportedArchitecture {
                path: file.path().to_path_buf(),
                arch: file.spec.clone(),
                supported: "WhisperSpec".into(),
            });
        }
        let shape = |name: &str, rank: usize| -> Result<Vec<usize>> {
            let var = file.get(name).ok_or_else(|| {
                Error::model_file(
                    file.path(),
                    format!("missing variable `{name}` in WhisperSpec"),
                )
            })?;
            if var.shape.len() != rank {
                return Err(Error::model_file(
                    file.path(),
                    format!(
                        "variable `{name}` has shape {:?}, expected rank {rank}",
                        var.shape
                    ),
                ));
            }
            Ok(var.shape.clone())
        };
        let conv1 = shape("encoder/conv1/weight", 3)?;
        let enc_pos = shape("encoder/position_encodings/encodings", 2)?;
        let embed = shape("decoder/embeddings/weight", 2)?;
        let dec_pos = shape("decoder/position_encodings/encodings", 2)?;
        let heads = |name: &str| -> Result<usize> {
            // CTranslate2 defaults to 8 heads when the scalar is absent.
            match file.get(name) {
                None => Ok(8),
                Some(_) => {
                    let n = file.scalar_i64(name)?;
                    usize::try_from(n)
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| Error::model_file(file.path(), format!("`{name}` is {n}")))
                }
            }
        };
        let count_layers = |prefix: &str| {
            (0..)
                .take_while(|i| {
                    file.get(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
                        .is_some()
                })
                .count()
        };
        let config = WhisperConfig {
            n_mels: conv1[1],
            n_audio_ctx: enc_pos[0],
            n_audio_state: conv1[0],
            n_audio_head: heads("encoder/num_heads")?,
            n_audio_layer: count_layers("encoder"),
            n_text_ctx: dec_pos[0],
            n_text_state: embed[1],
            n_text_head: heads("decoder/num_heads")?,
            n_text_layer: count_layers("decoder"),
            n_vocab: embed[0],
        };
        let bad = |reason: String| Err(Error::model_file(file.path(), reason));
        if config.n_audio_layer == 0 || config.n_text_layer == 0 {
            return bad("no encoder or decoder layers found".into());
        }
        if enc_pos[1] != config.n_audio_state || dec_pos[1] != config.n_text_state {
            return bad(format!(
                "position encodings {enc_pos:?} / {dec_pos:?} do not match the model width"
            ));
        }
        if !config.n_audio_state.is_multiple_of(config.n_audio_head)
            || !config.n_text_state.is_multiple_of(config.n_text_head)
        {
            return bad("the model width is not a multiple of the head count".into());
        }
        if config.n_audio_state != config.n_text_state {
            return bad("encoder and decoder widths differ".into());
        }
        Ok(config)
    }

    /// Multilingual checkpoints have the 51865-token (or larger) vocabulary.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// Mel frames the encoder reads per window (twice `n_audio_ctx`: 3000 for 30 s).
    pub fn n_frames(&self) -> usize {
        2 * self.n_audio_ctx
    }
}

/// CTranslate2's Whisper `config.json` (written by its converter from the HF generation config).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ct2WhisperConfig {
    /// Tokens suppressed at every step when `suppress_tokens` contains -1.
    #[serde(default)]
    pub suppress_ids: Vec<u32>,
    /// Tokens suppressed at the first sampled step when `suppress_blank` is on.
    #[serde(default)]
    pub suppress_ids_begin: Vec<u32>,
    /// Language tokens, in the order language detection scores them.
    #[serde(default)]
    pub lang_ids: Vec<u32>,
    /// Cross-attention heads that follow the alignment (for word timestamps).
    #[serde(default)]
    pub alignment_heads: Vec<(usize, usize)>,
}

impl Ct2WhisperConfig {
    /// Reads `config.json`; a missing file gives the defaults, a malformed one an error.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::model_file(path, format!("invalid CTranslate2 config: {e}")))
    }
}
