//! Stage 5, modality generators: turn the system's answer into speech or images.

pub mod image;
pub mod speech;
