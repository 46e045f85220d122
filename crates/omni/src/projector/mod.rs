//! Stage 3, input projectors: encoder features → tokens in the LLM's embedding space.
//!
//! Linear, MLP and resampler projectors arrive with the multimodal-LLM work; this
//! folder is where they live.
