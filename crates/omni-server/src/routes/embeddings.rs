//! `POST /v1/embeddings`: texts and images into one space, OpenAI's response shape.
//!
//! `input` is a string, an array of strings, or an array mixing strings and image parts
//! (`{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}`, or
//! `{"type": "text", "text": …}`). Token-id arrays are refused: the spaces take text.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::embed_worker::{EmbedInput, EmbedJob};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::media::image_from_url;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    input: Value,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<EmbeddingsRequest>,
) -> ApiResult<Json<Value>> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format `{other}` is not float or base64"
            ))
            .with_param("encoding_format"));
        }
    };
    let model = state.embedding(request.model.as_deref())?;
    let inputs = parse_inputs(&state, &request.input)?;
    let vectors = embed(&state, model.name.as_str(), inputs).await?;
    if let Some(d) = request.dimensions
        && vectors.first().is_some_and(|v| v.len() != d)
    {
        return Err(ApiError::bad_request(format!(
            "the model `{}` gives {}-dimensional vectors; `dimensions` cannot change that",
            model.name,
            vectors[0].len()
        ))
        .with_param("dimensions"));
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    // The spaces do not report token counts; the field is there for clients that read it.
    Ok(Json(json!({
        "object": "list", "data": data, "model": model.name,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })))
}

/// Embeds `inputs` in the space `model` through its worker.
pub async fn embed(
    state: &AppState,
    model: &str,
    inputs: Vec<EmbedInput>,
) -> ApiResult<Vec<Vec<f32>>> {
    let model = state.embedding(Some(model))?;
    let (tx, rx) = oneshot::channel();
    model.queue.submit(|ticket| EmbedJob {
        inputs,
        deadline: Instant::now() + state.config.limits.timeout,
        reply: tx,
        ticket,
    })?;
    match tokio::time::timeout(state.config.limits.timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::unavailable("the embedding worker stopped")),
        Err(_) => Err(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "embedding took longer than this server's request timeout",
        )),
    }
}

fn parse_inputs(state: &AppState, input: &Value) -> ApiResult<Vec<EmbedInput>> {
    let items: Vec<&Value> = match input {
        Value::String(_) => vec![input],
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Array(_) => {
            return Err(ApiError::bad_request("input is an empty array").with_param("input"));
        }
        _ => {
            return Err(ApiError::bad_request(
                "input must be a string or an array of strings and image parts",
            )
            .with_param("input"));
        }
    };
    let max = state.config.limits.max_inputs;
    if items.len() > max {
        return Err(ApiError::bad_request(format!(
            "input has {} items; this server takes at most {max} per request",
            items.len()
        ))
        .with_param("input"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("input[{i}]");
            let bad = |what: &str| ApiError::bad_request(format!("{param} {what}")).with_param(param.clone());
            match item {
                Value::String(s) if s.is_empty() => Err(bad("is an empty string")),
                Value::String(s) => Ok(EmbedInput::Text(s.clone())),
                Value::Object(part) => match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text").and_then(Value::as_str) {
                        Some(t) if !t.is_empty() => Ok(EmbedInput::Text(t.to_string())),
                        _ => Err(bad("has no non-empty `text`")),
                    },
                    Some("image_url") => {
                        let url = match part.get("image_url") {
                            Some(Value::String(s)) => Some(s.as_str()),
                            Some(v) => v.get("url").and_then(Value::as_str),
                            None => None,
                        }
                        .ok_or_else(|| bad("has no `image_url.url` string"))?;
                        Ok(EmbedInput::Image(image_from_url(url, &state.config, &param)?))
                    }
                    _ => Err(bad("must be a string, a text part or an image_url part")),
                },
                Value::Number(_) | Value::Array(_) => Err(bad(
                    "is a token id or token array; this server embeds text and images, not token ids",
                )),
                _ => Err(bad("must be a string, a text part or an image_url part")),
            }
        })
        .collect()
}
