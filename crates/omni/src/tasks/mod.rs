//! Tasks compose the stages into jobs people run: chat, generation, transcription.

pub mod chat;
pub mod generate;
pub mod transcribe;
