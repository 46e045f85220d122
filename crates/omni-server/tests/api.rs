//! The OpenAI-compatible API with the real models: chat (text, image, audio, streaming,
//! spoken replies), embeddings (texts and images), transcriptions, speech, search, models,
//! health and metrics.

mod common;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

fn chat_body(content: Value) -> Value {
    json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 12,
        "temperature": 0,
    })
}

#[tokio::test]
async fn chat_answers_with_usage() {
    let Some(state) = full_state() else { return };
    let r = post_json(
        &state,
        "/v1/chat/completions",
        &chat_body(json!("What is the capital of France?")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{v}");
    assert!(["stop", "length"].contains(&v["choices"][0]["finish_reason"].as_str().unwrap()));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 5, "{v}");
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{v}");
    // Greedy decoding through the server's batched worker gives the library's answer.
    let again = post_json(
        &state,
        "/v1/chat/completions",
        &chat_body(json!("What is the capital of France?")),
    )
    .await;
    assert_eq!(again.json()["choices"][0]["message"]["content"], text);
}

#[tokio::test]
async fn chat_streams_openai_chunks() {
    let Some(state) = full_state() else { return };
    let mut body = chat_body(json!("Count from one to ten."));
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post_json(&state, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_data(&r.text());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(pieces.len() >= 2, "{chunks:?}");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish.len(), 1, "{chunks:?}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(
        (1..=12).contains(&usage["completion_tokens"].as_u64().unwrap()),
        "{usage}"
    );
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn chat_sees_images_and_audio_as_text() {
    let Some(state) = full_state() else { return };
    let photos = inputs().unwrap();
    let image = json!([
        {"type": "text", "text": "What animal is in this picture? One word."},
        {"type": "image_url", "image_url": {"url": data_url(&photos.join("chelsea.png"))}},
    ]);
    let with_image = post_json(&state, "/v1/chat/completions", &chat_body(image)).await;
    assert_eq!(with_image.status, 200, "{}", with_image.text());
    let plain = post_json(
        &state,
        "/v1/chat/completions",
        &chat_body(json!("What animal is in this picture? One word.")),
    )
    .await;
    // The image's description lengthens the prompt.
    let tokens = |r: &Reply| r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens(&with_image) > tokens(&plain) + 5);

    let wav = std::fs::read(speech()).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, wav);
    let audio = json!([
        {"type": "text", "text": "Who is mentioned?"},
        {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}},
    ]);
    let r = post_json(&state, "/v1/chat/completions", &chat_body(audio)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(tokens(&r) > 25, "{}", r.text());
}

#[tokio::test]
async fn embeddings_put_texts_and_images_in_one_space() {
    let Some(state) = full_state() else { return };
    let photos = inputs().unwrap();
    let r = post_json(&state, "/v1/embeddings", &json!({
        "model": "all-minilm-l6-v2",
        "input": ["a photo of a cat", "a cup of coffee",
                  {"type": "image_url", "image_url": {"url": data_url(&photos.join("chelsea.png"))}}],
    }))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let vecs: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(vecs.len(), 3);
    assert!(vecs.iter().all(|v| v.len() == 384));
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(
        cos(&vecs[2], &vecs[0]) > cos(&vecs[2], &vecs[1]),
        "the cat photo is nearer the cat caption"
    );

    // base64: little-endian f32, the same vector.
    let b = post_json(
        &state,
        "/v1/embeddings",
        &json!({"input": "a photo of a cat", "encoding_format": "base64"}),
    )
    .await;
    let encoded = b.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded.len(), 384);
    assert!(
        decoded
            .iter()
            .zip(&vecs[0])
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
}

