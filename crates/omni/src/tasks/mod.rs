//! Tasks compose the stages into jobs people run: chat, generation, transcription,
//! questions about recordings.

pub mod ask;
pub mod chat;
pub mod generate;
pub mod search_space;
pub mod text_embedding;
pub mod transcribe;
