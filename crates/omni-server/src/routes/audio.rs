//! `POST /v1/audio/transcriptions`: a multipart upload (`file`, `model`, `language`,
//! `prompt`, `response_format` json|text|srt|vtt|verbose_json, `temperature`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use omni::tasks::transcribe::{TranscribeOptions, TranscriptFormat};
use serde_json::json;
use tokio::sync::oneshot;

use super::blocking;
use crate::error::{ApiError, ApiResult};
use crate::media::audio_samples;
use crate::state::AppState;
use crate::transcribe_worker::TranscribeJob;

/// OpenAI's name for its Whisper model; accepted as the server's Whisper model.
const OPENAI_WHISPER: &str = "whisper-1";

/// The form fields omni reads.
#[derive(Default)]
struct Form {
    file: Option<(String, Vec<u8>)>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    response_format: Option<String>,
    temperature: Option<f32>,
}

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a multipart/form-data upload with a `file` field: {}",
            e.body_text()
        ))
    })?;
    let form = read_form(multipart).await?;
    let (name, queue) = state.whisper.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this server serves no transcription model",
        )
    })?;
    let model = form.model.as_deref().ok_or_else(|| {
        ApiError::bad_request("the form has no `model` field").with_param("model")
    })?;
    if model != name && model != OPENAI_WHISPER {
        return Err(ApiError::unknown_model(
            model,
            &[name.clone(), OPENAI_WHISPER.into()],
        ));
    }
    let format = match form.response_format.as_deref().unwrap_or("json") {
        "json" => None,
        "verbose_json" => Some(TranscriptFormat::Json),
        "text" => Some(TranscriptFormat::Text),
        "srt" => Some(TranscriptFormat::Srt),
        "vtt" => Some(TranscriptFormat::Vtt),
        other => {
            return Err(ApiError::bad_request(format!(
                "response_format `{other}` is not one of json, text, srt, vtt, verbose_json"
            ))
            .with_param("response_format"));
        }
    };
    let (file_name, bytes) = form
        .file
        .ok_or_else(|| ApiError::bad_request("the form has no `file` field").with_param("file"))?;
    let limits = state.config.limits.clone();
    let samples = blocking(move || audio_samples(bytes, &file_name, &limits)).await?;
    let mut options = TranscribeOptions {
        language: form.language.filter(|l| !l.is_empty()),
        initial_prompt: form.prompt.filter(|p| !p.is_empty()),
        ..TranscribeOptions::default()
    };
    if let Some(t) = form.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(ApiError::bad_request("temperature must be between 0 and 1")
                .with_param("temperature"));
        }
        if t > 0.0 {
            options.temperatures = vec![t];
        }
    }
    let (tx, rx) = oneshot::channel();
    queue.submit(|ticket| TranscribeJob {
        samples,
        options,
        deadline: Instant::now() + state.config.limits.timeout,
        reply: tx,
        ticket,
    })?;
    let transcript = match tokio::time::timeout(state.config.limits.timeout, rx).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => return Err(ApiError::unavailable("the transcription worker stopped")),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "transcription took longer than this server's request timeout",
            ));
        }
    };
    Ok(match format {
        None => axum::Json(json!({"text": transcript.text})).into_response(),
        Some(TranscriptFormat::Json) => {
            let body = transcript.render(TranscriptFormat::Json);
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(f) => {
            let mime = if f == TranscriptFormat::Vtt {
                "text/vtt"
            } else {
                "text/plain; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, mime)], transcript.render(f)).into_response()
        }
    })
}

async fn read_form(mut multipart: Multipart) -> ApiResult<Form> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("invalid multipart form: {}", e.body_text()))
    };
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload").to_string();
            let bytes = field.bytes().await.map_err(bad)?;
            form.file = Some((file_name, bytes.to_vec()));
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        match name.as_str() {
            "model" => form.model = Some(text),
            "language" => form.language = Some(text),
            "prompt" => form.prompt = Some(text),
            "response_format" => form.response_format = Some(text),
            "temperature" => {
                form.temperature = Some(text.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("temperature `{text}` is not a number"))
                        .with_param("temperature")
                })?)
            }
            _ => {}
        }
    }
    Ok(form)
}
