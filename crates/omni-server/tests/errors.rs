//! Bad input gets a 4xx with an OpenAI-style error body naming the problem — never a
//! 500, a panic or a hang: malformed and mistyped JSON, unknown models, corrupt base64,
//! corrupt or huge images, oversized bodies, path traversal, API keys, full queues; and
//! a property test over request bodies.

mod common;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use common::*;
use omni_server::{AppState, ServerConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

fn chat(content: Value) -> Value {
    json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": content}], "max_tokens": 4})
}

fn image_part(url: &str) -> Value {
    json!([{"type": "image_url", "image_url": {"url": url}}])
}

/// A PNG that declares `w`×`h` pixels but holds no pixel data: a decompression bomb's
/// header.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[]), (b"IEND", &[])] {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[tokio::test]
async fn malformed_requests_get_400_415_413() {
    let state = bare_state(&[]);
    let r = post_raw(
        &state,
        "/v1/embeddings",
        "application/json",
        b"{\"input\": [1, 2".to_vec(),
    )
    .await;
    assert!(r.error(400).contains("invalid request body"));
    let r = post_raw(&state, "/v1/chat/completions", "text/plain", b"{}".to_vec()).await;
    assert!(r.error(415).contains("application/json"));
    let huge = vec![b' '; 5 << 20];
    let r = post_raw(&state, "/v1/chat/completions", "application/json", huge).await;
    assert!(r.error(413).contains("larger"));
    let r = post_json(
        &state,
        "/v1/chat/completions",
        &json!({"model": 3, "messages": "hi"}),
    )
    .await;
    r.error(400);
    get(&state, "/v2/nothing").await.error(404);
    // A server without models says so.
    assert!(
        post_json(&state, "/v1/chat/completions", &chat(json!("hi")))
            .await
            .error(404)
            .contains("no chat model")
    );
    assert!(
        post_json(&state, "/v1/search", &json!({"query": "x"}))
            .await
            .error(404)
            .contains("no index")
    );
}

#[tokio::test]
async fn api_keys_are_checked() {
    let state = bare_state(&["sk-right", "sk-other"]);
    let with = |key: Option<&str>| {
        let mut b = Request::get("/v1/models");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::empty()).unwrap()
    };
    assert!(
        send(&state, with(None))
            .await
            .error(401)
            .contains("API key")
    );
    assert_eq!(
        send(&state, with(Some("sk-wrong"))).await.error(401),
        "invalid API key"
    );
    assert_eq!(send(&state, with(Some("sk-righ"))).await.status, 401);
    assert_eq!(send(&state, with(Some("sk-right"))).await.status, 200);
    assert_eq!(send(&state, with(Some("sk-other"))).await.status, 200);
    // The page, health and metrics stay public.
    assert_eq!(get(&state, "/health").await.status, 200);
    assert_eq!(get(&state, "/").await.status, 200);
}

#[tokio::test]
async fn chat_parameters_are_validated() {
    let Some(state) = full_state() else { return };
    let cases = [
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "gpt-4o",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": []}),
            400,
            "messages",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "wizard", "content": "hi"}]}),
            400,
            "wizard",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}),
            400,
            "max_tokens",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "n": 3}),
            400,
            "n = 1",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}),
            400,
            "temperature",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": 42}]}),
            400,
            "string or an array",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
            400,
            "video",
        ),
        (
            json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x ".repeat(3000)}]}),
            400,
            "context",
        ),
    ];
    for (body, status, needle) in cases {
        let msg = post_json(&state, "/v1/chat/completions", &body)
            .await
            .error(status);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let msg = post_json(
        &state,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "x"}),
    )
    .await
    .error(404);
    assert!(
        msg.contains("all-minilm-l6-v2"),
        "the message lists the served models: {msg}"
    );
    for input in [json!([]), json!([1, 2, 3]), json!(""), json!({"a": 1})] {
        post_json(&state, "/v1/embeddings", &json!({"input": input}))
            .await
            .error(400);
    }
}

