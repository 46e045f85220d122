//! CLIP's text tower: a causal transformer over BPE tokens, pooled at the end-of-text
//! token, then projected into the shared space.
//!
//! Reference: Radford et al. 2021; transformers `CLIPTextTransformer`
//! (`models/clip/modeling_clip.py`), whose key names and EOS pooling rule this mirrors.

use candle_core::{Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::config::ClipTextConfig;
use super::layers::{Encoder, attention_mask};

/// `text_model.*`.
#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    token_embedding: Embedding,
    position_embedding: Embedding,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    eos_token_id: u32,
}

impl ClipTextTransformer {
    pub fn new(c: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
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
            eos_token_id: c.eos_token_id,
        })
    }

    /// The pooled features, before the projection.
    ///
    /// # Shapes
    /// `ids`, `keep`: N rows of L token ids and 0/1 attention flags (padding = 0).
    /// Returns (N, hidden).
    pub fn forward(&self, ids: &[Vec<u32>], keep: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let x = self.hidden_states(ids, keep, device)?;
        let rows = ids
            .iter()
            .enumerate()
            .map(|(b, row)| x.i((b, self.pool_index(row)))?.unsqueeze(0))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }

    /// The final-normed states of every position, (N, L, hidden): what Stable Diffusion's
    /// UNet attends to (transformers' `last_hidden_state`).
    pub fn hidden_states(
        &self,
        ids: &[Vec<u32>],
        keep: &[Vec<u32>],
        device: &Device,
    ) -> Result<Tensor> {
        let n = ids.len();
        let l = ids.first().map_or(0, Vec::len);
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let input = Tensor::from_vec(flat, (n, l), device)?;
        let positions = self.position_embedding.embeddings().narrow(0, 0, l)?;
        let x = self
            .token_embedding
            .forward(&input)?
            .broadcast_add(&positions)?;
        let mask = attention_mask(n, l, true, Some(keep), device)?;
        let x = self.encoder.forward(&x, Some(&mask))?;
        self.final_layer_norm.forward(&x)
    }

    /// Where transformers reads the pooled state: the first EOS token, or (for configs
    /// with the pre-#24773 `eos_token_id = 2`) the position of the largest id.
    fn pool_index(&self, row: &[u32]) -> usize {
        let argmax = |pred: &dyn Fn(u32) -> u32| {
            let mut best = 0;
            for (i, &t) in row.iter().enumerate() {
                if pred(t) > pred(row[best]) {
                    best = i;
                }
            }
            best
        };
        if self.eos_token_id == 2 {
            argmax(&|t| t)
        } else {
            let eos = self.eos_token_id;
            argmax(&|t| u32::from(t == eos))
        }
    }
}
