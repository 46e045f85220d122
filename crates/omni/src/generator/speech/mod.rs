//! Speech out: text → normalised text → phonemes (espeak-ng + Kokoro's mapping) →
//! vocabulary ids → acoustic model (Kokoro-82M) → 24 kHz waveform.
//!
//! ```text
//! text ─► normalize ─► sentences ─► g2p ─► ids (≤ 510) ─► AcousticModel ─► samples
//!                                                          (style from the voice pack)
//! ```
//!
//! The acoustic model is a trait: Kokoro's int8 ONNX graph run by ONNX Runtime implements
//! it today; a native candle port of the same network would implement it too.

pub mod g2p;
mod kokoro;
pub mod normalize;
mod onnx;
mod voices;

pub use kokoro::{DEFAULT_VOICE, Kokoro, MAX_TOKENS, SpeechChunk, SpeechOptions, SpeechStream};
pub use voices::{OPENAI_VOICES, Voice, VoiceBank, map_openai_voice};

use crate::Result;

/// A network that turns phoneme ids and a style vector into a waveform.
pub trait AcousticModel: Send + Sync {
    /// Output sample rate in Hz.
    fn sample_rate(&self) -> u32;

    /// Samples for `ids` (vocabulary ids without boundary tokens), spoken in the style
    /// `style` at relative `speed`.
    fn synthesize(&self, ids: &[i64], style: &[f32], speed: f32) -> Result<Vec<f32>>;
}
