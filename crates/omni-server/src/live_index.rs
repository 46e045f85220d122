//! The index `/v1/search` queries, kept current: when `omni index add` (another process)
//! changes its files, the next search reopens it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use omni::index::{Index, IndexOptions};

use crate::error::{ApiError, ApiResult};

/// Names, sizes and modification times of an index's files.
type Stamp = Vec<(std::ffi::OsString, u64, Option<SystemTime>)>;

/// A read-only index that follows its directory.
pub struct LiveIndex {
    dir: PathBuf,
    current: RwLock<(Stamp, Arc<Index>)>,
}

impl LiveIndex {
    /// Opens the index in `dir` read-only.
    pub fn open(dir: &Path) -> omni::Result<Self> {
        let stamp = stamp(dir);
        let index = Index::open_read_only(dir, IndexOptions::default())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            current: RwLock::new((stamp, Arc::new(index))),
        })
    }

    /// The index as loaded last, without checking the directory.
    pub fn loaded(&self) -> Arc<Index> {
        self.current
            .read()
            .map(|c| c.1.clone())
            .unwrap_or_else(|e| e.into_inner().1.clone())
    }

    /// The index as it is on disk now: reopened if its files changed since the last look.
    /// Blocking (a reopen reads the index): call it off the async threads.
    pub fn fresh(&self) -> ApiResult<Arc<Index>> {
        let now = stamp(&self.dir);
        if let Ok(current) = self.current.read()
            && current.0 == now
        {
            return Ok(current.1.clone());
        }
        let index = Index::open_read_only(&self.dir, IndexOptions::default()).map_err(|e| {
            ApiError::unavailable(format!(
                "cannot reopen the index {}: {e}",
                self.dir.display()
            ))
        })?;
        let index = Arc::new(index);
        if let Ok(mut current) = self.current.write() {
            *current = (now, index.clone());
        }
        Ok(index)
    }
}

/// The stamp of the files directly in `dir` (the thumbnails' folder aside).
fn stamp(dir: &Path) -> Stamp {
    let mut files: Stamp = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (e.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}
