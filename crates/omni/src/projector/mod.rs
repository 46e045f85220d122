//! Stage 3, input projectors: encoder features → vectors in another model's space (the
//! LLM's embedding space, or a shared image–text space).
//!
//! A projector is the small trained part of an aligned model (seeds 001, 004: ~2% of the
//! parameters). Its config is saved next to its weights, so a checkpoint says what it is.

mod config;
mod conse;
mod mlp;
pub(crate) mod norm;
mod resampler;
pub mod upm;

pub use config::{ProjectorConfig, ProjectorKind};
pub use conse::Conse;
pub use mlp::Projector;
pub use upm::{Upm, UpmConfig};
