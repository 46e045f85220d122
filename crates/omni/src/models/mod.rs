//! The model store: find a model by name or path, fetch and verify it, cache it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The root of omni's cache: `$OMNI_HOME`, else `~/.cache/omni`.
pub fn omni_home() -> PathBuf {
    if let Some(home) = std::env::var_os("OMNI_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    user_home.join(".cache").join("omni")
}

/// Where the catalogue model `name` lives in the cache.
pub fn cached_dir(name: &str) -> PathBuf {
    omni_home().join("models").join(name)
}

/// Resolves a model given by path or by catalogue name to a file or directory on disk.
///
/// Sources in order: a local path, then the cache.
pub fn resolve(name_or_path: &str) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let dir = cached_dir(name_or_path);
    if dir.is_dir() {
        return Ok(dir);
    }
    Err(Error::UnknownModel {
        name: name_or_path.to_string(),
    })
}
