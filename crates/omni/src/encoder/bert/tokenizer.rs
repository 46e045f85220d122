//! WordPiece tokenization for BERT embedders with HF `tokenizers` (`tokenizer.json`), set up
//! as sentence-transformers calls it: `truncation=True, max_length=max_seq_length`
//! (longest-first, from the right) and `padding=True` (to the longest input of the batch).
//! The truncation and padding saved in `tokenizer.json` (e.g. fixed padding to 128) are
//! replaced by these.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::{Error, Result};

/// Token ids of a batch, padded to its longest input.
#[derive(Debug)]
pub struct TokenBatch {
    /// `[batch, seq]` u32 token ids.
    pub ids: Tensor,
    /// `[batch, seq]` u32 segment ids (all 0 for single sentences).
    pub type_ids: Tensor,
    /// `[batch, seq]` u32, 1 on real tokens and 0 on padding.
    pub mask: Tensor,
}

/// A BERT tokenizer checked against its model's vocabulary size.
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl BertTokenizer {
    /// Loads `tokenizer.json`, truncating to `max_len` tokens; fails when its vocabulary does
    /// not fit a model with `vocab_size` embeddings.
    pub fn load(path: &Path, max_len: usize, vocab_size: usize, pad_id: u32) -> Result<Self> {
        if !path.exists() {
            return Err(Error::model_file(
                path,
                "no such file (the model's tokenizer)",
            ));
        }
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| Error::model_file(path, format!("invalid tokenizer: {e}")))?;
        let n = inner.get_vocab_size(true);
        if n != vocab_size {
            return Err(Error::model_file(
                path,
                format!(
                    "the tokenizer has {n} tokens but the model's config.json has vocab_size \
                     {vocab_size}: tokenizer and model do not match"
                ),
            ));
        }
        let pad_token = inner
            .get_padding()
            .map(|p| p.pad_token.clone())
            .or_else(|| inner.id_to_token(pad_id))
            .unwrap_or_else(|| "[PAD]".into());
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::model_file(path, format!("cannot set truncation: {e}")))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(Self {
            inner,
            path: path.into(),
        })
    }

    /// The token ids of one text, with special tokens and truncation, without padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", self.path.display())))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes a batch of texts into padded `[batch, seq]` tensors.
    pub fn encode_batch(&self, texts: &[&str], device: &Device) -> Result<TokenBatch> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", self.path.display())))?;
        let batch = encs.len();
        let seq = encs.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(batch * seq);
        let mut type_ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for e in &encs {
            ids.extend_from_slice(e.get_ids());
            type_ids.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, (batch, seq), device)?,
            type_ids: Tensor::from_vec(type_ids, (batch, seq), device)?,
            mask: Tensor::from_vec(mask, (batch, seq), device)?,
        })
    }
}
