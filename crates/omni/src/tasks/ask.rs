//! Questions about a recording: transcribe it with Whisper, then let a chat model answer
//! from the transcript. The job behind `omni ask --audio`.

use serde::Serialize;

use crate::llm::{GenerateOptions, Generation, Llm, Message};
use crate::tasks::transcribe::Transcript;
use crate::{Error, Result};

/// The system message that keeps the model on the transcript.
pub const TRANSCRIPT_SYSTEM: &str =
    "You answer questions about an audio recording, using only its transcript.";

/// An answer and what it was drawn from.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub question: String,
    pub transcript: Transcript,
    pub answer: String,
    /// Tokens, finish reason and timings of the answer.
    pub generation: Generation,
}

/// The chat messages that ask `question` about `transcript`.
pub fn transcript_messages(transcript: &str, question: &str) -> Vec<Message> {
    vec![
        Message::system(TRANSCRIPT_SYSTEM),
        Message::user(format!(
            "Transcript: \"{}\"\n\nQuestion: {}",
            transcript.trim(),
            question.trim()
        )),
    ]
}

/// Answers `question` about a transcribed recording, streaming the answer to `on_text`
/// (which returns `false` to stop).
pub fn answer_from_transcript(
    llm: &Llm,
    transcript: Transcript,
    question: &str,
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Answer> {
    if transcript.text.trim().is_empty() {
        return Err(Error::InvalidInput(
            "no speech was recognised in the recording, so there is nothing to answer from".into(),
        ));
    }
    let messages = transcript_messages(&transcript.text, question);
    let prompt = llm.apply_chat_template(&messages, true)?;
    let tokens = llm.tokenizer.encode(&prompt, true, true)?;
    let mut cache = llm.new_cache(None);
    let generation = llm.generate(&mut cache, &tokens, options, on_text)?;
    Ok(Answer {
        question: question.to_string(),
        transcript,
        answer: generation.text.trim().to_string(),
        generation,
    })
}
