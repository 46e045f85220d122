//! Readers for weight-file formats that are not tied to one model family.

pub mod ct2;
pub mod npy;
pub mod safetensors;
pub mod torch_legacy;
