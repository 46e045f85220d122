//! The decoding loop: prefill the prompt, then sample, stream and feed back one token at
//! a time until an end-of-generation token, a stop string, the token budget or the end
//! of the context.

use std::time::Instant;

use super::Backbone;
use super::kv_cache::KvCache;
use super::sampling::{Sampler, SamplingParams};
use super::stream::TextStream;
use super::tokenizer::LlmTokenizer;
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// Token counts and timings of one generation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    pub prefill_tokens: usize,
    pub prefill_secs: f64,
    /// Tokens run one at a time after the prefill.
    pub decode_tokens: usize,
    pub decode_secs: f64,
}

impl GenerationStats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_secs)
    }

    pub fn decode_tokens_per_sec(&self) -> f64 {
        rate(self.decode_tokens, self.decode_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// The result of a generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    /// The generated text (stop string and control tokens excluded).
    pub text: String,
    /// The generated token ids (an end-of-generation token excluded).
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}

/// Continues `prompt`, calling `on_text` with each piece of text as soon as it is
/// known to be final; `on_text` returns `false` to stop early.
///
/// `cache` must hold a prefix of `prompt` (often empty); only the rest is run. After
/// the call it holds the prompt and the generated tokens that were fed back.
pub fn generate(
    model: &dyn Backbone,
    tokenizer: &LlmTokenizer,
    cache: &mut KvCache,
    prompt: &[u32],
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    options.sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::InvalidInput("the prompt is empty".into()));
    }
    if prompt.len() > cache.capacity() {
        return Err(Error::ContextOverflow {
            tokens: prompt.len(),
            context: cache.capacity(),
        });
    }
    // At least the last prompt token must run to get the next token's logits.
    cache.truncate(prompt.len() - 1);
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        prefill_tokens: prompt.len() - cache.len(),
        ..GenerationStats::default()
    };
    let t0 = Instant::now();
    let mut logits = model.forward(&prompt[cache.len()..], cache)?;
    stats.prefill_secs = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut history = prompt.to_vec();
    let mut stream = TextStream::new(&options.stop);
    let mut text = String::new();
    let mut tokens = Vec::new();
    let finish = loop {
        if tokens.len() >= options.max_tokens {
            break FinishReason::Length;
        }
        let token = sampler.sample(&mut logits, &history);
        if !options.ignore_eos && tokenizer.is_eog(token) {
            break FinishReason::Eos;
        }
        tokens.push(token);
        history.push(token);
        let released = stream.push(tokenizer.piece(token));
        text.push_str(&released.text);
        if !released.text.is_empty() && !on_text(&released.text) {
            break FinishReason::Cancelled;
        }
        if released.stopped {
            break FinishReason::Stop;
        }
        if tokens.len() >= options.max_tokens {
            break FinishReason::Length;
        }
        if cache.len() >= cache.capacity() {
            break FinishReason::ContextFull;
        }
        logits = model.forward(&[token], cache)?;
        stats.decode_tokens += 1;
    };
    stats.decode_secs = t1.elapsed().as_secs_f64();
    if finish != FinishReason::Stop {
        let rest = stream.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_text(&rest);
        }
    }
    Ok(Generation {
        text,
        tokens,
        finish_reason: finish,
        stats,
    })
}
