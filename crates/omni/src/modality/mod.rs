//! Stage 1, modality tokenizers: raw bytes of each modality → model-ready tensors.

pub mod audio;
pub mod image;
pub mod universal;
