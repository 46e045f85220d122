//! CLIP's `config.json` (transformers `CLIPConfig`, `CLIPTextConfig`, `CLIPVisionConfig`),
//! with transformers' defaults for absent fields (those of openai/clip-vit-base-patch32).

use serde::Deserialize;

use super::layers::{Activation, EncoderDims};

fn d_quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn d_eps() -> f64 {
    1e-5
}
fn d_projection() -> usize {
    512
}
fn d_logit_scale() -> f64 {
    2.6592
}

/// `text_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "d_text_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_text_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_text_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_text_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_text_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_text_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// 2 in checkpoints converted before transformers PR #24773, which then pool at the
    /// largest token id instead of the first EOS.
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
    #[serde(default = "d_pad")]
    pub pad_token_id: u32,
}
fn d_text_vocab() -> usize {
    49408
}
fn d_text_hidden() -> usize {
    512
}
fn d_text_intermediate() -> usize {
    2048
}
fn d_text_layers() -> usize {
    12
}
fn d_text_heads() -> usize {
    8
}
fn d_text_positions() -> usize {
    77
}
fn d_eos() -> u32 {
    2
}
fn d_pad() -> u32 {
    1
}

/// `vision_config`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "d_vis_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_vis_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_text_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_vis_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}
fn d_vis_hidden() -> usize {
    768
}
fn d_vis_intermediate() -> usize {
    3072
}
fn d_vis_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}

/// The whole `config.json` of a `CLIPModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    #[serde(default = "d_projection")]
    pub projection_dim: usize,
    #[serde(default = "d_logit_scale")]
    pub logit_scale_init_value: f64,
}

impl ClipTextConfig {
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
}

impl ClipVisionConfig {
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

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}
