//! Stage 2, modality encoders: model-ready tensors → features.

pub mod bert;
pub mod clip;
pub mod efficientnet;
pub(crate) mod fused;
pub mod image_text;
pub(crate) mod ops;
pub mod siglip;
pub mod universal;
pub mod whisper;

pub use image_text::{ImageTextModel, Towers};

use candle_core::{D, DType, Tensor};

use crate::Result;

/// Divides each row by its L2 norm (at least 1e-12, as `torch.nn.functional.normalize`).
///
/// # Shapes
/// `[b, d]` → `[b, d]`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norm)?.to_dtype(DType::F32)?)
}

/// Texts → one vector per text (a sentence embedder such as all-MiniLM-L6-v2).
pub trait TextEmbedder {
    /// Length of each embedding.
    fn dim(&self) -> usize;

    /// Embeds `texts` as one batch; one `dim()`-long vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}
