//! The decoder's configuration, resolved from GGUF metadata (`<arch>.*` keys) and the
//! tensors present, as llama.cpp's `llama_model::load_hparams` reads them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use super::gguf::Metadata;
use crate::{Error, Result};

/// Architectures (`general.architecture`) this decoder runs.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// The decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA and its many descendants (SmolLM, Mistral without sliding window, …).
    Llama,
    /// Qwen2 / Qwen2.5: LLaMA with biases on the q/k/v projections and NeoX-style RoPE.
    Qwen2,
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)`: llama.cpp's `LLAMA_ROPE_TYPE_NORM`. GGUF llama weights are
    /// converted with q/k rows permuted so that this matches HF's rotate-half.
    Interleaved,
    /// Pairs `(i, i + d/2)`: `LLAMA_ROPE_TYPE_NEOX` (Qwen2 and HF's rotate-half).
    Neox,
}

/// Everything the decoder needs to know about the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub arch: Arch,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// `<arch>.embedding_length`.
    pub hidden_size: usize,
    /// `<arch>.block_count`.
    pub n_layer: usize,
    /// `<arch>.attention.head_count`.
    pub n_head: usize,
    /// `<arch>.attention.head_count_kv` (grouped-query attention); defaults to `n_head`.
    pub n_kv_head: usize,
    /// `<arch>.attention.key_length`, default `hidden_size / n_head`.
    pub head_dim: usize,
    /// `<arch>.feed_forward_length`.
    pub ffn_dim: usize,
    /// `<arch>.context_length`: the context the model was trained for.
    pub context_length: usize,
    /// Vocabulary size (`<arch>.vocab_size`, else the tokenizer's token count).
    pub vocab_size: usize,
    /// `<arch>.rope.dimension_count`: leading dimensions of a head that RoPE rotates.
    pub rope_dim: usize,
    /// `<arch>.rope.freq_base` (θ), default 10000.
    pub rope_theta: f32,
    /// `1 / <arch>.rope.scaling.factor` for linear scaling, else 1.
    pub rope_freq_scale: f32,
    pub rope_style: RopeStyle,
    /// `<arch>.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Whether q/k/v projections have biases (`blk.0.attn_q.bias` present; Qwen2).
    pub qkv_bias: bool,
    /// Whether the output head reuses the token embeddings (no `output.weight`).
    pub tied_embeddings: bool,
}

impl LlmConfig {
    /// Resolves the config of the GGUF file at `path` from its metadata and tensor names.
    pub fn from_metadata(
        path: &Path,
        metadata: &HashMap<String, Value>,
        has_tensor: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let md = Metadata::new(path, metadata);
        let arch_name = md.str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(Error::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    arch: other.to_string(),
                    supported: SUPPORTED_ARCHITECTURES.join(", "),
                });
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        if md.opt_usize(&key("expert_count"))?.unwrap_or(0) > 1 {
            return Err(Error::model_file(
                path,
                format!("mixture-of-experts `{arch_name}` models are not supported"),
            ));
        }
        let hidden_size = md.usize(&key("embedding_length"))?;
        let n_layer = md.usize(&key("block_count"))?;
        let n_head = md.usize(&key("attention.head_count"))?;
        let n_kv_head = md
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        let bad = |reason: String| Error::model_file(path, reason);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(bad(format!(
                "{n_head} attention heads cannot be grouped over {n_kv_head} key/value heads"
            )));
        }
        if hidden_size == 0 || n_layer == 0 {
            return Err(bad("zero embedding length or block count".into()));
        }
        let context_length = md.usize(&key("context_length"))?;
        if context_length == 0 {
            return Err(bad("zero context length".into()));
        }
        let head_dim = md
            .opt_usize(&key("attention.key_length"))?
            .unwrap_or(hidden_size / n_head);
        let value_dim = md
            .opt_usize(&key("attention.value_length"))?
            .unwrap_or(head_dim);
        if value_dim != head_dim || head_dim == 0 || head_dim % 2 != 0 {
            return Err(bad(format!(
                "unsupported head sizes (key {head_dim}, value {value_dim})"
            )));
        }
        let rope_dim = md
            .opt_usize(&key("rope.dimension_count"))?
            .unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(bad(format!(
                "RoPE dimension {rope_dim} does not fit head size {head_dim}"
            )));
        }
        let rope_freq_scale = match md.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => {
                let factor = md.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if factor > 0.0 { 1.0 / factor } else { 1.0 }
            }
            Some(other) => return Err(bad(format!("unsupported RoPE scaling `{other}`"))),
        };
        let vocab_size = match md.opt_usize(&key("vocab_size"))? {
            Some(v) => v,
            None => md.str_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(Self {
            arch,
            name: md.opt_str("general.name")?.map(str::to_string),
            hidden_size,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: md.usize(&key("feed_forward_length"))?,
            context_length,
            vocab_size,
            rope_dim,
            rope_theta: md.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_freq_scale,
            rope_style: match arch {
                Arch::Llama => RopeStyle::Interleaved,
                Arch::Qwen2 => RopeStyle::Neox,
            },
            rms_eps: md
                .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
                .ok_or_else(|| {
                    bad(format!(
                        "missing metadata `{}`",
                        key("attention.layer_norm_rms_epsilon")
                    ))
                })?,
            qkv_bias: has_tensor("blk.0.attn_q.bias"),
            tied_embeddings: !has_tensor("output.weight"),
        })
    }
}