#[tokio::test]
async fn bad_images_are_refused_with_the_reason() {
    let Some(state) = full_state() else { return };
    let cases = [
        (
            "data:image/png;base64,!!!not-base64!!!".to_string(),
            400,
            "base64",
        ),
        ("data:image/png,rawbytes".to_string(), 400, "base64"),
        (
            format!(
                "data:image/png;base64,{}",
                b64(b"this is not an image at all")
            ),
            400,
            "image",
        ),
        (
            format!("data:image/png;base64,{}", b64(&png_header(64, 64))),
            400,
            "png",
        ),
        (
            format!("data:image/png;base64,{}", b64(&png_header(30_000, 30_000))),
            413,
            "30000×30000",
        ),
        ("https://example.com/cat.jpg".to_string(), 400, "remote"),
        ("/etc/passwd".to_string(), 403, "not under"),
        ("file:///etc/passwd".to_string(), 403, "not under"),
        ("relative/path.png".to_string(), 403, "not under"),
    ];
    for (url, status, needle) in &cases {
        for (uri, body) in [
            ("/v1/chat/completions", chat(image_part(url))),
            ("/v1/embeddings", json!({"input": image_part(url)})),
        ] {
            let msg = post_json(&state, uri, &body).await.error(*status);
            assert!(
                msg.contains(needle),
                "{uri} {}: {msg}",
                &url[..url.len().min(40)]
            );
        }
    }
    // `..` cannot climb out of the allowed root.
    let root = state.config.file_root.clone().unwrap();
    let escape = format!("{}/../../../../etc/passwd", root.display());
    post_json(
        &state,
        "/v1/embeddings",
        &json!({"input": image_part(&escape)}),
    )
    .await
    .error(403);
    // A file under the root is fine.
    let inside = root.join("chelsea.png");
    let ok = post_json(
        &state,
        "/v1/embeddings",
        &json!({"input": image_part(inside.to_str().unwrap())}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // Corrupt audio in chat.
    let audio = json!([{"type": "input_audio", "input_audio": {"data": b64(b"not audio at all"), "format": "mp3"}}]);
    post_json(&state, "/v1/chat/completions", &chat(audio))
        .await
        .error(400);
}

#[tokio::test]
async fn audio_longer_than_the_limit_gets_413() {
    let Some(state) = full_state() else { return };
    let (ct, body) = multipart(
        &[("model", "whisper-1")],
        Some(("long.wav", silent_wav(30))),
    );
    let msg = post_raw(&state, "/v1/audio/transcriptions", &ct, body)
        .await
        .error(413);
    assert!(msg.contains("30 s") && msg.contains("20 s"), "{msg}");
    let audio = json!([{"type": "input_audio", "input_audio": {"data": b64(&silent_wav(30)), "format": "wav"}}]);
    post_json(&state, "/v1/chat/completions", &chat(audio))
        .await
        .error(413);
}

#[tokio::test]
async fn cors_is_off_unless_an_origin_is_allowed() {
    let request = || {
        Request::get("/v1/models")
            .header("origin", "http://example.com")
            .body(Body::empty())
            .unwrap()
    };
    let closed = send(&bare_state(&[]), request()).await;
    assert!(!closed.headers.contains_key("access-control-allow-origin"));
    let mut config = bare_config(&[]);
    config.cors_origins = vec!["http://example.com".into()];
    let open = send(&Arc::new(AppState::load(config).unwrap()), request()).await;
    assert_eq!(
        open.headers["access-control-allow-origin"],
        "http://example.com"
    );
}

/// A chat-only server with room for long completions.
fn long_state() -> Option<Arc<AppState>> {
    static STATE: OnceLock<Option<Arc<AppState>>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            fixtures::model_dir("smollm2-135m-instruct", "")?;
            let mut limits = test_limits();
            limits.max_tokens = 900;
            let config = ServerConfig {
                embedding_models: Vec::new(),
                whisper_model: None,
                speech_model: None,
                limits,
                ..ServerConfig::default()
            };
            Some(Arc::new(AppState::load(config).unwrap()))
        })
        .clone()
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn a_client_that_disconnects_stops_its_completion() {
    use http_body_util::BodyExt;
    let Some(state) = long_state() else { return };
    let body = json!({
        "model": "smollm2-135m-instruct", "stream": true, "max_tokens": 900, "temperature": 0,
        "messages": [{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
    });
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(omni_server::router(state.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    // Read until two pieces of text have arrived, then hang up.
    let mut seen = String::new();
    while seen.matches("\"delta\":{\"content\"").count() < 2 {
        let frame = stream
            .frame()
            .await
            .expect("the stream ended early")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    drop(stream);
    // The worker notices at its next step and frees the slot, long before 900 tokens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = get(&state, "/metrics").await.text();
        if metric(&m, "omni_cancelled_completions_total") == 1.0 {
            assert!(metric(&m, "omni_completion_tokens_total") < 300.0, "{m}");
            assert_eq!(metric(&m, "omni_queue_depth{worker=\"chat\"}"), 0.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the completion was not cancelled:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A chat-only server that serves one sequence and queues one more.
fn busy_state() -> Option<Arc<AppState>> {
    static STATE: OnceLock<Option<Arc<AppState>>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            fixtures::model_dir("smollm2-135m-instruct", "")?;
            let mut limits = test_limits();
            limits.max_batch = 1;
            limits.max_queue = 1;
            let config = ServerConfig {
                embedding_models: Vec::new(),
                whisper_model: None,
                speech_model: None,
                limits,
                ..ServerConfig::default()
            };
            Some(Arc::new(AppState::load(config).unwrap()))
        })
        .clone()
}

#[tokio::test]
async fn a_full_queue_answers_429_and_recovers() {
    let Some(state) = busy_state() else { return };
    let body = json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 24, "temperature": 0, "stream": false});
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (state, body) = (state.clone(), body.clone());
            tokio::spawn(async move { post_json(&state, "/v1/chat/completions", &body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 429 {
            assert!(r.error(429).contains("busy"));
        }
        statuses.push(r.status.as_u16());
    }
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    // Once the queue drains, requests are served again.
    let r = post_json(&state, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("text"),
            Just("image_url"),
            Just("input_audio"),
            Just("user"),
            Just("data:image/png;base64,AAAA"),
            Just("smollm2-135m-instruct"),
            Just("all-minilm-l6-v2")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_string()),
                    Just("messages".to_string()),
                    Just("input".to_string()),
                    Just("content".to_string()),
                    Just("role".to_string()),
                    Just("type".to_string()),
                    Just("text".to_string()),
                    Just("image_url".to_string()),
                    Just("url".to_string()),
                    Just("max_tokens".to_string()),
                    Just("stream".to_string()),
                    Just("query".to_string()),
                    Just("k".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid request of each endpoint with one field replaced by any value.
fn mutated() -> impl Strategy<Value = (usize, Value)> {
    let valid = [
        ("/v1/chat/completions", chat(json!("hi"))),
        (
            "/v1/embeddings",
            json!({"model": "all-minilm-l6-v2", "input": ["a", "b"]}),
        ),
        ("/v1/search", json!({"query": "a cat", "k": 2})),
    ];
    (
        0..valid.len(),
        prop::sample::select(vec![
            "model",
            "messages",
            "input",
            "max_tokens",
            "stream",
            "query",
            "k",
            "kind",
            "temperature",
            "stop",
            "encoding_format",
            "image",
        ]),
        any_json(),
    )
        .prop_map(move |(i, field, value)| {
            let mut body = valid[i].1.clone();
            body[field] = value;
            (i, body)
        })
}

const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/embeddings", "/v1/search"];

fn check_reply(r: &Reply, body: &str) {
    let status = r.status.as_u16();
    assert!(status < 500, "{status} for {body}: {}", r.text());
    if status >= 400 {
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("{status} body not JSON for {body}: {}", r.text()));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}: {v}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_body_gets_an_answer_never_a_500(endpoint in 0..ENDPOINTS.len(), body in any_json()) {
        let Some(state) = full_state() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = runtime.block_on(post_json(&state, ENDPOINTS[endpoint], &body));
        check_reply(&r, &body.to_string());
    }

    #[test]
    fn mutated_valid_bodies_get_an_answer_never_a_500((endpoint, body) in mutated()) {
        let Some(state) = full_state() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = runtime.block_on(post_json(&state, ENDPOINTS[endpoint], &body));
        check_reply(&r, &body.to_string());
    }

    #[test]
    fn random_bytes_get_an_answer_never_a_500(endpoint in 0..ENDPOINTS.len(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let state = bare_state(&[]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = runtime.block_on(post_raw(&state, ENDPOINTS[endpoint], "application/json", bytes.clone()));
        check_reply(&r, &String::from_utf8_lossy(&bytes));
    }
}
