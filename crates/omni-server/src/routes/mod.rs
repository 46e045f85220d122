//! The routes and the layers around them: body limit, API keys, metrics, panics → 500,
//! optional CORS, OpenAI-style 404/405.

mod audio;
mod chat;
mod embeddings;
mod search;
mod speech;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// The page served at `/`.
const PAGE: &str = include_str!("../page/index.html");

/// The server's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/speech", post(speech::speech))
        .route("/v1/search", post(search::search))
        .route("/v1/thumbnails/{name}", get(search::thumbnail))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let mut app = Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.limits.max_body_bytes,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app.with_state(state)
}

/// Runs CPU work (decoding media) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::ApiResult<T> + Send + 'static,
) -> crate::error::ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "a worker task failed"))?
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let models: Vec<_> = state
        .model_ids()
        .into_iter()
        .map(|(id, kind)| json!({"id": id, "kind": kind}))
        .collect();
    Json(
        json!({"status": "ok", "models": models, "index": state.index.as_ref().map(|i| i.loaded().len())}),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.queue_depths()),
    )
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let data: Vec<_> = state
        .model_ids()
        .into_iter()
        .map(|(id, kind)| json!({"id": id, "object": "model", "created": 0, "owned_by": "omni", "kind": kind}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Rejects `/v1/*` requests without a valid `Authorization: Bearer <key>` (or
/// `x-api-key`) when keys are configured; compares in constant time.
async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() {
        return next.run(request).await;
    }
    let headers = request.headers();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or("")
        .trim();
    let mut ok = subtle::Choice::from(0);
    for key in keys {
        ok |= given.as_bytes().ct_eq(key.as_bytes());
    }
    if bool::from(ok) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            if given.is_empty() {
                "this server needs an API key: send `Authorization: Bearer <key>`"
            } else {
                "invalid API key"
            },
        )
        .with_code("invalid_api_key")
        .into_response()
    }
}

/// Counts each request by route and status, with its latency.
async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .request(&route, status, start.elapsed().as_secs_f64());
    if response.status().is_server_error() {
        tracing::warn!(route, status, "request failed");
    }
    response
}
