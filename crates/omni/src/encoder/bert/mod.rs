//! BERT sentence embedders (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
//! Transformers"; Reimers & Gurevych 2019, "Sentence-BERT") such as all-MiniLM-L6-v2.
//! Matches `sentence-transformers` (`Transformer` → `Pooling` → `Normalize`) on the same
//! files: our BERT encoder (`model.rs`, HF `modeling_bert.py` on fused kernels), followed by
//! our pooling.
//!
//! ```text
//! texts ─► WordPiece ids [b, s] (truncated to max_seq_length, padded to the longest)
//!       ─► BertModel ─► token states [b, s, d] ─► masked mean ─► L2 norm ─► [b, d]
//! ```
//!
//! Files: `config.json`, `model.safetensors`, `tokenizer.json`, and optionally
//! `sentence_bert_config.json`, `1_Pooling/config.json`, `modules.json`.

mod config;
mod model;
mod pooling;
mod tokenizer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub use config::{BertConfig, Pooling, SentenceConfig};
pub use tokenizer::{BertTokenizer, TokenBatch};

use super::TextEmbedder;
use crate::{Error, Result};
use model::BertEncoder;

/// A loaded BERT sentence embedder (e.g. `all-minilm-l6-v2`).
pub struct BertEmbedder {
    pub config: BertConfig,
    pub sentence: SentenceConfig,
    pub tokenizer: BertTokenizer,
    model: BertEncoder,
    device: Device,
    dir: PathBuf,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("sentence", &self.sentence)
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Loads a sentence-transformers BERT model directory on the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// As [`Self::load`], on `device`.
    pub fn load_on(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model_file(
                dir,
                "not a directory: a BERT embedder needs config.json, model.safetensors and \
                 tokenizer.json",
            ));
        }
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(Error::model_file(
                &config_path,
                "no such file: a BERT embedder directory needs config.json, model.safetensors \
                 and tokenizer.json",
            ));
        }
        let config = BertConfig::load(&config_path)?;
        let sentence = SentenceConfig::load(dir, &config)?;
        let tokenizer = BertTokenizer::load(
            &dir.join("tokenizer.json"),
            sentence.max_seq_length,
            config.vocab_size,
            config.pad_token_id as u32,
        )?;
        let weights = dir.join("model.safetensors");
        let model = BertEncoder::load(&weights, &config, config.activation(&config_path)?)?;
        Ok(Self {
            config,
            sentence,
            tokenizer,
            model,
            device: device.clone(),
            dir: dir.into(),
        })
    }

    /// Embeds a tokenized batch.
    ///
    /// # Shapes
    /// `batch.ids`, `batch.mask`: `[b, s]` → `[b, hidden_size]` f32.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (b, seq) = batch.ids.dims2()?;
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<u32>();
        let mask = flat(&batch.mask)?;
        let lens: Vec<usize> = (0..b)
            .map(|i| {
                mask[i * seq..(i + 1) * seq]
                    .iter()
                    .map(|&m| m as usize)
                    .sum()
            })
            .collect();
        let states = self
            .model
            .forward(&flat(&batch.ids)?, &flat(&batch.type_ids)?, &lens, seq)?
            .to_device(&self.device)?;
        let pooled = match self.sentence.pooling {
            Pooling::Mean => pooling::mean(&states, &batch.mask)?,
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
        };
        Ok(if self.sentence.normalize {
            pooling::l2_normalize(&pooled)?
        } else {
            pooled
        })
    }

    /// Embeds `texts` as one batch: `[texts.len(), hidden_size]`.
    pub fn embed_tensor(&self, texts: &[&str]) -> Result<Tensor> {
        if texts.is_empty() {
            return Ok(Tensor::zeros(
                (0, self.config.hidden_size),
                DType::F32,
                &self.device,
            )?);
        }
        let batch = self.tokenizer.encode_batch(texts, &self.device)?;
        self.forward(&batch)
    }
}

impl TextEmbedder for BertEmbedder {
    fn dim(&self) -> usize {
        self.config.hidden_size
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_tensor(texts)?.to_vec2()?)
    }
}
