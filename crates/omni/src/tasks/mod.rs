//! Tasks compose the stages into jobs people run: chat, generation, transcription.

pub mod transcribe;
