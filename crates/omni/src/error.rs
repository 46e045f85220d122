//! The library's error type: every variant names the input it is about.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in omni, with enough context to act on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed. (The I/O error is part of the message, not a
    /// `source`, so that error chains print it once.)
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A weight, config or tokenizer file is malformed, truncated or inconsistent.
    #[error("{}: {reason}", path.display())]
    ModelFile { path: PathBuf, reason: String },
    /// A model file is valid but describes an architecture omni does not run.
    #[error("{}: unsupported architecture `{arch}` (supported: {supported})", path.display())]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    /// A media file (audio, image, …) cannot be decoded.
    #[error("{}: {reason}", path.display())]
    Media { path: PathBuf, reason: String },
    /// A model name is neither a path nor in the catalogue.
    #[error("unknown model `{name}` (not a path, not in the catalogue; try `omni models list`)")]
    UnknownModel { name: String },
    /// Downloading a model failed (offline, server error, …).
    #[error("cannot fetch {what} from {url}: {reason}")]
    Fetch {
        what: String,
        url: String,
        reason: String,
    },
    /// A downloaded or cached file does not match the catalogue's size or sha256.
    #[error("{}: integrity check failed: {reason}", path.display())]
    Integrity { path: PathBuf, reason: String },
    /// A prompt does not fit in the model's context window.
    #[error("the prompt has {tokens} tokens but the model's context holds {context}")]
    ContextOverflow { tokens: usize, context: usize },
    /// Text could not be tokenized or detokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An index file is corrupt, truncated, of another format, or locked.
    #[error("{}: {reason}", path.display())]
    IndexFile { path: PathBuf, reason: String },
    /// Vectors of different dimensions meet (index, model, query).
    #[error("dimension mismatch: {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        what: String,
        expected: usize,
        got: usize,
    },
    /// A query or embedder from another embedding space than the index's.
    #[error(
        "{}: the index holds `{index}` embeddings, not `{query}`; use the model `{index}` (or re-index with `{query}`)",
        path.display()
    )]
    SpaceMismatch {
        path: PathBuf,
        index: String,
        query: String,
    },
    /// A helper program omni runs (espeak-ng, …) is missing or fails.
    #[error("`{program}` is not available ({reason}): {hint}")]
    MissingProgram {
        program: String,
        reason: String,
        hint: String,
    },
    /// An argument or request is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// A malformed model file at `path`.
    pub fn model_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::ModelFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// A candle error as one line: without the backtrace candle attaches when `RUST_BACKTRACE`
/// is set, and with context lines joined by `: `.
pub(crate) fn candle_one_line(e: &candle_core::Error) -> String {
    let mut e = e;
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = inner;
    }
    e.to_string()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}
