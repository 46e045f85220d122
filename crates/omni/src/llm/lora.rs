//! LoRA adapters on the decoder's linear layers: `W x + (α / r) · B A x` with `A` (r × in)
//! and `B` (out × r), `B` starting at zero so training starts from the unchanged LLM.
//! [`super::DenseLlama`] trains them; [`super::LlamaModel::merge_lora`] folds the trained
//! `B A` into its quantized weights (re-quantized to Q8_0) for inference.
//!
//! Reference: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (2021), §4.1
//! (initialisation, the α / r scale); LLaVA-1.5's stage-2 LoRA variant.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The layers a LoRA adapter can wrap, by their GGUF names.
pub const LORA_TARGETS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// Which layers get adapters, and their rank and scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Layer names in every block (GGUF names: `attn_q`, `attn_v`, `ffn_up`, …).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec!["attn_q".into(), "attn_v".into()],
        }
    }
}

impl LoraConfig {
    /// `α / r`, the factor on `B A x`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 || self.targets.is_empty() {
            return Err(Error::InvalidInput(
                "LoRA needs a positive rank and at least one target layer".into(),
            ));
        }
        if let Some(bad) = self
            .targets
            .iter()
            .find(|t| !LORA_TARGETS.contains(&t.as_str()))
        {
            return Err(Error::InvalidInput(format!(
                "unknown LoRA target `{bad}` (known: {})",
                LORA_TARGETS.join(", ")
            )));
        }
        Ok(())
    }

    /// The names of layer `target` of block `block`'s `A` and `B` matrices.
    pub fn names(block: usize, target: &str) -> (String, String) {
        (
            format!("blk.{block}.{target}.lora_a"),
            format!("blk.{block}.{target}.lora_b"),
        )
    }
}

/// Trained adapters: `A` and `B` of every wrapped layer, by [`LoraConfig::names`].
#[derive(Debug, Clone)]
pub struct LoraWeights {
    pub config: LoraConfig,
    pub tensors: HashMap<String, Tensor>,
}

impl LoraWeights {
    /// File names in a model directory.
    pub const WEIGHTS: &str = "lora.safetensors";
    pub const CONFIG: &str = "lora.json";

    /// The weight change `(α / r) · B A` `(out, in)` of layer `target` in block `block`,
    /// `None` when it has no adapter.
    pub fn delta(&self, block: usize, target: &str) -> Result<Option<Tensor>> {
        let (a, b) = LoraConfig::names(block, target);
        match (self.tensors.get(&a), self.tensors.get(&b)) {
            (Some(a), Some(b)) => {
                let ba = b.to_dtype(DType::F32)?.matmul(&a.to_dtype(DType::F32)?)?;
                Ok(Some((ba * self.config.scale())?))
            }
            (None, None) => Ok(None),
            _ => Err(Error::InvalidInput(format!(
                "the LoRA adapter of blk.{block}.{target} lacks its A or B matrix"
            ))),
        }
    }

    /// Writes `lora.json` and `lora.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(Self::WEIGHTS);
        candle_core::safetensors::save(&self.tensors, &path)
            .map_err(|e| Error::model_file(&path, e.to_string()))?;
        let json = dir.join(Self::CONFIG);
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| Error::InvalidInput(format!("LoRA config: {e}")))?;
        std::fs::write(&json, text + "\n").map_err(|e| Error::io(&json, e))
    }

    /// Reads the adapters of a model directory, `None` when it has none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let json = dir.join(Self::CONFIG);
        if !json.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
        let config: LoraConfig =
            serde_json::from_str(&text).map_err(|e| Error::model_file(&json, e.to_string()))?;
        config
            .validate()
            .map_err(|e| Error::model_file(&json, e.to_string()))?;
        let path = dir.join(Self::WEIGHTS);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::model_file(&path, e.to_string()))?;
        Ok(Some(Self { config, tensors }))
    }
}
