//! `POST /v1/chat/completions`: OpenAI's chat API over the chat model, with image and
//! audio parts, streaming (SSE) or not, and spoken replies (`modalities: ["text", "audio"]`).
//!
//! The chat model reads text only, so images and audio reach it as text: an image as
//! its most likely ImageNet classes (EfficientNet-Lite0), audio as its Whisper
//! transcript — until a trained projector feeds their features in directly.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use omni::generator::speech::{DEFAULT_VOICE, SpeechOptions, map_openai_voice};
use omni::llm::{FinishReason, GenerateOptions, Message, SamplingParams};
use omni::modality::audio::{AudioFormat, patch_wav_sizes};
use omni::tasks::transcribe::TranscribeOptions;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::{blocking, speech};
use crate::chat_worker::{ChatEvent, ChatJob};
use crate::content_cache::ContentCache;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::media::{audio_samples, base64, image_from_url};
use crate::state::{AppState, ChatModel};
use crate::transcribe_worker::TranscribeJob;

/// The request fields omni reads; others (`user`, `logprobs`, …) are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// llama.cpp-style extensions.
    top_k: Option<usize>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    stop: Option<Stop>,
    seed: Option<u64>,
    n: Option<u64>,
    /// `["text", "audio"]` asks for a spoken reply too (`message.audio`).
    modalities: Option<Vec<String>>,
    audio: Option<AudioParams>,
}

/// `audio`: the voice and format of a spoken reply.
#[derive(Debug, Deserialize)]
struct AudioParams {
    voice: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// `POST /v1/chat/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<ChatRequest>,
) -> ApiResult<Response> {
    let chat = state.chat.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "this server serves no chat model").with_param("model")
    })?;
    if request.model != chat.name {
        return Err(ApiError::unknown_model(
            &request.model,
            std::slice::from_ref(&chat.name),
        ));
    }
    let options = generate_options(&request, &state)?;
    let spoken = spoken_reply(&request, &state)?;
    let messages = to_messages(&state, &request.messages).await?;
    let prompt = {
        let text = chat.llm.apply_chat_template(&messages, true)?;
        chat.llm.tokenizer.encode(&text, true, true)?
    };
    let context = state
        .config
        .limits
        .context
        .min(chat.llm.config().context_length);
    if prompt.len() >= context {
        return Err(ApiError::bad_request(format!(
            "the conversation is {} tokens long; this server's context holds {context}",
            prompt.len()
        ))
        .with_param("messages")
        .with_code("context_length_exceeded"));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let deadline = Instant::now() + state.config.limits.timeout;
    chat.queue.submit(|ticket| ChatJob {
        prompt,
        options,
        deadline,
        events: tx,
        ticket,
    })?;
    let reply = Reply::new(chat);
    if request.stream {
        let usage = request.stream_options.is_some_and(|o| o.include_usage);
        Ok(stream(reply, rx, usage).into_response())
    } else {
        let timeout = state.config.limits.timeout;
        match tokio::time::timeout(timeout, collect(reply, rx)).await {
            Ok(Ok(json)) => match spoken {
                Some((voice, format)) => Ok(with_audio(&state, json.0, voice, format)
                    .await?
                    .into_response()),
                None => Ok(json.into_response()),
            },
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the completion took longer than this server's request timeout",
            )),
        }
    }
}

/// The voice and format of a spoken reply, when `modalities` asks for audio.
fn spoken_reply(
    request: &ChatRequest,
    state: &AppState,
) -> ApiResult<Option<(SpeechOptions, AudioFormat)>> {
    let modalities = request.modalities.as_deref().unwrap_or_default();
    if let Some(m) = modalities
        .iter()
        .find(|m| !matches!(m.as_str(), "text" | "audio"))
    {
        return Err(
            ApiError::bad_request(format!("modality `{m}` is not one of text, audio"))
                .with_param("modalities"),
        );
    }
    if !modalities.iter().any(|m| m == "audio") {
        return Ok(None);
    }
    if request.stream {
        return Err(ApiError::bad_request(
            "spoken replies (modalities: [\"text\", \"audio\"]) need stream: false here",
        )
        .with_param("stream"));
    }
    state.speech.as_ref().ok_or_else(|| {
        ApiError::bad_request("this server has no speech model, so it cannot reply with audio")
            .with_param("modalities")
    })?;
    let params = request.audio.as_ref();
    let voice = params
        .and_then(|a| a.voice.as_deref())
        .unwrap_or(DEFAULT_VOICE);
    let format = params.and_then(|a| a.format.as_deref()).unwrap_or("wav");
    let format = speech::parse_format(format).map_err(|e| e.with_param("audio.format"))?;
    Ok(Some((
        SpeechOptions {
            voice: map_openai_voice(voice).to_string(),
            speed: 1.0,
        },
        format,
    )))
}

