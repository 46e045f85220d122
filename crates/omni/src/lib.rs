//! omni: a Rust engine for general multimodal models.
//!
//! The crate follows the pipeline the seeds draw, one folder per stage:
//!
//! ```text
//! input ─► modality/ ─► encoder/ ─► projector/ ─► llm/ ─► text ─► generator/ ─► speech
//!          (bytes →      (Whisper,    (encoder      (LLaMA-family         (Kokoro TTS)
//!           tensors)      …)           features →    decoder, KV cache,
//!                                      LLM space)    sampling)
//! ```
//!
//! `tasks/` composes the stages into user-facing jobs (chat, transcription),
//! `train/` trains the alignment parts, `index/` is the embedded vector index for search,
//! and `models/` finds, fetches and verifies the weight files they load.

pub mod encoder;
pub mod error;
pub mod formats;
pub mod generator;
pub mod index;
pub mod llm;
pub mod modality;
pub mod models;
pub mod projector;
pub mod runtime;
pub mod tasks;
pub mod train;

pub use error::{Error, Result};
