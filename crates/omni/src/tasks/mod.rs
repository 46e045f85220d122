//! Tasks compose the stages into jobs people run: chat, generation, transcription,
//! questions about recordings, speech synthesis,
//! image–text spaces and the aligner that makes one.

pub mod align;
pub mod ask;
pub mod chat;
pub mod classify;
pub mod describe;
pub mod generate;
pub mod idefics3;
pub mod interleave;
pub mod llava;
pub mod mllm;
pub mod mllm_train;
pub mod onellm;
pub mod onellm_train;
pub mod search_space;
pub mod speak;
pub mod text_embedding;
pub mod transcribe;
