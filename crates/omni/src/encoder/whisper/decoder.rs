//! Whisper's text decoder (Radford et al. 2022): learned token and position embeddings,
//! pre-norm blocks of causal self-attention (with a KV cache), cross-attention to the audio
//! features and a GELU feed-forward, a final layer norm and an output head tied to the token
//! embedding. Matches `TextDecoder` of OpenAI `whisper/model.py` and CTranslate2's
//! `TransformerDecoder` as configured by its `WhisperSpec`.
//!
//! The weights are immutable; everything that changes while decoding lives in
//! [`DecoderState`].

use candle_core::{Device, Tensor};

use super::config::WhisperConfig;
use super::layers::{
    CrossAttention, CrossKv, FeedForward, KvCache, LayerNorm, SelfAttention, Weights,
};
use super::linear::Linear;
use crate::{Error, Result};

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: SelfAttention,
    cross_attn: CrossAttention,
    ffn: FeedForward,
}

/// The text decoder.
#[derive(Debug, Clone)]
pub struct TextDecoder {
    embed: Tensor,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    ln: LayerNorm,
    head: Linear,
    n_ctx: usize,
}

/// Per-sequence decoding state: the self-attention cache of each layer (one row per
/// hypothesis) and the cross-attention keys/values of the current audio window.
#[derive(Debug, Clone)]
pub struct DecoderState {
    self_kv: Vec<KvCache>,
    cross: Vec<CrossKv>,
}

impl DecoderState {
    /// Positions decoded so far.
    pub fn offset(&self) -> usize {
        self.self_kv.first().map_or(0, KvCache::len)
    }

    /// Keeps (and reorders, or repeats) the hypotheses `rows` of the batch.
    pub fn select_rows(&mut self, rows: &[u32], device: &Device) -> Result<()> {
        let rows = Tensor::new(rows, device)?;
        for cache in &mut self.self_kv {
            cache.select_rows(&rows)?;
        }
        Ok(())
    }
}

impl TextDecoder {
    pub(crate) fn load(w: &Weights, c: &WhisperConfig) -> Result<Self> {
        let d = c.n_text_state;
        let layers = (0..c.n_text_layer)
            .map(|i| {
                let p = format!("decoder/layer_{i}");
                Ok(DecoderLayer {
                    self_attn: SelfAttention::load(
                        w,
                        &format!("{p}/self_attention"),
                        d,
                        c.n_text_head,
                    )?,
                    cross_attn: CrossAttention::load(
                        w,
                        &format!("{p}/attention"),
                        d,
                        c.n_text_head,
                    )?,
                    ffn: FeedForward::load(w, &format!("{p}/ffn"), d)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = w.matrix("decoder/embeddings/weight", &[c.n_vocab, d])?;
        // The head is `decoder/projection`, an alias of the embedding in Whisper checkpoints
        // (the same variable, loaded once).
        let tied = w.file.get("decoder/projection/weight").is_none_or(|p| {
            w.file
                .get("decoder/embeddings/weight")
                .is_some_and(|e| std::ptr::eq(p, e))
        });
        let head_w = if tied {
            embed.clone()
        } else {
            w.matrix("decoder/projection/weight", &[c.n_vocab, d])?
        };
        let head_b = match w.file.get("decoder/projection/bias") {
            Some(_) => Some(w.tensor("decoder/projection/bias", &[c.n_vocab])?),
            None => None,
        };
        Ok(TextDecoder {
            embed,
            positions: w.tensor("decoder/position_encodings/encodings", &[c.n_text_ctx, d])?,
            layers,
            ln: w.layer_norm("decoder/layer_norm", d)?,
            head: Linear::new(head_w, head_b)?,
            n_ctx: c.n_text_ctx,
        })
    }

    /// A fresh state for one audio window's encoder output `[1, s, d]`.
    pub fn start(&self, audio_features: &Tensor) -> Result<DecoderState> {
        let cross = self
            .layers
            .iter()
            .map(|l| l.cross_attn.encode_memory(audio_features))
            .collect::<Result<_>>()?;
        Ok(DecoderState {
            self_kv: vec![KvCache::default(); self.layers.len()],
            cross,
        })
    }

    /// Runs `tokens` through the decoder after the positions already in `state`, returning the
    /// final-normed hidden states (apply [`Self::logits`] to the rows you need).
    ///
    /// # Shapes
    /// `tokens`: `[b, t]` (u32) → `[b, t, d]`; `b` must match the rows cached in `state`.
    pub fn forward(&self, tokens: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let offset = state.offset();
        if offset + t > self.n_ctx {
            return Err(Error::ContextOverflow {
                tokens: offset + t,
                context: self.n_ctx,
            });
        }
        let x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .to_dtype(candle_core::DType::F32)?
            .reshape((b, t, ()))?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, offset, t)?)?;
        for (layer, (cache, cross)) in self
            .layers
            .iter()
            .zip(state.self_kv.iter_mut().zip(&state.cross))
        {
            x = (&x + layer.self_attn.forward_cached(&x, cache)?)?;
            x = (&x + layer.cross_attn.forward(&x, cross)?)?;
            x = (&x + layer.ffn.forward(&x)?)?;
        }
        self.ln.forward(&x)
    }

    /// Vocabulary logits of final hidden states.
    ///
    /// # Shapes
    /// `hidden`: `[n, d]` → `[n, n_vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(hidden)
    }
}