impl LlmConfig {
    /// The config of a Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` checkpoint
    /// (`config.json`, or a VLM's `text_config`); `path` names the file in errors.
    pub fn from_hf(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::model_file(path, reason);
        let usize_of = |key: &str| -> Result<usize> {
            value[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("missing or non-integer `{key}`")))
        };
        let opt_usize = |key: &str| value[key].as_u64().map(|v| v as usize);
        let arch = match value["model_type"].as_str().unwrap_or("llama") {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(Error::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    arch: other.to_string(),
                    supported: SUPPORTED_ARCHITECTURES.join(", "),
                });
            }
        };
        let hidden_size = usize_of("hidden_size")?;
        let n_head = usize_of("num_attention_heads")?;
        let n_kv_head = opt_usize("num_key_value_heads").unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(bad(format!(
                "{n_head} attention heads cannot be grouped over {n_kv_head} key/value heads"
            )));
        }
        let head_dim = opt_usize("head_dim").unwrap_or(hidden_size / n_head);
        // transformers 5 nests RoPE settings in `rope_parameters`.
        let rope_theta = value["rope_parameters"]["rope_theta"]
            .as_f64()
            .or_else(|| value["rope_theta"].as_f64())
            .unwrap_or(10_000.0) as f32;
        let rope_type = value["rope_parameters"]["rope_type"]
            .as_str()
            .or_else(|| value["rope_scaling"]["rope_type"].as_str())
            .unwrap_or("default");
        if rope_type != "default" {
            return Err(bad(format!("unsupported RoPE scaling `{rope_type}`")));
        }
        Ok(Self {
            arch,
            name: None,
            hidden_size,
            n_layer: usize_of("num_hidden_layers")?,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: usize_of("intermediate_size")?,
            context_length: opt_usize("max_position_embeddings").unwrap_or(2048),
            vocab_size: usize_of("vocab_size")?,
            rope_dim: head_dim,
            rope_theta,
            rope_freq_scale: 1.0,
            // HF checkpoints keep q/k unpermuted: rotate-half pairs.
            rope_style: RopeStyle::Neox,
            rms_eps: value["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            qkv_bias: arch == Arch::Qwen2 || value["attention_bias"].as_bool() == Some(true),
            tied_embeddings: value["tie_word_embeddings"].as_bool().unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// SmolLM2-135M-Instruct's metadata, as in its GGUF.
    #[test]
    fn llama_metadata() {
        let m = md(&[
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String("Smollm2 135M".into())),
            ("llama.block_count", Value::U32(30)),
            ("llama.context_length", Value::U32(8192)),
            ("llama.embedding_length", Value::U32(576)),
            ("llama.feed_forward_length", Value::U32(1536)),
            ("llama.attention.head_count", Value::U32(9)),
            ("llama.attention.head_count_kv", Value::U32(3)),
            ("llama.rope.freq_base", Value::F32(100000.0)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("llama.vocab_size", Value::U32(49152)),
            ("llama.rope.dimension_count", Value::U32(64)),
        ]);
        let c = LlmConfig::from_metadata(Path::new("x.gguf"), &m, |_| false).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(
            (c.hidden_size, c.n_layer, c.n_head, c.n_kv_head),
            (576, 30, 9, 3)
        );
        assert_eq!(
            (c.head_dim, c.ffn_dim, c.context_length, c.vocab_size),
            (64, 1536, 8192, 49152)
        );
        assert_eq!(
            (c.rope_dim, c.rope_theta, c.rope_style),
            (64, 100000.0, RopeStyle::Interleaved)
        );
        assert_eq!(c.rms_eps, 1e-5);
        assert!(!c.qkv_bias);
        assert!(c.tied_embeddings);
    }

    /// Qwen2.5-Coder-0.5B-Instruct's metadata: q/k/v biases, NeoX RoPE, θ = 1e6.
    #[test]
    fn qwen2_metadata() {
        let m = md(&[
            ("general.architecture", Value::String("qwen2".into())),
            ("qwen2.block_count", Value::U32(24)),
            ("qwen2.context_length", Value::U32(32768)),
            ("qwen2.embedding_length", Value::U32(896)),
            ("qwen2.feed_forward_length", Value::U32(4864)),
            ("qwen2.attention.head_count", Value::U32(14)),
            ("qwen2.attention.head_count_kv", Value::U32(2)),
            ("qwen2.rope.freq_base", Value::F32(1000000.0)),
            ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
            (
                "tokenizer.ggml.tokens",
                Value::Array((0..151936).map(|_| Value::String(String::new())).collect()),
            ),
        ]);
        let has = |name: &str| matches!(name, "blk.0.attn_q.bias" | "output.weight");
        let c = LlmConfig::from_metadata(Path::new("q.gguf"), &m, has).unwrap();
        assert_eq!(c.arch, Arch::Qwen2);
        assert_eq!(
            (c.hidden_size, c.n_layer, c.n_head, c.n_kv_head),
            (896, 24, 14, 2)
        );
        assert_eq!((c.head_dim, c.rope_dim, c.ffn_dim), (64, 64, 4864));
        assert_eq!((c.rope_theta, c.rope_style), (1_000_000.0, RopeStyle::Neox));
        assert_eq!((c.context_length, c.vocab_size), (32768, 151936));
        assert_eq!(c.rms_eps, 1e-6);
        assert!(c.qkv_bias);
        assert!(!c.tied_embeddings);
    }

    #[test]
    fn other_architectures_are_refused_by_name() {
        let m = md(&[("general.architecture", Value::String("gpt2".into()))]);
        let err = LlmConfig::from_metadata(Path::new("g.gguf"), &m, |_| false).unwrap_err();
        assert!(matches!(err, Error::UnsupportedArchitecture { ref arch, .. } if arch == "gpt2"));
        assert!(err.to_string().contains("g.gguf"), "{err}");
        let m = md(&[("general.name", Value::String("x".into()))]);
        let err = LlmConfig::from_metadata(Path::new("n.gguf"), &m, |_| false).unwrap_err();
        assert!(err.to_string().contains("general.architecture"), "{err}");
    }
}
