//! Stage 2, modality encoders: model-ready tensors → features.

pub mod bert;
pub mod efficientnet;
pub mod whisper;

use crate::Result;

/// Texts → one vector per text (a sentence embedder such as all-MiniLM-L6-v2).
pub trait TextEmbedder {
    /// Length of each embedding.
    fn dim(&self) -> usize;

    /// Embeds `texts` as one batch; one `dim()`-long vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}
