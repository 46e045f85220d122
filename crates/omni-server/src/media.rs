//! Images and audio carried by requests: data URLs, base64, local files under an allowed
//! root; checked against the limits before any model sees them.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use omni::modality::audio::{SAMPLE_RATE, decode_bytes, to_rate};
use omni::modality::image::image_dimensions;

use crate::config::{Limits, ServerConfig};
use crate::error::{ApiError, ApiResult};

/// An image from a request, still encoded.
#[derive(Debug, Clone)]
pub struct ImageBytes {
    /// What messages call it (`messages[0].content[1]`, a file name, …).
    pub name: String,
    pub data: Vec<u8>,
}

impl ImageBytes {
    pub fn source(&self) -> omni::modality::image::ImageSource<'_> {
        omni::modality::image::ImageSource::Bytes {
            name: &self.name,
            data: &self.data,
        }
    }
}

/// Decodes standard base64, padded or not.
pub fn base64(text: &str, param: &str) -> ApiResult<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .map_err(|e| {
            ApiError::bad_request(format!("{param} is not valid base64: {e}")).with_param(param)
        })
}

/// The bytes of an `image_url`: a `data:` URL, or a local file (a path or `file://`
/// URL) when the server allows files. Remote URLs are refused: the server never fetches.
pub fn image_from_url(url: &str, config: &ServerConfig, param: &str) -> ApiResult<ImageBytes> {
    let data = if let Some(rest) = url.strip_prefix("data:") {
        let (header, payload) = rest.split_once(',').ok_or_else(|| {
            ApiError::bad_request(format!("{param} is a data: URL without a comma"))
                .with_param(param)
        })?;
        if !header.ends_with(";base64") {
            return Err(ApiError::bad_request(format!(
                "{param}: only base64 data: URLs are accepted (data:image/png;base64,...)"
            ))
            .with_param(param));
        }
        base64(payload, param)?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::bad_request(format!(
            "{param}: remote URLs are not fetched; send the image as a data: URL"
        ))
        .with_param(param));
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        read_local(Path::new(path), config, param)?
    };
    check_image(&data, param, &config.limits)?;
    Ok(ImageBytes {
        name: param.to_string(),
        data,
    })
}

/// Refuses bytes that are not an image or whose header declares too many pixels.
pub fn check_image(data: &[u8], name: &str, limits: &Limits) -> ApiResult<()> {
    let (w, h) = image_dimensions(data, Path::new(name)).map_err(|e| {
        ApiError::bad_request(format!(
            "{e} (images must be {})",
            omni::modality::image::SUPPORTED_FORMATS
        ))
        .with_param(name)
    })?;
    if u64::from(w) * u64::from(h) > limits.max_image_pixels {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{name}: the image is {w}×{h} pixels, above this server's limit of {} pixels",
                limits.max_image_pixels
            ),
        )
        .with_param(name));
    }
    Ok(())
}

/// Reads a local file the request names, if it lies under the allowed root.
fn read_local(path: &Path, config: &ServerConfig, param: &str) -> ApiResult<Vec<u8>> {
    let Some(root) = &config.file_root else {
        return Err(ApiError::bad_request(format!(
            "{param}: local file paths are disabled on this server (start it with --allow-files DIR), \
             or send the image as a data: URL"
        ))
        .with_param(param));
    };
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{param}: {} is not under the directory this server may read",
                path.display()
            ),
        )
        .with_param(param)
    };
    if !path.is_absolute() {
        return Err(forbidden());
    }
    let real: PathBuf = path.canonicalize().map_err(|_| {
        ApiError::bad_request(format!("{param}: {} does not exist", path.display()))
            .with_param(param)
    })?;
    let root = root.canonicalize().map_err(|e| {
        ApiError::unavailable(format!(
            "the allowed file root {} is unreadable: {e}",
            root.display()
        ))
    })?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err(forbidden());
    }
    let len = real.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if len > config.limits.max_body_bytes as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{param}: the file is larger than {} bytes",
                config.limits.max_body_bytes
            ),
        ));
    }
    std::fs::read(&real).map_err(|e| {
        ApiError::bad_request(format!("{param}: cannot read {}: {e}", path.display()))
            .with_param(param)
    })
}

/// Decodes audio (any format omni reads; `name`'s extension is a hint) to 16 kHz mono,
/// refusing audio longer than the limit. CPU work: call it off the async threads.
pub fn audio_samples(data: Vec<u8>, name: &str, limits: &Limits) -> ApiResult<Vec<f32>> {
    let path = Path::new(name);
    let audio = decode_bytes(data, path)
        .map_err(|e| ApiError::bad_request(e.to_string()).with_param(name))?;
    if audio.duration() > limits.max_audio_secs {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{name}: the audio lasts {:.0} s, above this server's limit of {:.0} s",
                audio.duration(),
                limits.max_audio_secs
            ),
        )
        .with_param(name));
    }
    to_rate(audio, SAMPLE_RATE, path).map_err(|e| ApiError::bad_request(e.to_string()))
}
