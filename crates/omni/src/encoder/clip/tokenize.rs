//! Text → token ids for the text towers of CLIP and SigLIP, from the checkpoint's
//! `tokenizer.json` (HF `tokenizers`), truncated to the model's positions and padded as
//! each model's processor pads: CLIP to the longest text with an attention mask, SigLIP to
//! `max_position_embeddings` with the pad token and no mask (it was trained that way).

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::{Error, Result};

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest text; padding masked out (CLIP).
    Longest,
    /// Every text to exactly this many tokens; padding is attended to (SigLIP).
    MaxLength(usize),
}

/// A `tokenizer.json` checked against the model it feeds.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    padding: Padding,
    vocab_size: usize,
}

/// Token ids (N rows of equal length) and 0/1 attention flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub ids: Vec<Vec<u32>>,
    pub keep: Vec<Vec<u32>>,
}

impl TextTokenizer {
    /// Loads `path`; texts are cut to `max_len` tokens (special tokens included), and
    /// every id must be below the model's `vocab_size`.
    pub fn from_file(
        path: &Path,
        max_len: usize,
        vocab_size: usize,
        pad_id: u32,
        padding: Padding,
    ) -> Result<Self> {
        let mut inner =
            Tokenizer::from_file(path).map_err(|e| Error::model_file(path, e.to_string()))?;
        let size = inner.get_vocab_size(true);
        if size > vocab_size {
            return Err(Error::model_file(
                path,
                format!(
                    "the tokenizer has {size} tokens but the model's vocab_size is {vocab_size}: \
                     tokenizer and model do not match"
                ),
            ));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::model_file(path, e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            pad_id,
            padding,
            vocab_size,
        })
    }

    /// Tokenizes and pads a batch.
    pub fn encode(&self, texts: &[&str]) -> Result<TokenBatch> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let enc = self
                .inner
                .encode(*text, true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let row = enc.get_ids().to_vec();
            if let Some(&bad) = row.iter().find(|&&t| t as usize >= self.vocab_size) {
                return Err(Error::model_file(
                    &self.path,
                    format!(
                        "token id {bad} is outside the model's vocabulary of {}",
                        self.vocab_size
                    ),
                ));
            }
            ids.push(row);
        }
        let len = match self.padding {
            Padding::Longest => ids.iter().map(Vec::len).max().unwrap_or(0),
            Padding::MaxLength(n) => n,
        };
        let keep = ids
            .iter()
            .map(|r| {
                let mut k = vec![1u32; r.len()];
                k.resize(len, 0);
                k
            })
            .collect();
        for row in &mut ids {
            row.resize(len, self.pad_id);
        }
        Ok(TokenBatch { ids, keep })
    }
}
