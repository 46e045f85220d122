//! The loaded models and their workers, shared by every request.

use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use omni::llm::{Llm, LoadOptions};
use omni::tasks::describe::ImageTagger;

use crate::chat_worker::{self, ChatJob};
use crate::config::ServerConfig;
use crate::content_cache::ContentCache;
use crate::embed_worker::{self, EmbedJob};
use crate::error::ApiError;
use crate::live_index::LiveIndex;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::speech_worker::{self, SpeechJob};
use crate::transcribe_worker::{self, TranscribeJob};

/// Chat media whose text is remembered.
const MEDIA_TEXT_ENTRIES: usize = 512;

/// The chat model: weights, tokenizer and template for the handlers, a worker for
/// decoding.
pub struct ChatModel {
    pub name: String,
    pub llm: Arc<Llm>,
    pub queue: Queue<ChatJob>,
}

/// An embedding space and its worker.
pub struct EmbeddingModel {
    pub name: String,
    pub queue: Queue<EmbedJob>,
}

/// Everything the handlers share.
pub struct AppState {
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub chat: Option<ChatModel>,
    /// The first is the default.
    pub embeddings: Vec<EmbeddingModel>,
    pub whisper: Option<(String, Queue<TranscribeJob>)>,
    /// The text-to-speech model (loaded by its worker on the first request).
    pub speech: Option<(String, Queue<SpeechJob>)>,
    /// The index `/v1/search` queries; its space is among `embeddings`.
    pub index: Option<LiveIndex>,
    /// Image descriptions and transcripts of chat media, by content hash.
    pub media_text: ContentCache,
    /// Describes chat images for the text-only chat model; loaded on first use.
    tagger: OnceLock<Result<Arc<Mutex<ImageTagger>>, String>>,
}

impl AppState {
    /// Loads the chat model and index, resolves (fetching if needed) the other models,
    /// and starts the workers.
    pub fn load(mut config: ServerConfig) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let limits = config.limits.clone();
        let index = match &config.index {
            Some(dir) => {
                let index = LiveIndex::open(dir)
                    .with_context(|| format!("cannot open the index {}", dir.display()))?;
                let space = index.loaded().space().to_string();
                if !config.embedding_models.contains(&space) {
                    config.embedding_models.push(space);
                }
                Some(index)
            }
            None => None,
        };
        let chat = match &config.chat_model {
            Some(name) => {
                let path = omni::models::resolve(name)?;
                let llm = Arc::new(
                    Llm::load(&path, &LoadOptions::default())
                        .with_context(|| format!("cannot load the chat model `{name}`"))?,
                );
                anyhow::ensure!(
                    llm.chat_template.is_some(),
                    "the chat model `{name}` has no chat template"
                );
                let queue = chat_worker::spawn(
                    llm.clone(),
                    limits.max_batch,
                    limits.max_queue,
                    limits.context,
                    metrics.clone(),
                );
                Some(ChatModel {
                    name: name.clone(),
                    llm,
                    queue,
                })
            }
            None => None,
        };
        let mut embeddings = Vec::new();
        for name in &config.embedding_models {
            omni::models::resolve(name).with_context(|| format!("embedding model `{name}`"))?;
            embeddings.push(EmbeddingModel {
                name: name.clone(),
                queue: embed_worker::spawn(name.clone(), limits.max_queue, metrics.clone()),
            });
        }
        let whisper = match &config.whisper_model {
            Some(name) => {
                omni::models::resolve(name).with_context(|| format!("Whisper model `{name}`"))?;
                Some((
                    name.clone(),
                    transcribe_worker::spawn(name.clone(), limits.max_queue),
                ))
            }
            None => None,
        };
        let speech = match &config.speech_model {
            Some(name) => {
                omni::models::resolve(name).with_context(|| format!("speech model `{name}`"))?;
                Some((
                    name.clone(),
                    speech_worker::spawn(name.clone(), limits.max_queue),
                ))
            }
            None => None,
        };
        Ok(Self {
            config,
            metrics,
            chat,
            embeddings,
            whisper,
            speech,
            index,
            media_text: ContentCache::new(MEDIA_TEXT_ENTRIES),
            tagger: OnceLock::new(),
        })
    }

    /// The embedding space `name` (or the default for `None`).
    pub fn embedding(&self, name: Option<&str>) -> Result<&EmbeddingModel, ApiError> {
        let found = match name {
            None => self.embeddings.first(),
            Some(n) => self.embeddings.iter().find(|m| m.name == n),
        };
        found.ok_or_else(|| {
            let served: Vec<String> = self.embeddings.iter().map(|m| m.name.clone()).collect();
            ApiError::unknown_model(name.unwrap_or("(default)"), &served)
        })
    }

    /// The image tagger, loaded on first use.
    pub fn tagger(&self) -> Result<Arc<Mutex<ImageTagger>>, ApiError> {
        self.tagger
            .get_or_init(|| {
                ImageTagger::load()
                    .map(|t| Arc::new(Mutex::new(t)))
                    .map_err(|e| format!("cannot load the image model: {e}"))
            })
            .clone()
            .map_err(ApiError::unavailable)
    }

    /// Every model id the server answers to, by kind.
    pub fn model_ids(&self) -> Vec<(String, &'static str)> {
        let mut ids = Vec::new();
        if let Some(c) = &self.chat {
            ids.push((c.name.clone(), "chat"));
        }
        for e in &self.embeddings {
            ids.push((e.name.clone(), "embeddings"));
        }
        if let Some((w, _)) = &self.whisper {
            ids.push((w.clone(), "transcription"));
        }
        if let Some((s, _)) = &self.speech {
            ids.push((s.clone(), "speech"));
        }
        ids
    }

    /// (worker, jobs in flight) for the metrics.
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        let mut q = Vec::new();
        if let Some(c) = &self.chat {
            q.push((c.queue.name().to_string(), c.queue.depth()));
        }
        for e in &self.embeddings {
            q.push((format!("{}:{}", e.queue.name(), e.name), e.queue.depth()));
        }
        if let Some((_, w)) = &self.whisper {
            q.push((w.name().to_string(), w.depth()));
        }
        if let Some((_, s)) = &self.speech {
            q.push((s.name().to_string(), s.depth()));
        }
        q
    }
}
