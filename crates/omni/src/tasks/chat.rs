//! Multi-turn chat: the conversation, rendered with the model's chat template on every
//! turn, and a KV cache kept across turns so that only the new part of the conversation
//! is run (the longest prefix of tokens shared with the previous turn is reused).

use crate::Result;
use crate::llm::{GenerateOptions, Generation, KvCache, Llm, Message};

/// A conversation with a language model.
pub struct ChatSession<'m> {
    llm: &'m Llm,
    system: Option<String>,
    messages: Vec<Message>,
    options: GenerateOptions,
    cache: KvCache,
    /// The tokens whose keys and values are in `cache` (`cache.len()` of them).
    cached: Vec<u32>,
}

impl std::fmt::Debug for ChatSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatSession")
            .field("messages", &self.messages)
            .field("cached_tokens", &self.cached.len())
            .finish()
    }
}

impl<'m> ChatSession<'m> {
    /// A new conversation; `context` is its size in tokens (default: the model's).
    pub fn new(
        llm: &'m Llm,
        system: Option<String>,
        options: GenerateOptions,
        context: Option<usize>,
    ) -> Self {
        Self {
            llm,
            system,
            messages: Vec::new(),
            options,
            cache: llm.new_cache(context),
            cached: Vec::new(),
        }
    }

    /// The messages so far (without the system message).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Tokens of the conversation currently held in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.cached.len()
    }

    /// The context size in tokens.
    pub fn context(&self) -> usize {
        self.cache.capacity()
    }

    /// Forgets the conversation (the system message stays).
    pub fn reset(&mut self) {
        self.messages.clear();
        self.cache.clear();
        self.cached.clear();
    }

    /// Adds the user's message and generates the assistant's reply, streaming it to
    /// `on_text` (which returns `false` to stop). On error the message is not kept.
    pub fn send(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.messages.push(Message::user(user));
        let result = self.reply(on_text);
        if result.is_err() {
            self.messages.pop();
        }
        result
    }

    fn reply(&mut self, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        let mut conversation = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = &self.system {
            conversation.push(Message::system(system.clone()));
        }
        conversation.extend(self.messages.iter().cloned());
        let text = self.llm.apply_chat_template(&conversation, true)?;
        let prompt = self.llm.tokenizer.encode(&text, true, true)?;
        let shared = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        self.cache.truncate(shared);
        let result = self
            .llm
            .generate(&mut self.cache, &prompt, &self.options, on_text);
        // Whatever happened, the cache holds a prefix of the prompt and the reply.
        let mut fed = prompt;
        if let Ok(g) = &result {
            fed.extend_from_slice(&g.tokens);
        }
        fed.truncate(self.cache.len());
        self.cached = fed;
        let generation = result?;
        self.messages
            .push(Message::assistant(generation.text.clone()));
        Ok(generation)
    }
}
