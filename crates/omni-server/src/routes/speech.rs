//! `POST /v1/audio/speech`: OpenAI's text-to-speech API (`model`, `input`, `voice`,
//! `response_format` wav|flac|pcm, `speed`), the audio streamed as it is synthesised.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use omni::generator::speech::{DEFAULT_VOICE, SpeechOptions, map_openai_voice};
use omni::modality::audio::AudioFormat;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::speech_worker::{AudioChunks, SpeechJob};
use crate::state::AppState;

/// OpenAI's text-to-speech model names; accepted as the server's speech model.
const OPENAI_TTS: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

/// The request fields omni reads (`instructions` is accepted and ignored: Kokoro takes
/// no style prompt).
#[derive(Debug, Deserialize)]
pub struct SpeechRequest {
    model: String,
    input: String,
    voice: Option<String>,
    response_format: Option<String>,
    speed: Option<f32>,
    stream_format: Option<String>,
    #[allow(dead_code)]
    instructions: Option<String>,
}

/// `POST /v1/audio/speech`.
pub async fn speech(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SpeechRequest>,
) -> ApiResult<Response> {
    check_model(&state, &request.model)?;
    if request
        .stream_format
        .as_deref()
        .is_some_and(|f| f != "audio")
    {
        return Err(ApiError::bad_request(
            "stream_format must be `audio` (server-sent events are not supported)",
        )
        .with_param("stream_format"));
    }
    let format = parse_format(request.response_format.as_deref().unwrap_or("wav"))
        .map_err(|e| e.with_param("response_format"))?;
    let options = SpeechOptions {
        voice: map_openai_voice(request.voice.as_deref().unwrap_or(DEFAULT_VOICE)).to_string(),
        speed: request.speed.unwrap_or(1.0),
    };
    let audio = synthesize(&state, request.input, options, format).await?;
    Ok((
        [(header::CONTENT_TYPE, format.mime())],
        Body::from_stream(ReceiverStream::new(audio)),
    )
        .into_response())
}

/// Rejects a model name other than the server's speech model (or OpenAI's names).
pub fn check_model(state: &AppState, model: &str) -> ApiResult<()> {
    let (name, _) = state.speech.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this server serves no speech model")
            .with_param("model")
    })?;
    if model == name || OPENAI_TTS.contains(&model) {
        return Ok(());
    }
    let mut served = vec![name.clone()];
    served.extend(OPENAI_TTS.iter().map(|s| s.to_string()));
    Err(ApiError::unknown_model(model, &served))
}

/// An audio format by its OpenAI name (`pcm16` is chat's name for `pcm`).
pub fn parse_format(name: &str) -> ApiResult<AudioFormat> {
    let name = if name == "pcm16" { "pcm" } else { name };
    name.parse::<AudioFormat>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Queues `text` on the speech worker; resolves once the input is accepted and audio is
/// flowing (or with the error: nothing to say, unknown voice, bad speed, model missing).
pub async fn synthesize(
    state: &AppState,
    text: String,
    options: SpeechOptions,
    format: AudioFormat,
) -> ApiResult<AudioChunks> {
    let (_, queue) = state.speech.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this server serves no speech model")
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("input is empty").with_param("input"));
    }
    let (started_tx, started_rx) = oneshot::channel();
    let (audio_tx, audio_rx) = mpsc::channel(16);
    queue.submit(|ticket| SpeechJob {
        text,
        options,
        format,
        deadline: Instant::now() + state.config.limits.timeout,
        started: started_tx,
        audio: audio_tx,
        ticket,
    })?;
    started_rx
        .await
        .map_err(|_| ApiError::unavailable("the speech worker stopped"))??;
    Ok(audio_rx)
}
