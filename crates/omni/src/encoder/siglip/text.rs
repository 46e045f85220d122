//! SigLIP's text tower: a bidirectional transformer over SentencePiece tokens padded to a
//! fixed length, pooled at the last position and passed through a linear head.
//!
//! Reference: Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training";
//! transformers `SiglipTextTransformer` (`models/siglip/modeling_siglip.py`).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, linear};

use super::config::SiglipTextConfig;
use crate::encoder::clip::layers::{Encoder, attention_mask};

/// `text_model.*`.
#[derive(Debug, Clone)]
pub struct SiglipTextTransformer {
    token_embedding: Embedding,
    position_embedding: Embedding,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    head: Linear,
}

impl SiglipTextTransformer {
    pub fn new(c: &SiglipTextConfig, vb: VarBuilder) -> Result<Self> {
        let d = c.hidden_size;
        let emb = vb.pp("embeddings");
        Ok(Self {
            token_embedding: candle_nn::embedding(c.vocab_size, d, emb.pp("token_embedding"))?,
            position_embedding: candle_nn::embedding(
                c.max_position_embeddings,
                d,
                emb.pp("position_embedding"),
            )?,
            encoder: Encoder::new(&c.dims(), vb.pp("encoder"))?,
            final_layer_norm: candle_nn::layer_norm(
                d,
                c.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            head: linear(d, c.projection(), vb.pp("head"))?,
        })
    }

    /// The text embedding (the head's output at the last position).
    ///
    /// # Shapes
    /// `ids`: N rows of L token ids; `keep`: optional 0/1 attention flags (SigLIP's
    /// processor passes none: padding is attended to). Returns (N, projection_size).
    pub fn forward(
        &self,
        ids: &[Vec<u32>],
        keep: Option<&[Vec<u32>]>,
        device: &Device,
    ) -> Result<Tensor> {
        let n = ids.len();
        let l = ids.first().map_or(0, Vec::len);
        if l == 0 {
            candle_core::bail!("empty token sequence");
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (n, l), device)?;
        let positions = self.position_embedding.embeddings().narrow(0, 0, l)?;
        let x = self
            .token_embedding
            .forward(&input)?
            .broadcast_add(&positions)?;
        let mask = match keep {
            Some(k) => Some(attention_mask(n, l, false, Some(k), device)?),
            None => None,
        };
        let x = self.encoder.forward(&x, mask.as_ref())?;
        let x = self.final_layer_norm.forward(&x)?;
        let last = x.narrow(1, l - 1, 1)?.squeeze(1)?;
        self.head.forward(&last)
    }
}
