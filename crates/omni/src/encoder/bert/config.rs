//! Configuration of a sentence-transformers BERT embedder, read from the model directory:
//! `config.json` (HF `BertConfig` field names), `sentence_bert_config.json`
//! (`max_seq_length`), `1_Pooling/config.json` (pooling mode) and `modules.json` (whether a
//! `Normalize` module follows the pooling).

use std::path::Path;

use serde::Deserialize;

use crate::encoder::ops::Activation;
use crate::{Error, Result};

/// `config.json` of a HF `BertModel`; defaults are those of `transformers.BertConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    /// `gelu` (erf), `gelu_new`/`gelu_pytorch_tanh` (tanh approximation) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_vocab() -> usize {
    30522
}
fn default_hidden() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_intermediate() -> usize {
    3072
}
fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let config: Self = read_json(path)?;
        if let Some(t) = &config.model_type
            && !matches!(t.as_str(), "bert")
        {
            return Err(Error::UnsupportedArchitecture {
                path: path.into(),
                arch: t.clone(),
                supported: "bert".into(),
            });
        }
        if config.position_embedding_type != "absolute" {
            return Err(Error::model_file(
                path,
                format!(
                    "position_embedding_type `{}` is not supported (only `absolute`)",
                    config.position_embedding_type
                ),
            ));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(Error::model_file(
                path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        config.activation(path)?;
        Ok(config)
    }

    /// The feed-forward activation `hidden_act` names.
    pub(crate) fn activation(&self, path: &Path) -> Result<Activation> {
        Ok(match self.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::model_file(
                    path,
                    format!("hidden_act `{other}` is not supported (gelu, gelu_new, relu)"),
                ));
            }
        })
    }
}

/// How token states become one sentence vector (sentence-transformers `Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token states under the attention mask.
    Mean,
    /// The state of the first (`[CLS]`) token.
    Cls,
}

/// The sentence-transformers pipeline around the BERT encoder.
#[derive(Debug, Clone)]
pub struct SentenceConfig {
    /// Inputs are truncated to this many tokens (special tokens included).
    pub max_seq_length: usize,
    pub pooling: Pooling,
    /// Whether the pooled vector is L2-normalised (a `Normalize` module in `modules.json`).
    pub normalize: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

impl SentenceConfig {
    /// Reads the sentence-transformers files of `dir`; absent files mean the defaults of
    /// all-MiniLM-style models: mean pooling, L2 normalisation, the model's full context.
    pub fn load(dir: &Path, bert: &BertConfig) -> Result<Self> {
        let mut max_seq_length = bert.max_position_embeddings;
        let st = dir.join("sentence_bert_config.json");
        if st.exists() {
            let c: SentenceBertConfig = read_json(&st)?;
            if let Some(n) = c.max_seq_length {
                max_seq_length = max_seq_length.min(n);
            }
        }
        let mut pooling = Pooling::Mean;
        let pc = dir.join("1_Pooling/config.json");
        if pc.exists() {
            let c: PoolingConfig = read_json(&pc)?;
            pooling = match (
                c.pooling_mode_mean_tokens,
                c.pooling_mode_cls_token,
                c.pooling_mode_max_tokens || c.pooling_mode_mean_sqrt_len_tokens,
            ) {
                (true, false, false) => Pooling::Mean,
                (false, true, false) => Pooling::Cls,
                _ => {
                    return Err(Error::model_file(
                        &pc,
                        "unsupported pooling: exactly one of mean or cls pooling is supported",
                    ));
                }
            };
        }
        let mut normalize = true;
        let modules = dir.join("modules.json");
        if modules.exists() {
            let m: Vec<Module> = read_json(&modules)?;
            normalize = m.iter().any(|m| m.kind.ends_with(".Normalize"));
        }
        if max_seq_length < 2 {
            return Err(Error::model_file(&st, "max_seq_length must be at least 2"));
        }
        Ok(Self {
            max_seq_length,
            pooling,
            normalize,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::model_file(path, format!("invalid JSON: {e}")))
}
