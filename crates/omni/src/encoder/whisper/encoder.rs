//! Whisper's audio encoder (Radford et al. 2022, "Robust Speech Recognition via Large-Scale
//! Weak Supervision", §2.2): two GELU convolutions (the second with stride 2), fixed sinusoidal
//! positions, pre-norm transformer blocks and a final layer norm. Matches `AudioEncoder` of
//! OpenAI `whisper/model.py` and `WhisperEncoder` of CTranslate2 (`src/layers/whisper.cc`),
//! whose weight names it reads.

use candle_core::Tensor;

use super::config::WhisperConfig;
use super::layers::{FeedForward, LayerNorm, SelfAttention, Weights};
use crate::encoder::ops;
use crate::{Error, Result};

#[derive(Debug, Clone)]
struct EncoderLayer {
    attn: SelfAttention,
    ffn: FeedForward,
}

/// The encoder's input: two GELU convolutions (kernel 3, the second with stride 2) that
/// turn log-mel frames into tokens at half the frame rate.
#[derive(Debug, Clone)]
pub struct ConvStem {
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
}

impl ConvStem {
    pub(crate) fn load(w: &Weights, c: &WhisperConfig) -> Result<Self> {
        let d = c.n_audio_state;
        Ok(ConvStem {
            conv1_w: w.tensor("encoder/conv1/weight", &[d, c.n_mels, 3])?,
            conv1_b: w.tensor("encoder/conv1/bias", &[d])?.reshape((1, d, 1))?,
            conv2_w: w.tensor("encoder/conv2/weight", &[d, d, 3])?,
            conv2_b: w.tensor("encoder/conv2/bias", &[d])?.reshape((1, d, 1))?,
        })
    }

    /// `mel`: `[b, n_mels, frames]` → tokens `[b, ⌈frames/2⌉, d]`, positions not added.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = mel
            .conv1d(&self.conv1_w, 1, 1, 1, 1)?
            .broadcast_add(&self.conv1_b)?;
        let x = ops::gelu(&x)?;
        let x = x
            .conv1d(&self.conv2_w, 1, 2, 1, 1)?
            .broadcast_add(&self.conv2_b)?;
        Ok(ops::gelu(&x)?.transpose(1, 2)?)
    }
}

/// The audio encoder: log-mel windows → audio features.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    stem: ConvStem,
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    ln_post: LayerNorm,
    n_mels: usize,
    n_ctx: usize,
}

impl AudioEncoder {
    pub(crate) fn load(w: &Weights, c: &WhisperConfig) -> Result<Self> {
        let d = c.n_audio_state;
        let layers = (0..c.n_audio_layer)
            .map(|i| {
                let p = format!("encoder/layer_{i}");
                Ok(EncoderLayer {
                    attn: SelfAttention::load(
                        w,
                        &format!("{p}/self_attention"),
                        d,
                        c.n_audio_head,
                    )?,
                    ffn: FeedForward::load(w, &format!("{p}/ffn"), d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AudioEncoder {
            stem: ConvStem::load(w, c)?,
            positions: w.tensor("encoder/position_encodings/encodings", &[c.n_audio_ctx, d])?,
            layers,
            ln_post: w.layer_norm("encoder/layer_norm", d)?,
            n_mels: c.n_mels,
            n_ctx: c.n_audio_ctx,
        })
    }

    /// Encodes a batch of mel windows.
    ///
    /// # Shapes
    /// `mel`: `[b, n_mels, frames]` with `frames ≤ 2·n_audio_ctx` (3000) → `[b, frames/2, d]`.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let (_, n_mels, frames) = mel.dims3()?;
        if n_mels != self.n_mels || frames > 2 * self.n_ctx || frames < 2 {
            return Err(Error::InvalidInput(format!(
                "the Whisper encoder expects [batch, {}, ≤{}] mel features, got {:?}",
                self.n_mels,
                2 * self.n_ctx,
                mel.dims()
            )));
        }
        let x = self.stem.forward(mel)?; // [b, t, d]
        let t = x.dim(1)?;
        self.blocks(&x.broadcast_add(&self.positions.narrow(0, 0, t)?)?)
    }

    /// The transformer blocks and the final layer norm alone.
    ///
    /// # Shapes
    /// `x`: `[b, t, d]` (positions added) → `[b, t, d]`.
    pub fn blocks(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = (&x + layer.attn.forward(&x)?)?;
            x = (&x + layer.ffn.forward(&x)?)?;
        }
        self.ln_post.forward(&x)
    }
}
