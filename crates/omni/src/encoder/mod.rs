//! Stage 2, modality encoders: model-ready tensors → features.

pub mod bert;
pub mod clip;
pub mod efficientnet;
pub mod image_text;
pub mod siglip;
pub mod whisper;

pub use image_text::ImageTextModel;

use crate::Result;

/// Texts → one vector per text (a sentence embedder such as all-MiniLM-L6-v2).
pub trait TextEmbedder {
    /// Length of each embedding.
    fn dim(&self) -> usize;

    /// Embeds `texts` as one batch; one `dim()`-long vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}