#[tokio::test]
async fn embeddings_of_concurrent_requests_match_single_ones() {
    let Some(state) = full_state() else { return };
    let texts = [
        "red",
        "a dog on a beach",
        "quantum chromodynamics",
        "bread",
        "the sea at night",
        "x",
    ];
    let alone = post_json(&state, "/v1/embeddings", &json!({"input": texts}))
        .await
        .json();
    let tasks: Vec<_> = texts
        .iter()
        .map(|t| {
            let state = state.clone();
            let t = t.to_string();
            tokio::spawn(async move {
                post_json(&state, "/v1/embeddings", &json!({"input": t}))
                    .await
                    .json()
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let one = task.await.unwrap();
        let a = one["data"][0]["embedding"].as_array().unwrap();
        let b = alone["data"][i]["embedding"].as_array().unwrap();
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-4, "{}: {diff}", texts[i]);
    }
}

#[tokio::test]
async fn transcriptions_in_every_format() {
    let Some(state) = full_state() else { return };
    let wav = std::fs::read(speech()).unwrap();
    for (format, check) in [
        ("json", "Dashwood"),
        ("text", "Dashwood"),
        ("srt", "-->"),
        ("vtt", "WEBVTT"),
        ("verbose_json", "segments"),
    ] {
        let (ct, body) = multipart(
            &[("model", "whisper-1"), ("response_format", format)],
            Some(("dashwood.wav", wav.clone())),
        );
        let r = post_raw(&state, "/v1/audio/transcriptions", &ct, body).await;
        assert_eq!(r.status, 200, "{format}: {}", r.text());
        assert!(r.text().contains(check), "{format}: {}", r.text());
    }
    let (ct, body) = multipart(
        &[("model", "whisper-1")],
        Some(("noise.wav", b"RIFF....WAVEfmt garbage".to_vec())),
    );
    let msg = post_raw(&state, "/v1/audio/transcriptions", &ct, body)
        .await
        .error(400);
    assert!(msg.contains("noise.wav"), "{msg}");
    let (ct, body) = multipart(&[("model", "whisper-1")], None);
    assert!(
        post_raw(&state, "/v1/audio/transcriptions", &ct, body)
            .await
            .error(400)
            .contains("file")
    );
}

#[tokio::test]
async fn search_finds_images_and_serves_their_thumbnails() {
    let Some(state) = full_state() else { return };
    for (query, want) in [
        ("a cat", "chelsea.png"),
        ("a space rocket", "rocket.jpg"),
        ("baking bread", "bread.txt"),
    ] {
        let r = post_json(&state, "/v1/search", &json!({"query": query, "k": 3})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let top = r.json()["data"][0].clone();
        assert!(
            top["path"].as_str().unwrap().ends_with(want),
            "{query}: {top}"
        );
    }
    let photos = inputs().unwrap();
    let by_image = post_json(
        &state,
        "/v1/search",
        &json!({"image": data_url(&photos.join("horse.png")), "kind": "image"}),
    )
    .await;
    let top = by_image.json()["data"][0].clone();
    assert!(
        top["path"].as_str().unwrap().ends_with("horse.png"),
        "{top}"
    );
    let thumb = top["thumbnail_url"].as_str().unwrap().to_string();
    let t = get(&state, &thumb).await;
    assert_eq!(t.status, 200);
    assert_eq!(t.headers["content-type"], "image/jpeg");
    assert!(t.body.starts_with(&[0xFF, 0xD8]));
    // Only hash-named files are served.
    for bad in [
        "/v1/thumbnails/..%2F..%2Fetc%2Fpasswd",
        "/v1/thumbnails/x.jpg",
        "/v1/thumbnails/%2e%2e",
    ] {
        get(&state, bad).await.error(404);
    }
}

#[tokio::test]
async fn models_health_metrics_and_page() {
    let Some(state) = full_state() else { return };
    let models = get(&state, "/v1/models").await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"smollm2-135m-instruct")
            && ids.contains(&"all-minilm-l6-v2")
            && ids.contains(&"whisper-tiny.en")
            && ids.contains(&"kokoro-82m"),
        "{ids:?}"
    );
    assert_eq!(get(&state, "/health").await.json()["status"], "ok");
    let page = get(&state, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("search-input") && page.text().contains("chat-send"));
    // Make at least one counted request, then read the metrics.
    let _ = get(&state, "/v1/models").await;
    let m = get(&state, "/metrics").await.text();
    for name in [
        "omni_requests_total{route=\"/v1/models\",status=\"200\"}",
        "omni_request_duration_seconds_bucket",
        "omni_queue_depth{worker=\"chat\"}",
        "omni_decode_tokens_per_second",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }
    let r = send(
        &state,
        Request::delete("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    r.error(405);
}

#[tokio::test]
async fn search_sees_files_indexed_while_serving() {
    let Some(state) = full_state() else { return };
    let docs = state.config.file_root.clone().unwrap();
    std::fs::write(
        docs.join("tea.txt"),
        "Steep green tea at 80 degrees for two minutes.",
    )
    .unwrap();
    let index = state.config.index.clone().unwrap();
    tokio::task::spawn_blocking(move || {
        use omni::index::{Index, IndexDirOptions, IndexOptions, index_dir};
        let space = omni::tasks::search_space::load_space("all-minilm-l6-v2").unwrap();
        let mut index =
            Index::open(&index, space.space(), space.dim(), IndexOptions::default()).unwrap();
        index_dir(
            &mut index,
            &docs,
            space.as_ref(),
            &IndexDirOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    })
    .await
    .unwrap();
    let r = post_json(
        &state,
        "/v1/search",
        &json!({"query": "how to brew green tea", "k": 1}),
    )
    .await;
    let top = r.json()["data"][0].clone();
    assert!(top["path"].as_str().unwrap().ends_with("tea.txt"), "{top}");
}

/// Transcribes WAV bytes through the server's own Whisper endpoint.
async fn transcribe(state: &std::sync::Arc<omni_server::AppState>, wav: Vec<u8>) -> String {
    let (ct, body) = multipart(&[("model", "whisper-1")], Some(("speech.wav", wav)));
    let r = post_raw(state, "/v1/audio/transcriptions", &ct, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["text"].as_str().unwrap().to_lowercase()
}

#[tokio::test]
async fn speech_streams_audio_that_whisper_understands() {
    let Some(state) = full_state() else { return };
    let body = json!({
        "model": "tts-1", "voice": "onyx", "response_format": "wav",
        "input": "The bakery opens early. Fresh bread every morning!",
    });
    let r = post_json(&state, "/v1/audio/speech", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "audio/wav");
    assert_eq!(&r.body[..4], b"RIFF");
    assert!(
        r.body.len() > 24_000 * 2 * 2,
        "two sentences of audio: {}",
        r.body.len()
    );
    let heard = transcribe(&state, r.body).await;
    assert!(
        heard.contains("bakery") && heard.contains("bread"),
        "{heard}"
    );
    for (format, magic) in [("flac", &b"fLaC"[..]), ("pcm", &[][..])] {
        let body = json!({"model": "kokoro-82m", "input": "Hi there.", "response_format": format, "speed": 1.2});
        let r = post_json(&state, "/v1/audio/speech", &body).await;
        assert_eq!(r.status, 200, "{format}: {}", r.text());
        assert!(
            r.body.starts_with(magic) && r.body.len() > 10_000,
            "{format}"
        );
    }
}

#[tokio::test]
async fn speech_refuses_bad_requests() {
    let Some(state) = full_state() else { return };
    let speak = |fields: Value| {
        let mut body = json!({"model": "tts-1", "input": "hello"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    for (fields, status, words) in [
        (json!({"input": ""}), 400, "input is empty"),
        (json!({"input": "🎉 ... !!"}), 400, "nothing to speak"),
        (json!({"voice": "bogus"}), 400, "unknown voice `bogus`"),
        (
            json!({"response_format": "mp3"}),
            400,
            "unsupported audio format `mp3`",
        ),
        (json!({"speed": 10.0}), 400, "out of range"),
        (json!({"model": "tts-2"}), 404, "does not exist"),
        (json!({"stream_format": "sse"}), 400, "stream_format"),
    ] {
        let r = post_json(&state, "/v1/audio/speech", &speak(fields.clone())).await;
        let message = r.error(status);
        assert!(message.contains(words), "{fields}: {message}");
    }
}

#[tokio::test]
async fn chat_replies_with_audio_when_asked() {
    let Some(state) = full_state() else { return };
    let mut body = chat_body(json!("Say hello."));
    body["modalities"] = json!(["text", "audio"]);
    body["audio"] = json!({"voice": "alloy", "format": "wav"});
    let r = post_json(&state, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let message = &r.json()["choices"][0]["message"];
    assert!(message["content"].is_null(), "{message}");
    let transcript = message["audio"]["transcript"].as_str().unwrap();
    assert!(!transcript.trim().is_empty(), "{message}");
    let wav = base64::engine::general_purpose::STANDARD
        .decode(message["audio"]["data"].as_str().unwrap())
        .unwrap();
    let data = u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize;
    assert_eq!(data, wav.len() - 44, "a complete WAV file");
    let heard = transcribe(&state, wav).await;
    let first_word = transcript.split_whitespace().next().unwrap().to_lowercase();
    let first_word: String = first_word.chars().filter(|c| c.is_alphanumeric()).collect();
    assert!(
        heard.contains(&first_word),
        "said {transcript:?}, heard {heard:?}"
    );
    // Spoken replies are not streamed; an unknown modality is named.
    body["stream"] = json!(true);
    let msg = post_json(&state, "/v1/chat/completions", &body)
        .await
        .error(400);
    assert!(msg.contains("stream: false"), "{msg}");
    body["stream"] = json!(false);
    body["modalities"] = json!(["text", "video"]);
    let msg = post_json(&state, "/v1/chat/completions", &body)
        .await
        .error(400);
    assert!(msg.contains("modality `video`"), "{msg}");
}
