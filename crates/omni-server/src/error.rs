//! Errors as OpenAI's clients expect them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failed request: the status and the message the client sees.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A short machine-readable code (`model_not_found`, `invalid_api_key`, …).
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 400: the request is malformed or names bad input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a model the server does not serve.
    pub fn unknown_model(model: &str, served: &[String]) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!(
                "the model `{model}` does not exist here; this server serves: {}",
                served.join(", ")
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 429: the queue is full.
    pub fn busy(what: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the server is busy ({what} queue full); retry shortly"),
        )
        .with_code("rate_limit_exceeded")
    }

    /// 503: a model could not be loaded or its worker stopped.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's error `type` for the status.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Library errors: bad input is the client's (400), an unknown model 404, the rest the
/// server's (500).
impl From<omni::Error> for ApiError {
    fn from(e: omni::Error) -> Self {
        use omni::Error as E;
        let status = match &e {
            E::InvalidInput(_)
            | E::Media { .. }
            | E::ContextOverflow { .. }
            | E::Tokenizer(_)
            | E::DimensionMismatch { .. }
            | E::SpaceMismatch { .. } => StatusCode::BAD_REQUEST,
            E::UnknownModel { .. } => StatusCode::NOT_FOUND,
            E::MissingProgram { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;
