//! The chat model's worker: one thread owns the decoding state of every active sequence
//! and advances them together, one token each per step, through one batched forward
//! pass (continuous batching). New requests join between steps; a sequence whose client
//! went away is dropped at the next step. Finished sequences leave their KV cache in a
//! small pool, so a follow-up turn that repeats the conversation so far reuses it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use axum::http::StatusCode;
use omni::llm::{Decoding, FinishReason, GenerateOptions, KvCache, Llm, prefill};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::queue::{Queue, Ticket};

/// One completion to run.
pub struct ChatJob {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// When the request is abandoned.
    pub deadline: Instant,
    pub events: UnboundedSender<ChatEvent>,
    pub ticket: Ticket,
}

/// What a running completion reports, in order: text pieces, then `Done` or `Error`.
#[derive(Debug)]
pub enum ChatEvent {
    Text(String),
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(ApiError),
}

/// Starts the worker thread for `llm`; returns the queue that feeds it.
pub fn spawn(
    llm: Arc<Llm>,
    max_batch: usize,
    max_queue: usize,
    context: usize,
    metrics: Arc<Metrics>,
) -> Queue<ChatJob> {
    let (queue, rx) = Queue::new("chat", max_batch + max_queue);
    let context = context.min(llm.config().context_length).max(1);
    std::thread::Builder::new()
        .name("omni-chat".into())
        .spawn(move || Worker::new(llm, max_batch.max(1), context, metrics).run(rx))
        .expect("spawning the chat worker thread");
    queue
}

/// A sequence being decoded.
struct Active {
    job: ChatJob,
    decoding: Decoding,
    cache: KvCache,
}

/// An idle cache and the tokens it holds.
struct Idle {
    cache: KvCache,
    tokens: Vec<u32>,
}

struct Worker {
    llm: Arc<Llm>,
    max_batch: usize,
    context: usize,
    metrics: Arc<Metrics>,
    active: Vec<Active>,
    idle: Vec<Idle>,
}

impl Worker {
    fn new(llm: Arc<Llm>, max_batch: usize, context: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            llm,
            max_batch,
            context,
            metrics,
            active: Vec::new(),
            idle: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<ChatJob>) {
        loop {
            if self.active.is_empty() {
                match rx.recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => return,
                }
            }
            while self.active.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) if self.active.is_empty() => return,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            self.step();
        }
    }

    /// Prefills a new job (reusing the idle cache that shares the longest prefix) and
    /// takes its first token.
    fn admit(&mut self, job: ChatJob) {
        if job.events.is_closed() {
            return;
        }
        let mut cache = self.take_cache(&job.prompt);
        let llm = self.llm.clone();
        let started = catch_unwind(AssertUnwindSafe(|| {
            prefill(&llm.model, &mut cache, &job.prompt, &job.options)
        }));
        match started {
            Ok(Ok((logits, stats))) => {
                self.metrics.prompt(stats.prefill_tokens);
                let decoding = Decoding::new(&job.prompt, logits, &job.options);
                self.active.push(Active {
                    job,
                    decoding,
                    cache,
                });
                let last = self.active.len() - 1;
                self.advance(last);
                self.retire_finished();
            }
            Ok(Err(e)) => {
                self.give_back(cache, Vec::new());
                let _ = job.events.send(ChatEvent::Error(e.into()));
            }
            Err(_) => {
                let _ = job.events.send(ChatEvent::Error(panicked()));
            }
        }
    }

    /// Runs every pending token as one batch, then samples each sequence's next token.
    fn step(&mut self) {
        let now = Instant::now();
        for a in &mut self.active {
            if a.job.events.is_closed() {
                a.decoding.cancel();
            } else if now > a.job.deadline {
                a.decoding.cancel();
                let _ = a.job.events.send(ChatEvent::Error(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the completion took longer than this server's request timeout",
                )));
            }
        }
        self.retire_finished();
        let ready: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].decoding.pending().is_some())
            .collect();
        if ready.is_empty() {
            return;
        }
        let tokens: Vec<u32> = ready
            .iter()
            .filter_map(|&i| self.active[i].decoding.pending())
            .collect();
        let t0 = Instant::now();
        let llm = self.llm.clone();
        let mut caches: Vec<&mut KvCache> = self
            .active
            .iter_mut()
            .filter(|a| a.decoding.pending().is_some())
            .map(|a| &mut a.cache)
            .collect();
        let result = catch_unwind(AssertUnwindSafe(|| {
            llm.model.forward_batch(&tokens, &mut caches)
        }));
        drop(caches);
        self.metrics
            .decode_step(tokens.len(), t0.elapsed().as_secs_f64());
        match result {
            Ok(Ok(logits)) => {
                for (&i, logits) in ready.iter().zip(logits) {
                    self.active[i].decoding.set_logits(logits);
                    self.advance(i);
                }
            }
            Ok(Err(e)) => self.fail_all(e.into()),
            Err(_) => self.fail_all(panicked()),
        }
        self.retire_finished();
    }

    /// Samples sequence `i`'s next token and sends the text it releases.
    fn advance(&mut self, i: usize) {
        let a = &mut self.active[i];
        let room = a.cache.len() < a.cache.capacity();
        let text = a.decoding.step(&self.llm.tokenizer, room);
        if !text.is_empty() && a.job.events.send(ChatEvent::Text(text)).is_err() {
            a.decoding.cancel();
        }
    }

    /// Reports and removes finished sequences, keeping their caches for reuse.
    fn retire_finished(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            let Some(finish) = self.active[i].decoding.finish_reason() else {
                i += 1;
                continue;
            };
            let a = self.active.swap_remove(i);
            let prompt_tokens = a.job.prompt.len();
            let completion_tokens = a.decoding.generated();
            if finish == FinishReason::Cancelled {
                self.metrics.cancelled();
            } else {
                let _ = a.job.events.send(ChatEvent::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                });
            }
            let generation = a.decoding.into_generation(Default::default());
            let mut tokens = a.job.prompt;
            tokens.extend(generation.tokens);
            tokens.truncate(a.cache.len());
            self.give_back(a.cache, tokens);
        }
    }

    /// Ends every active sequence with `error` and drops their caches (a failed step may
    /// have left them half-written).
    fn fail_all(&mut self, error: ApiError) {
        for a in self.active.drain(..) {
            let _ = a.job.events.send(ChatEvent::Error(error.clone()));
        }
    }

    /// The idle cache sharing the longest prefix with `prompt`, cut to that prefix, or a
    /// new one.
    fn take_cache(&mut self, prompt: &[u32]) -> KvCache {
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, idle)| (i, common_prefix(&idle.tokens, prompt)))
            .max_by_key(|&(_, n)| n);
        match best {
            Some((i, n)) => {
                let mut idle = self.idle.swap_remove(i);
                idle.cache.truncate(n);
                idle.cache
            }
            None => self.llm.new_cache(Some(self.context)),
        }
    }

    /// Keeps a finished sequence's cache for reuse (at most one per batch slot).
    fn give_back(&mut self, mut cache: KvCache, tokens: Vec<u32>) {
        if tokens.is_empty() {
            cache.clear();
        }
        if self.idle.len() >= self.max_batch {
            self.idle.remove(0);
        }
        self.idle.push(Idle { cache, tokens });
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn panicked() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the chat model failed on this request (an internal error; it has been logged)",
    )
}
