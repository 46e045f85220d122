//! Training the alignment parts (projectors, temperatures) in Rust, encoders frozen:
//! the optimizer, the learning-rate schedule, the contrastive loss, resumable
//! checkpoints and the datasets that ship on this kind of machine.

pub mod align;
pub mod checkpoint;
pub mod contrastive;
pub mod datasets;
pub mod frames;
pub(crate) mod frozen;
pub(crate) mod fused;
pub mod init;
pub mod manifest;
pub mod mllm;
pub mod onellm;
pub mod optim;
pub mod scenes;
pub mod signals;
pub mod steps;
pub mod synth;

pub use checkpoint::Checkpoints;
pub use contrastive::info_nce;
pub use optim::{AdamW, AdamWConfig, LrSchedule, grad_norm};
