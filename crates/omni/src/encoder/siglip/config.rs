//! SigLIP's `config.json` (transformers `SiglipConfig`, `SiglipTextConfig`,
//! `SiglipVisionConfig`), with transformers' defaults for absent fields (those of
//! google/siglip-base-patch16-224).

use serde::Deserialize;

use crate::encoder::clip::layers::{Activation, EncoderDims};

fn d_act() -> Activation {
    Activation::GeluTanh
}
fn d_eps() -> f64 {
    1e-6
}
fn d_hidden() -> usize {
    768
}
fn d_intermediate() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_true() -> bool {
    true
}

/// `text_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct SiglipTextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_act")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_pad")]
    pub pad_token_id: u32,
    /// Output size of the text head; transformers defaults it to `hidden_size`.
    pub projection_size: Option<usize>,
}
fn d_vocab() -> usize {
    32000
}
fn d_positions() -> usize {
    64
}
fn d_pad() -> u32 {
    1
}

/// `vision_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct SiglipVisionConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Pool with the attention-pooling head (else there are no pooled features).
    #[serde(default = "d_true")]
    pub vision_use_head: bool,
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    16
}

/// The whole `config.json` of a `SiglipModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct SiglipConfig {
    pub text_config: SiglipTextConfig,
    pub vision_config: SiglipVisionConfig,
}

impl SiglipTextConfig {
    pub fn dims(&self) -> EncoderDims {
        EncoderDims {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            layers: self.num_hidden_layers,
            eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }

    pub fn projection(&self) -> usize {
        self.projection_size.unwrap_or(self.hidden_size)
    }
}

impl SiglipVisionConfig {
    pub fn dims(&self) -> EncoderDims {
        EncoderDims {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            layers: self.num_hidden_layers,
            eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}