/// Speaks the reply's text and puts it in `message.audio` as OpenAI does: base64 `data`,
/// the text as `transcript`, `content` null.
async fn with_audio(
    state: &AppState,
    mut response: Value,
    voice: SpeechOptions,
    format: AudioFormat,
) -> ApiResult<axum::Json<Value>> {
    let message = &mut response["choices"][0]["message"];
    let text = message["content"].as_str().unwrap_or_default().to_string();
    let mut bytes = Vec::new();
    if !text.trim().is_empty() {
        let mut audio = speech::synthesize(state, text.clone(), voice, format).await?;
        while let Some(chunk) = audio.recv().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("speaking the reply failed: {e}"),
                )
            })?;
            bytes.extend_from_slice(&chunk);
        }
        if format == AudioFormat::Wav && bytes.len() >= 44 {
            let data = (bytes.len() - 44) as u64;
            let _ = patch_wav_sizes(&mut std::io::Cursor::new(&mut bytes), data);
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    message["content"] = Value::Null;
    message["audio"] = json!({
        "id": format!("audio_{:x}{:08x}", now.as_micros(), rand::random::<u32>()),
        "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "expires_at": now.as_secs() + 3600,
        "transcript": text,
    });
    Ok(axum::Json(response))
}

fn generate_options(request: &ChatRequest, state: &AppState) -> ApiResult<GenerateOptions> {
    let limit = state.config.limits.max_tokens;
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported").with_param("n"));
    }
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(limit as u64);
    if max_tokens == 0 || max_tokens > limit as u64 {
        return Err(ApiError::bad_request(format!(
            "max_tokens must be between 1 and {limit} on this server, not {max_tokens}"
        ))
        .with_param("max_tokens"));
    }
    let defaults = SamplingParams::default();
    let sampling = SamplingParams {
        temperature: request.temperature.unwrap_or(defaults.temperature),
        top_p: request.top_p.unwrap_or(defaults.top_p),
        top_k: request.top_k.unwrap_or(defaults.top_k),
        min_p: request.min_p.unwrap_or(defaults.min_p),
        repeat_penalty: request.repeat_penalty.unwrap_or(defaults.repeat_penalty),
        seed: request.seed,
        ..defaults
    };
    sampling
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stop = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(
            ApiError::bad_request("stop takes up to 4 non-empty strings").with_param("stop"),
        );
    }
    Ok(GenerateOptions {
        max_tokens: max_tokens as usize,
        sampling,
        stop,
        ignore_eos: false,
    })
}

/// OpenAI messages → the chat template's messages, images and audio turned into text.
async fn to_messages(state: &Arc<AppState>, messages: &[ChatMessage]) -> ApiResult<Vec<Message>> {
    if messages.is_empty() {
        return Err(ApiError::bad_request("messages is empty").with_param("messages"));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role `{other}` is not one of system, developer, user, assistant"
                ))
                .with_param(format!("messages[{i}].role")));
            }
        };
        let text = content_text(state, &m.content, &format!("messages[{i}].content")).await?;
        out.push(Message::new(role, text));
    }
    Ok(out)
}

/// A message's content as text: a string, or parts (`text`, `image_url`, `input_audio`).
async fn content_text(state: &Arc<AppState>, content: &Value, param: &str) -> ApiResult<String> {
    let parts = match content {
        Value::String(s) => return Ok(s.clone()),
        Value::Null => return Ok(String::new()),
        Value::Array(parts) => parts,
        _ => {
            return Err(ApiError::bad_request(format!(
                "{param} must be a string or an array of parts"
            ))
            .with_param(param));
        }
    };
    let mut pieces = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("{param}[{j}]");
        let field = |name: &str| -> ApiResult<&Value> {
            part.get(name).ok_or_else(|| {
                ApiError::bad_request(format!("{param} has no `{name}` field"))
                    .with_param(param.clone())
            })
        };
        let string = |v: &Value, name: &str| -> ApiResult<String> {
            v.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::bad_request(format!("{param}.{name} must be a string"))
                    .with_param(param.clone())
            })
        };
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        pieces.push(match kind {
            "text" => string(field("text")?, "text")?,
            "image_url" => {
                let image = field("image_url")?;
                let url = match image {
                    Value::String(s) => s.clone(),
                    v => string(v.get("url").unwrap_or(&Value::Null), "image_url.url")?,
                };
                describe_image(state, &url, &param).await?
            }
            "input_audio" => {
                let audio = field("input_audio")?;
                let data = string(
                    audio.get("data").unwrap_or(&Value::Null),
                    "input_audio.data",
                )?;
                let format = string(
                    audio.get("format").unwrap_or(&Value::Null),
                    "input_audio.format",
                )?;
                transcribe_part(state, &data, &format, &param).await?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{param}.type `{other}` is not one of text, image_url, input_audio"
                ))
                .with_param(param));
            }
        });
    }
    Ok(pieces.join("\n"))
}

