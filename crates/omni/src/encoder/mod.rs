//! Stage 2, modality encoders: model-ready tensors → features.

pub mod clip;
pub mod image_text;
pub mod siglip;
pub mod whisper;

pub use image_text::ImageTextModel;
