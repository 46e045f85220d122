//! Stage 2, modality encoders: model-ready tensors → features.

pub mod whisper;
