//! What the server serves and the limits it enforces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `omni serve` is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// The chat model (catalogue name, directory or .gguf); `None` serves no chat.
    pub chat_model: Option<String>,
    /// Embedding spaces clients may name; the first is the default.
    pub embedding_models: Vec<String>,
    /// The transcription model; `None` serves no transcription.
    pub whisper_model: Option<String>,
    /// The text-to-speech model; `None` serves no speech.
    pub speech_model: Option<String>,
    /// The index `POST /v1/search` queries, if any.
    pub index: Option<PathBuf>,
    /// Accepted API keys; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Origins allowed by CORS; empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Image and audio parts may name local files under this directory.
    pub file_root: Option<PathBuf>,
    pub limits: Limits,
}

/// Bounds on what one request may ask for and on how much work may wait.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest image (width × height) accepted.
    pub max_image_pixels: u64,
    /// Longest audio accepted, in seconds.
    pub max_audio_secs: f64,
    /// Most tokens a completion may generate.
    pub max_tokens: usize,
    /// Context per chat sequence, in tokens (at most the model's).
    pub context: usize,
    /// Sequences decoded together.
    pub max_batch: usize,
    /// Requests that may wait per worker beyond those being served; more get 429.
    pub max_queue: usize,
    /// Longest a request may take before it is abandoned (504).
    pub timeout: Duration,
    /// Most inputs in one embeddings request.
    pub max_inputs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 25 << 20,
            max_image_pixels: 40_000_000,
            max_audio_secs: 600.0,
            max_tokens: 1024,
            context: 4096,
            max_batch: 8,
            max_queue: 64,
            timeout: Duration::from_secs(300),
            max_inputs: 256,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            chat_model: Some("smollm2-135m-instruct".into()),
            embedding_models: vec![omni::tasks::text_embedding::DEFAULT_TEXT_MODEL.into()],
            whisper_model: Some("whisper-tiny.en".into()),
            speech_model: Some("kokoro-82m".into()),
            index: None,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            file_root: None,
            limits: Limits::default(),
        }
    }
}
