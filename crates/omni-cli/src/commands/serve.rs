//! `omni serve`: the OpenAI-compatible HTTP server and its web page.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use omni_server::{Limits, ServerConfig};

use super::index::DEFAULT_MODEL;

/// Arguments of `omni serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; 0.0.0.0 exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Chat model (catalogue name, directory or .gguf).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub chat_model: String,
    /// Serve no chat model.
    #[arg(long)]
    pub no_chat: bool,
    /// Embedding spaces clients may name (repeatable; the first is the default). The
    /// index's own space is always added.
    #[arg(long = "embedding-model", value_name = "MODEL", default_value = DEFAULT_MODEL)]
    pub embedding_models: Vec<String>,
    /// Whisper model for transcriptions and audio in chat.
    #[arg(long, default_value = "whisper-tiny.en")]
    pub whisper: String,
    /// Serve no transcription.
    #[arg(long)]
    pub no_transcription: bool,
    /// Text-to-speech model for `/v1/audio/speech` and spoken chat replies.
    #[arg(long, default_value = "kokoro-82m")]
    pub speech_model: String,
    /// Serve no speech.
    #[arg(long)]
    pub no_speech: bool,
    /// The index `/v1/search` and the page query (default: $OMNI_HOME/index, if it exists).
    #[arg(long, env = "OMNI_INDEX", value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// API key clients must send as `Authorization: Bearer KEY` (repeatable; comma-separated in the environment).
    #[arg(
        long = "api-key",
        env = "OMNI_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Allow browser pages from this origin (CORS; repeatable). Off by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Let requests name local image/audio files under this directory.
    #[arg(long, value_name = "DIR")]
    pub allow_files: Option<PathBuf>,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 25)]
    pub max_body_mb: usize,
    /// Largest image accepted, in megapixels.
    #[arg(long, default_value_t = 40.0)]
    pub max_image_mp: f64,
    /// Longest audio accepted, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub max_audio_secs: f64,
    /// Most tokens one completion may generate.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Context per chat sequence, in tokens (at most the model's).
    #[arg(long = "ctx", default_value_t = 4096)]
    pub context: usize,
    /// Chat sequences decoded together (continuous batching).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Requests that may wait per model beyond those being served; more get 429.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Seconds before a request is abandoned (504).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Threads to compute with (default: all CPUs).
    #[arg(long, short)]
    pub threads: Option<usize>,
}

/// Runs `omni serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_batch > 0, "--max-batch must be at least 1");
    anyhow::ensure!(args.context > 0, "--ctx must be at least 1");
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    anyhow::ensure!(
        args.api_keys.iter().all(|k| !k.trim().is_empty()),
        "--api-key is empty"
    );
    if let Some(n) = args.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        omni::llm::set_num_threads(n);
    }
    if let Some(root) = &args.allow_files {
        anyhow::ensure!(
            root.is_dir(),
            "--allow-files {}: not a directory",
            root.display()
        );
    }
    let index = args.index.clone().or_else(|| {
        let default = omni::models::omni_home().join("index");
        default.is_dir().then_some(default)
    });
    let config = ServerConfig {
        addr: SocketAddr::new(args.host, args.port),
        chat_model: (!args.no_chat).then_some(args.chat_model),
        embedding_models: args.embedding_models,
        whisper_model: (!args.no_transcription).then_some(args.whisper),
        speech_model: (!args.no_speech).then_some(args.speech_model),
        index,
        api_keys: args
            .api_keys
            .into_iter()
            .map(|k| k.trim().to_string())
            .collect(),
        cors_origins: args.cors_origins,
        file_root: args.allow_files,
        limits: Limits {
            max_body_bytes: args.max_body_mb << 20,
            max_image_pixels: (args.max_image_mp * 1e6) as u64,
            max_audio_secs: args.max_audio_secs,
            max_tokens: args.max_tokens,
            context: args.context,
            max_batch: args.max_batch,
            max_queue: args.max_queue,
            timeout: Duration::from_secs(args.timeout_secs),
            ..Limits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(omni_server::serve(config))
}
