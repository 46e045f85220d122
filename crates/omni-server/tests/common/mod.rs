//! What the server tests share: one loaded server state per test binary, requests
//! through the router without a socket, and the fixtures.

#![allow(dead_code)] // each test binary uses its own part of this module

#[path = "../../../omni/tests/common/mod.rs"]
pub mod fixtures;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use omni::index::{Index, IndexDirOptions, IndexOptions, index_dir};
use omni_server::{AppState, Limits, ServerConfig, router};
use serde_json::Value;
use tower::ServiceExt;

/// The photos indexed for search tests (scikit-image's).
pub const PHOTOS: [&str; 4] = ["chelsea.png", "coffee.png", "rocket.jpg", "horse.png"];

/// A response: status, headers, body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an OpenAI-style error body with `status`; returns its message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        let v = self.json();
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {v}"));
        assert!(v["error"]["type"].is_string(), "{v}");
        message.to_string()
    }
}

/// Sends one request to the router of `state`.
pub async fn send(state: &Arc<AppState>, request: Request<Body>) -> Reply {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs `body` as JSON to `uri`.
pub async fn post_json(state: &Arc<AppState>, uri: &str, body: &Value) -> Reply {
    post_raw(
        state,
        uri,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

/// POSTs raw bytes with a content type.
pub async fn post_raw(
    state: &Arc<AppState>,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    let request = Request::post(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    send(state, request).await
}

pub async fn get(state: &Arc<AppState>, uri: &str) -> Reply {
    send(state, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// A `data:` URL of a file.
pub fn data_url(path: &std::path::Path) -> String {
    let mime = match path.extension().and_then(|e| e.to_str()) {
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "image/png",
    };
    let bytes = std::fs::read(path).unwrap();
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The recording the README's first command asks about.
pub fn speech() -> PathBuf {
    fixtures::fixtures().join("../examples/audio/dashwood.wav")
}

/// The scikit-image photos and every model the full server needs, or `None` (skipped).
pub fn inputs() -> Option<PathBuf> {
    let models = [
        ("smollm2-135m-instruct", ""),
        ("all-minilm-l6-v2", ""),
        ("efficientnet-lite0", ""),
        ("whisper-tiny.en", ""),
        ("kokoro-82m", "libonnxruntime.so.1.32.0"),
    ];
    let mut ok = true;
    for (name, marker) in models {
        ok &= fixtures::model_dir(name, marker).is_some();
    }
    let photos = fixtures::skimage_data()?;
    ok.then_some(photos)
}

/// Limits small enough that every test request finishes fast.
pub fn test_limits() -> Limits {
    Limits {
        max_tokens: 24,
        context: 1024,
        max_image_pixels: 4_000_000,
        max_body_bytes: 4 << 20,
        max_audio_secs: 20.0,
        ..Limits::default()
    }
}

/// The full server (chat, embeddings, Whisper, an index of [`PHOTOS`] and a text
/// file), loaded once per test binary; `None` when inputs are absent.
pub fn full_state() -> Option<Arc<AppState>> {
    static STATE: OnceLock<Option<Arc<AppState>>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let photos = inputs()?;
            let dir = fixtures::temp_dir("server-docs");
            for name in PHOTOS {
                std::fs::copy(photos.join(name), dir.join(name)).unwrap();
            }
            std::fs::write(
                dir.join("bread.txt"),
                "Bake the bread at 200 degrees for forty minutes.",
            )
            .unwrap();
            let index_path = fixtures::temp_dir("server-index").join("idx");
            let space = omni::tasks::search_space::load_space("all-minilm-l6-v2").unwrap();
            let mut index = Index::open(
                &index_path,
                space.space(),
                space.dim(),
                IndexOptions::default(),
            )
            .unwrap();
            index_dir(
                &mut index,
                &dir,
                space.as_ref(),
                &IndexDirOptions::default(),
                &mut |_| {},
            )
            .unwrap();
            drop(index);
            let config = ServerConfig {
                index: Some(index_path),
                file_root: Some(dir),
                limits: test_limits(),
                ..ServerConfig::default()
            };
            Some(Arc::new(AppState::load(config).unwrap()))
        })
        .clone()
}

/// A server with no models and these API keys: for the plumbing (auth, routing, limits).
pub fn bare_state(keys: &[&str]) -> Arc<AppState> {
    Arc::new(AppState::load(bare_config(keys)).unwrap())
}

/// The configuration of [`bare_state`].
pub fn bare_config(keys: &[&str]) -> ServerConfig {
    ServerConfig {
        chat_model: None,
        embedding_models: Vec::new(),
        whisper_model: None,
        speech_model: None,
        api_keys: keys.iter().map(|k| k.to_string()).collect(),
        limits: test_limits(),
        ..ServerConfig::default()
    }
}

/// `secs` seconds of silence as a 16 kHz mono 16-bit WAV file.
pub fn silent_wav(secs: u32) -> Vec<u8> {
    let data = 16_000 * 2 * secs;
    let mut wav = b"RIFF".to_vec();
    wav.extend((36 + data).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes()); // PCM
    wav.extend(1u16.to_le_bytes()); // mono
    wav.extend(16_000u32.to_le_bytes());
    wav.extend((16_000u32 * 2).to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(data.to_le_bytes());
    wav.resize(wav.len() + data as usize, 0);
    wav
}

/// A multipart/form-data body: its content type and bytes.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, Vec<u8>)>) -> (String, Vec<u8>) {
    let boundary = "omni-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .bytes(),
        );
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}