async fn describe_image(state: &Arc<AppState>, url: &str, param: &str) -> ApiResult<String> {
    let image = image_from_url(url, &state.config, param)?;
    let key = ContentCache::key("image", &image.data);
    if let Some(text) = state.media_text.get(&key) {
        return Ok(text);
    }
    let state2 = state.clone();
    let text = blocking(move || {
        let tagger = state2.tagger()?;
        let tagger = tagger
            .lock()
            .map_err(|_| ApiError::unavailable("the image model failed earlier"))?;
        Ok(tagger.describe(&image.source())?)
    })
    .await?;
    state.media_text.insert(key, text.clone());
    Ok(text)
}

async fn transcribe_part(
    state: &Arc<AppState>,
    data: &str,
    format: &str,
    param: &str,
) -> ApiResult<String> {
    let (_, queue) = state.whisper.as_ref().ok_or_else(|| {
        ApiError::bad_request("this server has no transcription model, so it cannot take audio")
            .with_param(param)
    })?;
    let bytes = base64(data, &format!("{param}.input_audio.data"))?;
    let key = ContentCache::key("audio", &bytes);
    if let Some(text) = state.media_text.get(&key) {
        return Ok(text);
    }
    let name = format!("{param}.{}", format.trim_start_matches('.'));
    let limits = state.config.limits.clone();
    let samples = blocking(move || audio_samples(bytes, &name, &limits)).await?;
    let (tx, rx) = oneshot::channel();
    queue.submit(|ticket| TranscribeJob {
        samples,
        options: TranscribeOptions::default(),
        deadline: Instant::now() + state.config.limits.timeout,
        reply: tx,
        ticket,
    })?;
    let transcript = rx
        .await
        .map_err(|_| ApiError::unavailable("the transcription worker stopped"))??;
    let text = format!("[audio, transcribed: \"{}\"]", transcript.text);
    state.media_text.insert(key, text.clone());
    Ok(text)
}

/// The identity of one completion's response.
struct Reply {
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    fn new(chat: &ChatModel) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            id: format!(
                "chatcmpl-{:x}{:08x}",
                now.as_micros(),
                rand::random::<u32>()
            ),
            created: now.as_secs(),
            model: chat.name.clone(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Eos | FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Waits for the whole completion.
async fn collect(
    reply: Reply,
    mut rx: mpsc::UnboundedReceiver<ChatEvent>,
) -> ApiResult<axum::Json<Value>> {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            ChatEvent::Text(t) => text.push_str(&t),
            ChatEvent::Error(e) => return Err(e),
            ChatEvent::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                return Ok(axum::Json(json!({
                    "id": reply.id, "object": "chat.completion", "created": reply.created,
                    "model": reply.model, "system_fingerprint": null,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": null},
                        "logprobs": null,
                        "finish_reason": finish_name(finish),
                    }],
                    "usage": usage(prompt_tokens, completion_tokens),
                })));
            }
        }
    }
    Err(ApiError::unavailable("the chat worker stopped"))
}

/// Streams the completion as server-sent events in OpenAI's chunk format, ending with
/// `data: [DONE]`. An error after the stream started is sent as an `error` object.
fn stream(
    reply: Reply,
    mut rx: mpsc::UnboundedReceiver<ChatEvent>,
    include_usage: bool,
) -> impl IntoResponse {
    let (tx, out) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let send = |v: Value| Ok(Event::default().data(v.to_string()));
        if tx
            .send(send(
                reply.chunk(json!({"role": "assistant", "content": ""}), None),
            ))
            .await
            .is_err()
        {
            return;
        }
        while let Some(event) = rx.recv().await {
            let chunks = match event {
                ChatEvent::Text(t) => vec![reply.chunk(json!({"content": t}), None)],
                ChatEvent::Error(e) => vec![e.body()],
                ChatEvent::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    let mut last = vec![reply.chunk(json!({}), Some(finish_name(finish)))];
                    if include_usage {
                        let mut u = reply.chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(prompt_tokens, completion_tokens);
                        last.push(u);
                    }
                    last
                }
            };
            for c in chunks {
                // A send fails when the client went away: dropping `rx` cancels the job.
                if tx.send(send(c)).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(ReceiverStream::new(out)).keep_alive(KeepAlive::default())
}
