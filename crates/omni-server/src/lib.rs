//! omni's HTTP server: OpenAI-compatible chat (text, images, audio in and out; streaming),
//! embeddings (texts and images), transcriptions, speech, plus search over an omni index and a
//! web page. Models are shared by all clients through worker threads with bounded
//! queues: chat decodes its active sequences together (continuous batching), embeddings
//! batch concurrent requests.
//!
//! ```text
//! request ─► limits, API key ─► route ─► media checks ─► worker queue ─► model
//!                                                   ◄─ JSON / SSE ◄─┘
//! ```

mod chat_worker;
pub mod config;
mod content_cache;
mod embed_worker;
pub mod error;
mod extract;
mod live_index;
mod media;
mod metrics;
mod queue;
mod routes;
mod speech_worker;
mod state;
mod transcribe_worker;

pub use config::{Limits, ServerConfig};
pub use routes::router;
pub use state::AppState;

use std::sync::Arc;

/// Loads the models, binds `config.addr` and serves until Ctrl-C / SIGTERM.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let addr = config.addr;
    let state = Arc::new(tokio::task::spawn_blocking(move || AppState::load(config)).await??);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    // The line tests and scripts wait for.
    println!("omni serve: listening on http://{local}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
