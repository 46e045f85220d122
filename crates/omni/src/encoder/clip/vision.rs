//! CLIP's image tower: a ViT with a class token, pre- and post-LayerNorm, and a linear
//! projection into the shared space.
//!
//! Reference: Radford et al. 2021, "Learning Transferable Visual Models From Natural
//! Language Supervision"; Dosovitskiy et al. 2021 (ViT); transformers
//! `CLIPVisionTransformer` (`models/clip/modeling_clip.py`), whose key names this mirrors.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Embedding, LayerNorm, VarBuilder, conv2d_no_bias};

use super::config::ClipVisionConfig;
use super::layers::Encoder;

/// `vision_model.*`.
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    class_embedding: Tensor,
    patch_embedding: Conv2d,
    position_embedding: Embedding,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    image_size: usize,
}

impl ClipVisionTransformer {
    pub fn new(c: &ClipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = c.hidden_size;
        let emb = vb.pp("embeddings");
        let conv = Conv2dConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        let positions = c.grid() * c.grid() + 1;
        Ok(Self {
            class_embedding: emb.get(d, "class_embedding")?,
            patch_embedding: conv2d_no_bias(
                c.num_channels,
                d,
                c.patch_size,
                conv,
                emb.pp("patch_embedding"),
            )?,
            position_embedding: candle_nn::embedding(positions, d, emb.pp("position_embedding"))?,
            // sic: transformers' name for the pre-encoder LayerNorm.
            pre_layrnorm: candle_nn::layer_norm(d, c.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::new(&c.dims(), vb.pp("encoder"))?,
            post_layernorm: candle_nn::layer_norm(d, c.layer_norm_eps, vb.pp("post_layernorm"))?,
            image_size: c.image_size,
        })
    }

    /// The pooled (class-token) features, before the projection.
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S) with S = `image_size`. Returns (N, hidden).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let x = self.embed(pixels)?;
        let x = self.encoder.forward(&x, None)?;
        self.post_layernorm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// transformers' `hidden_states[layer]` (with `output_hidden_states`): index 0 is the
    /// pre-LayerNormed embeddings, `i` the output of layer `i`; negative indices count
    /// from the end (LLaVA reads `-2`).
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S). Returns (N, 1 + g², hidden), class token first.
    pub fn hidden_state(&self, pixels: &Tensor, layer: i64) -> Result<Tensor> {
        let count = self.encoder.len() as i64 + 1;
        let index = if layer < 0 { count + layer } else { layer };
        if !(0..count).contains(&index) {
            candle_core::bail!("the vision tower has no hidden state {layer} ({count} states)");
        }
        let x = self.embed(pixels)?;
        self.encoder.forward_layers(&x, None, index as usize)
    }

    /// Patch and position embeddings with the class token, pre-LayerNormed.
    fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = pixels.dims4()?;
        if h != self.image_size || w != self.image_size {
            candle_core::bail!(
                "the vision tower takes {0}×{0} images, got {h}×{w}",
                self.image_size
            );
        }
        // (N, D, g, g) → (N, g², D)
        let patches = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let d = patches.dim(2)?;
        let cls = self.class_embedding.reshape((1, 1, d))?.repeat((n, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        let x = x.broadcast_add(self.position_embedding.embeddings())?;
        self.pre_layrnorm.forward(&x)
    }
}
