//! Text generation from one prompt, raw or through the model's chat template: the job
//! behind `omni generate`.

use crate::Result;
use crate::llm::{GenerateOptions, Generation, Llm, Message};

/// One generation request.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    pub chat: bool,
    /// A system message (chat only).
    pub system: Option<String>,
    /// Context size in tokens (default: the model's).
    pub context: Option<usize>,
    pub options: GenerateOptions,
}

impl GenerateRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }
}

/// The token ids of the request's prompt: the raw text, or the chat-templated
/// conversation. Special-token texts (`<|im_start|>`, …) are recognised in both, as
/// llama.cpp does for prompts.
pub fn prompt_tokens(llm: &Llm, request: &GenerateRequest) -> Result<Vec<u32>> {
    if request.chat {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(request.prompt.clone()));
        let text = llm.apply_chat_template(&messages, true)?;
        llm.tokenizer.encode(&text, true, true)
    } else {
        llm.tokenizer.encode(&request.prompt, true, true)
    }
}

/// Generates a continuation of the request's prompt, streaming text to `on_text`
/// (which returns `false` to stop).
pub fn generate(
    llm: &Llm,
    request: &GenerateRequest,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    let prompt = prompt_tokens(llm, request)?;
    let mut cache = llm.new_cache(request.context);
    llm.generate(&mut cache, &prompt, &request.options, on_text)
}
