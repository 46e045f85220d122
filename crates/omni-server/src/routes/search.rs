//! `POST /v1/search`: the index's nearest images and texts to a text or image query,
//! and `GET /v1/thumbnails/{name}` for the result previews.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use omni::index::{Kind, SearchOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::embeddings::embed;
use crate::embed_worker::EmbedInput;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::media::image_from_url;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    /// A text query…
    query: Option<String>,
    /// … or an image (a data: URL).
    image: Option<String>,
    k: Option<usize>,
    /// `image` or `text`: only results of this kind.
    kind: Option<String>,
}

/// `POST /v1/search`.
pub async fn search(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> ApiResult<Json<Value>> {
    if state.index.is_none() {
        return Err(no_index());
    }
    let input = match (request.query, request.image) {
        (Some(q), None) if !q.trim().is_empty() => EmbedInput::Text(q),
        (None, Some(url)) => EmbedInput::Image(image_from_url(&url, &state.config, "image")?),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `query` or `image`, not both",
            ));
        }
        _ => {
            return Err(
                ApiError::bad_request("give a non-empty `query` text or an `image`")
                    .with_param("query"),
            );
        }
    };
    let k = request.k.unwrap_or(8);
    if !(1..=1000).contains(&k) {
        return Err(ApiError::bad_request("k must be between 1 and 1000").with_param("k"));
    }
    let kind = match request.kind.as_deref() {
        None | Some("all") => None,
        Some("image") => Some(Kind::Image),
        Some("text") => Some(Kind::Text),
        Some(other) => {
            return Err(
                ApiError::bad_request(format!("kind `{other}` is not image, text or all"))
                    .with_param("kind"),
            );
        }
    };
    let index = {
        let state = state.clone();
        blocking(move || state.index.as_ref().ok_or_else(no_index)?.fresh()).await?
    };
    let query = embed(&state, index.space(), vec![input])
        .await?
        .pop()
        .ok_or_else(|| ApiError::unavailable("the embedding model returned no vector"))?;
    let options = SearchOptions {
        k,
        kind,
        ..SearchOptions::default()
    };
    let hits = index.search(index.space(), &query, &options)?;
    let data: Vec<Value> = hits
        .iter()
        .map(|h| {
            let thumbnail_url = h
                .entry
                .thumbnail
                .as_deref()
                .and_then(|t| std::path::Path::new(t).file_name())
                .map(|n| format!("/v1/thumbnails/{}", n.to_string_lossy()));
            json!({
                "score": h.score, "path": h.entry.path, "kind": h.entry.kind.as_str(),
                "snippet": h.entry.snippet, "thumbnail_url": thumbnail_url,
            })
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "model": index.space(), "data": data}),
    ))
}

fn no_index() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "this server has no index (start it with --index DIR)",
    )
}

/// `GET /v1/thumbnails/{hash}.jpg`: a preview the index made. Only names of the form
/// `<64 hex digits>.jpg` are looked up, so no path reaches the file system.
pub async fn thumbnail(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let index = state.index.as_ref().ok_or_else(no_index)?.loaded();
    let hash = name
        .strip_suffix(".jpg")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no thumbnail `{name}`")))?;
    let path = index.dir().join("thumbs").join(&hash[..2]).join(&name);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no thumbnail `{name}`")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}
