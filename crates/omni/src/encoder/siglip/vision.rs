//! SigLIP's image tower: a ViT without class token, pooled by a multi-head attention
//! "probe" (MAP head), whose output is the image embedding.
//!
//! Reference: Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"; the MAP
//! head from Zhai et al. 2022 (LiT) / big_vision; transformers `SiglipVisionTransformer`
//! and `SiglipMultiheadAttentionPoolingHead` (`models/siglip/modeling_siglip.py`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear, VarBuilder, conv2d, linear};

use super::config::SiglipVisionConfig;
use crate::encoder::clip::layers::Encoder;
use crate::encoder::clip::layers::{EncoderDims, Mlp, attend};

/// `vision_model.head`: a learned query attending over all patches (`nn.MultiheadAttention`
/// with a packed `in_proj_weight`), then a residual MLP.
#[derive(Debug, Clone)]
struct PoolingHead {
    probe: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    layernorm: LayerNorm,
    mlp: Mlp,
    heads: usize,
}

impl PoolingHead {
    fn new(d: &EncoderDims, vb: VarBuilder) -> Result<Self> {
        let h = d.hidden;
        let attn = vb.pp("attention");
        let w = attn.get((3 * h, h), "in_proj_weight")?;
        let b = attn.get(3 * h, "in_proj_bias")?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                w.narrow(0, i * h, h)?,
                Some(b.narrow(0, i * h, h)?),
            ))
        };
        Ok(Self {
            probe: vb.get((1, 1, h), "probe")?,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: linear(h, h, attn.pp("out_proj"))?,
            layernorm: candle_nn::layer_norm(h, d.eps, vb.pp("layernorm"))?,
            mlp: Mlp::new(d, vb.pp("mlp"))?,
            heads: d.heads,
        })
    }

    /// (N, L, D) → (N, D).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let probe = self.probe.repeat((n, 1, 1))?;
        let q = self.q.forward(&probe)?;
        let k = self.k.forward(x)?;
        let v = self.v.forward(x)?;
        let y = self.out.forward(&attend(&q, &k, &v, self.heads, None)?)?;
        let y = (&y + self.mlp.forward(&self.layernorm.forward(&y)?)?)?;
        y.squeeze(1)
    }
}

/// `vision_model.*`.
#[derive(Debug, Clone)]
pub struct SiglipVisionTransformer {
    patch_embedding: Conv2d,
    position_embedding: Embedding,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    head: Option<PoolingHead>,
    image_size: usize,
}

impl SiglipVisionTransformer {
    pub fn new(c: &SiglipVisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = c.hidden_size;
        let emb = vb.pp("embeddings");
        let conv = Conv2dConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        let head = if c.vision_use_head {
            Some(PoolingHead::new(&c.dims(), vb.pp("head"))?)
        } else {
            None
        };
        Ok(Self {
            patch_embedding: conv2d(
                c.num_channels,
                d,
                c.patch_size,
                conv,
                emb.pp("patch_embedding"),
            )?,
            position_embedding: candle_nn::embedding(
                c.grid() * c.grid(),
                d,
                emb.pp("position_embedding"),
            )?,
            encoder: Encoder::new(&c.dims(), vb.pp("encoder"))?,
            post_layernorm: candle_nn::layer_norm(d, c.layer_norm_eps, vb.pp("post_layernorm"))?,
            head,
            image_size: c.image_size,
        })
    }

    /// The pooled image embedding (the MAP head's output).
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S) with S = `image_size`. Returns (N, hidden).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let x = self.last_hidden_state(pixels)?;
        match &self.head {
            Some(head) => head.forward(&x),
            None => candle_core::bail!(
                "this SigLIP vision tower has no pooling head (vision_use_head = false)"
            ),
        }
    }

    /// The patch states after the final LayerNorm (what Idefics3's connector reads).
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S) with S = `image_size`. Returns (N, (S / patch)², hidden).
    pub fn last_hidden_state(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        if h != self.image_size || w != self.image_size {
            candle_core::bail!(
                "the vision tower takes {0}×{0} images, got {h}×{w}",
                self.image_size
            );
        }
        let x = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .broadcast_add(self.position_embedding.embeddings())?;
        let x = self.encoder.forward(&x, None)?;
        self.post_layernorm.forward(&x)
    }
}
