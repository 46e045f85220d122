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
    let (logits, stats) = prefill(model, cache, prompt, options)?;
    decode(
        model,
        tokenizer,
        cache,
        Decoding::new(prompt, logits, options),
        stats,
        on_text,
    )
}

/// Samples, streams and feeds back tokens from `decoding` (started after a prefill
/// whose statistics are `stats`) until it ends.
pub fn decode(
    model: &dyn Backbone,
    tokenizer: &LlmTokenizer,
    cache: &mut KvCache,
    mut decoding: Decoding,
    mut stats: GenerationStats,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    let t1 = Instant::now();
    loop {
        let text = decoding.step(tokenizer, cache.len() < cache.capacity());
        if !text.is_empty() && !on_text(&text) {
            let rest = decoding.cancel();
            if !rest.is_empty() {
                on_text(&rest);
            }
            break;
        }
        let Some(token) = decoding.pending() else {
            break;
        };
        decoding.set_logits(model.forward(&[token], cache)?);
        stats.decode_tokens += 1;
    }
    stats.decode_secs = t1.elapsed().as_secs_f64();
    Ok(decoding.into_generation(stats))
}

/// Checks the request and runs the part of `prompt` that `cache` does not hold yet;
/// returns the next-token logits and the prefill's statistics.
pub fn prefill(
    model: &dyn Backbone,
    cache: &mut KvCache,
    prompt: &[u32],
    options: &GenerateOptions,
) -> Result<(Vec<f32>, GenerationStats)> {
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
    let logits = model.forward(&prompt[cache.len()..], cache)?;
    stats.prefill_secs = t0.elapsed().as_secs_f64();
    Ok((logits, stats))
}

/// The token-by-token state of one generation after its prefill: sampling, stop strings,
/// end-of-generation and the token budget. [`generate`] drives one; a scheduler can
/// drive many, running their pending tokens as one batch
/// ([`super::LlamaModel::forward_batch`]).
#[derive(Debug)]
pub struct Decoding {
    sampler: Sampler,
    history: Vec<u32>,
    stream: TextStream,
    text: String,
    tokens: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
    logits: Vec<f32>,
    pending: Option<u32>,
    finish: Option<FinishReason>,
}

impl Decoding {
    /// Starts after `prompt`, whose last position gave `logits`.
    pub fn new(prompt: &[u32], logits: Vec<f32>, options: &GenerateOptions) -> Self {
        Self {
            sampler: Sampler::new(options.sampling.clone()),
            history: prompt.to_vec(),
            stream: TextStream::new(&options.stop),
            text: String::new(),
            tokens: Vec::new(),
            max_tokens: options.max_tokens,
            ignore_eos: options.ignore_eos,
            logits,
            pending: None,
            finish: None,
        }
    }

    /// Samples the next token from the last logits and returns the text that became
    /// final (often empty). Afterwards either [`Self::finish_reason`] is set or
    /// [`Self::pending`] holds the token to run next. `room`: whether the cache has a
    /// free position for it.
    pub fn step(&mut self, tokenizer: &LlmTokenizer, room: bool) -> String {
        self.pending = None;
        if self.finish.is_some() {
            return String::new();
        }
        if self.tokens.len() >= self.max_tokens {
            return self.end(FinishReason::Length);
        }
        let token = self.sampler.sample(&mut self.logits, &self.history);
        if !self.ignore_eos && tokenizer.is_eog(token) {
            return self.end(FinishReason::Eos);
        }
        self.tokens.push(token);
        self.history.push(token);
        let released = self.stream.push(tokenizer.piece(token));
        self.text.push_str(&released.text);
        let mut text = released.text;
        if released.stopped {
            self.finish = Some(FinishReason::Stop);
        } else if self.tokens.len() >= self.max_tokens {
            text.push_str(&self.end(FinishReason::Length));
        } else if !room {
            text.push_str(&self.end(FinishReason::ContextFull));
        } else {
            self.pending = Some(token);
        }
        text
    }

    /// Ends the generation at the caller's request; returns the text still held back.
    pub fn cancel(&mut self) -> String {
        self.pending = None;
        if self.finish.is_some() {
            return String::new();
        }
        self.end(FinishReason::Cancelled)
    }

    /// The sampled token that must run before the next [`Self::step`].
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// The logits the pending token gave.
    pub fn set_logits(&mut self, logits: Vec<f32>) {
        self.logits = logits;
    }

    /// Why the generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.tokens.len()
    }

    /// The result, with the caller's timings.
    pub fn into_generation(self, stats: GenerationStats) -> Generation {
        Generation {
            text: self.text,
            tokens: self.tokens,
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
            stats,
        }
    }

    /// Finishes for `reason`, releasing (and returning) the text held back for stop strings.
    fn end(&mut self, reason: FinishReason) -> String {
        self.finish = Some(reason);
        let rest = self.stream.finish();
        self.text.push_str(&rest);
        rest
    }
}
