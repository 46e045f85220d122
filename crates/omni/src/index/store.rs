//! [`Index`]: opening (snapshot + log replay), acknowledged batches, compaction, graph
//! upkeep and search.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::entry::{Entry, NewEntry};
use super::exact;
use super::fsutil::{atomic_write, sync_dir};
use super::hnsw::{Hnsw, Rows};
use super::simd::normalized;
use super::snapshot;
use super::table::Table;
use super::wal::{self, Op, Wal};
use super::{Hit, IndexOptions, SearchMode, SearchOptions};
use crate::{Error, Result};

const META: &str = "index.json";
const SNAPSHOT: &str = "snapshot.bin";
const GRAPH: &str = "graph.bin";
const LOCK: &str = "LOCK";
const FORMAT: &str = "omni-index";
const VERSION: u32 = 1;

/// `index.json`: what the index holds, written once, atomically, at creation.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    /// The embedding model / space the vectors come from.
    space: String,
    dim: usize,
}

/// A persistent vector index in a directory (see the module docs).
///
/// A writable index holds an exclusive lock on `DIR/LOCK`; read-only opens take no lock
/// and see every batch acknowledged before they opened.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    space: String,
    opts: IndexOptions,
    table: Table,
    wal: Wal,
    wal_seq: u64,
    graph: Option<Hnsw>,
    /// Nodes in `graph.bin` on disk (to skip needless saves).
    graph_saved: usize,
    writable: bool,
    _lock: Option<File>,
}

impl Index {
    /// Opens the index in `dir` for writing, creating it for `space`/`dim` if absent.
    /// An existing index must hold the same space and dimension.
    pub fn open(dir: &Path, space: &str, dim: usize, opts: IndexOptions) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidInput(
                "an index needs a dimension above 0".into(),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = take_lock(dir)?;
        let meta_path = dir.join(META);
        let meta = if meta_path.exists() {
            let meta = read_meta(&meta_path)?;
            if meta.space != space {
                return Err(Error::SpaceMismatch {
                    path: dir.to_path_buf(),
                    index: meta.space,
                    query: space.to_string(),
                });
            }
            if meta.dim != dim {
                return Err(Error::DimensionMismatch {
                    what: format!(
                        "index {} ({}) vs model `{space}`",
                        dir.display(),
                        meta.space
                    ),
                    expected: meta.dim,
                    got: dim,
                });
            }
            meta
        } else {
            if dir.join(SNAPSHOT).exists() {
                return Err(Error::IndexFile {
                    path: meta_path,
                    reason: "missing, but the directory holds a snapshot: not a complete index"
                        .into(),
                });
            }
            // A fresh index: the empty log first, then index.json (its presence marks a
            // complete index).
            Wal::create(&dir.join(wal::file_name(0)), 0)?;
            let meta = Meta {
                format: FORMAT.into(),
                version: VERSION,
                space: space.into(),
                dim,
            };
            let json = serde_json::to_vec_pretty(&meta)
                .map_err(|e| Error::InvalidInput(format!("index.json: {e}")))?;
            atomic_write(&meta_path, &json)?;
            meta
        };
        let mut index = Self::load(dir, meta, opts, true, Some(lock))?;
        // A graph rebuilt or much extended on open (say after a crash) is saved now, so
        // that read-only searches do not redo that work.
        if index
            .graph
            .as_ref()
            .is_some_and(|g| g.len() > index.graph_saved + 1000)
        {
            index.save_graph()?;
        }
        Ok(index)
    }

    /// Opens an existing index for searching only (no lock, nothing written).
    pub fn open_read_only(dir: &Path, opts: IndexOptions) -> Result<Self> {
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Err(Error::IndexFile {
                path: dir.to_path_buf(),
                reason: "no index here (index.json is missing); create one with `omni index add`"
                    .into(),
            });
        }
        // A writer may compact between our reading the snapshot and its log: retry.
        let mut last = None;
        for _ in 0..5 {
            let meta = read_meta(&meta_path)?;
            match Self::load(dir, meta, opts.clone(), false, None) {
                Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                    last = Some(error);
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
        Err(Error::io(
            dir,
            last.unwrap_or_else(|| std::io::Error::other("index files keep changing")),
        ))
    }

    fn load(
        dir: &Path,
        meta: Meta,
        opts: IndexOptions,
        writable: bool,
        lock: Option<File>,
    ) -> Result<Self> {
        let dim = meta.dim;
        let snap = dir.join(SNAPSHOT);
        let (mut table, wal_seq) = if snap.exists() {
            let (t, seq, _) = snapshot::read(&snap, dim)?;
            (t, seq)
        } else {
            (Table::new(dim), 0)
        };
        let wal_path = dir.join(wal::file_name(wal_seq));
        let wal = if !wal_path.exists() && writable {
            Wal::create(&wal_path, wal_seq)?
        } else {
            Wal::replay(&wal_path, wal_seq, dim, writable, |ops| {
                ops.into_iter().try_for_each(|op| table.apply(op))
            })?
        };
        let mut index = Self {
            dir: dir.to_path_buf(),
            space: meta.space,
            opts,
            table,
            wal,
            wal_seq,
            graph: None,
            graph_saved: 0,
            writable,
            _lock: lock,
        };
        if writable {
            index.remove_strays(&wal_path);
        }
        index.load_graph();
        Ok(index)
    }

    /// Deletes logs other than the current one and temp files left by a crash.
    fn remove_strays(&self, current: &Path) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let stray_wal = name.starts_with("wal-") && name.ends_with(".log") && p != current;
            let temp = name.starts_with('.') && name.contains(".tmp-");
            if (stray_wal || temp)
                && let Err(err) = fs::remove_file(&p)
            {
                tracing::warn!("{}: cannot remove stray file: {err}", p.display());
            }
        }
    }

    /// Loads `graph.bin` when the index is large enough, rebuilding it when absent, stale
    /// or corrupt (it is derived data), and extends it to every row.
    fn load_graph(&mut self) {
        if self.table.rows() < self.opts.exact_threshold {
            return;
        }
        let path = self.dir.join(GRAPH);
        let mut graph = None;
        if path.exists() {
            match Hnsw::load(&path, self.table.rows()) {
                Ok(g) if g.layout_gen == self.table.layout_gen => {
                    self.graph_saved = g.len();
                    graph = Some(g);
                }
                Ok(_) => tracing::info!("{}: stale graph, rebuilding", path.display()),
                Err(e) => tracing::warn!("{e}; rebuilding the graph"),
            }
        }
        let mut g = graph.unwrap_or_else(|| Hnsw::new(self.opts.hnsw, self.table.layout_gen));
        self.extend_graph_to_rows(&mut g);
        self.graph = Some(g);
    }

    fn extend_graph_to_rows(&self, g: &mut Hnsw) {
        let rows = Rows {
            data: &self.table.matrix,
            dim: self.table.dim,
        };
        g.extend(rows, self.table.rows());
    }

    /// The embedding space (model name) of the index.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.table.dim
    }

    /// The directory holding the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.table.live_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether searches use the HNSW graph (the index is at or above the threshold).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// The live entry for a source path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.table
            .by_path
            .get(path)
            .map(|&r| &self.table.entries[r])
    }

    /// The (normalised) vector of a live entry.
    pub fn vector(&self, id: u64) -> Option<&[f32]> {
        self.table.by_id.get(&id).map(|&r| self.table.row(r))
    }

    /// Every live entry, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.table
            .entries
            .iter()
            .zip(&self.table.live)
            .filter(|(_, l)| **l)
            .map(|(e, _)| e)
    }

    /// Adds a batch (an entry whose path is already indexed replaces it) and returns the
    /// new ids. When this returns `Ok`, the batch is on disk: it survives `kill -9`.
    pub fn add(&mut self, items: Vec<NewEntry>) -> Result<Vec<u64>> {
        let dim = self.table.dim;
        let mut ops = Vec::with_capacity(items.len());
        let mut ids = Vec::with_capacity(items.len());
        for (next, it) in (self.table.next_id..).zip(items) {
            if it.vector.len() != dim {
                return Err(Error::DimensionMismatch {
                    what: format!("vector for {} vs index {}", it.path, self.dir.display()),
                    expected: dim,
                    got: it.vector.len(),
                });
            }
            let v = normalized(&it.vector).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: the embedding is zero or not finite; not indexed",
                    it.path
                ))
            })?;
            let entry = Entry {
                id: next,
                path: it.path,
                kind: it.kind,
                hash: it.hash,
                modified_ns: it.modified_ns,
                thumbnail: it.thumbnail,
                snippet: it.snippet,
            };
            ids.push(next);
            ops.push(Op::Add(entry, v));
        }
        self.commit(ops)?;
        Ok(ids)
    }

    /// Removes the entries for these source paths (absent ones are ignored) in one
    /// acknowledged batch; returns how many were removed.
    pub fn remove(&mut self, paths: &[&str]) -> Result<usize> {
        let ops: Vec<Op> = paths
            .iter()
            .filter_map(|p| self.get(p).map(|e| Op::Remove(e.id)))
            .collect();
        let n = ops.len();
        if n > 0 {
            self.commit(ops)?;
        }
        Ok(n)
    }

    /// Logs (fsync) then applies a batch, keeps the graph current, compacts when due.
    fn commit(&mut self, ops: Vec<Op>) -> Result<()> {
        if !self.writable {
            return Err(Error::InvalidInput(format!(
                "{}: the index is open read-only",
                self.dir.display()
            )));
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.wal.append(&ops)?;
        for op in ops {
            self.table.apply(op).map_err(|reason| Error::IndexFile {
                path: self.wal.path.clone(),
                reason,
            })?;
        }
        if let Some(mut g) = self.graph.take() {
            self.extend_graph_to_rows(&mut g);
            self.graph = Some(g);
        } else if self.table.rows() >= self.opts.exact_threshold {
            let mut g = Hnsw::new(self.opts.hnsw, self.table.layout_gen);
            self.extend_graph_to_rows(&mut g);
            self.graph = Some(g);
        }
        if self.wal.len > self.opts.compact_after_bytes {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes a new snapshot (dropping removed rows when they are over a quarter of all
    /// rows), starts a new log, deletes the old one and saves the graph. Every step is
    /// atomic: a crash at any point leaves either the old or the new state.
    pub fn compact(&mut self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        if self.table.dead_fraction() > 0.25 {
            self.table.vacuum();
            self.graph = None;
            self.graph_saved = 0;
            if self.table.rows() >= self.opts.exact_threshold {
                let mut g = Hnsw::new(self.opts.hnsw, self.table.layout_gen);
                self.extend_graph_to_rows(&mut g);
                self.graph = Some(g);
            }
        }
        let seq = self.wal_seq + 1;
        let new_path = self.dir.join(wal::file_name(seq));
        let new_wal = Wal::create(&new_path, seq)?;
        sync_dir(&self.dir)?;
        snapshot::write(&self.dir.join(SNAPSHOT), &self.table, seq)?;
        let old = std::mem::replace(&mut self.wal, new_wal);
        self.wal_seq = seq;
        if let Err(e) = fs::remove_file(&old.path) {
            // Harmless: the next writable open removes logs the snapshot does not name.
            tracing::warn!("{}: cannot remove the old log: {e}", old.path.display());
        }
        sync_dir(&self.dir)?;
        self.save_graph()
    }

    /// Saves the graph if it has grown since it was last saved (call when a job ends).
    pub fn save_graph(&mut self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        if let Some(g) = &self.graph
            && g.len() != self.graph_saved
        {
            g.save(&self.dir.join(GRAPH))?;
            self.graph_saved = g.len();
        }
        Ok(())
    }

    /// The `opts.k` entries most similar to `query` (a vector from embedding space
    /// `space`), best first. A query from another space or of another dimension is
    /// refused.
    pub fn search(&self, space: &str, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit>> {
        if space != self.space {
            return Err(Error::SpaceMismatch {
                path: self.dir.clone(),
                index: self.space.clone(),
                query: space.to_string(),
            });
        }
        if query.len() != self.table.dim {
            return Err(Error::DimensionMismatch {
                what: format!("query vs index {}", self.dir.display()),
                expected: self.table.dim,
                got: query.len(),
            });
        }
        let q = normalized(query).ok_or_else(|| {
            Error::InvalidInput("the query embedding is zero or not finite".into())
        })?;
        let t = &self.table;
        let kind = opts.kind;
        let accept = |i: u32| {
            let i = i as usize;
            t.live[i] && kind.is_none_or(|k| t.entries[i].kind == k)
        };
        let graph = match opts.mode {
            SearchMode::Exact => None,
            SearchMode::Auto | SearchMode::Approximate => self.graph.as_ref(),
        };
        let found = match graph {
            Some(g) => {
                let rows = Rows {
                    data: &t.matrix,
                    dim: t.dim,
                };
                g.search(rows, &q, opts.k, opts.ef, &accept)
            }
            None => exact::top_k(&t.matrix, t.dim, &q, opts.k, &accept),
        };
        Ok(found
            .into_iter()
            .map(|(row, score)| Hit {
                entry: t.entries[row as usize].clone(),
                score,
            })
            .collect())
    }
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(Error::IndexFile {
            path,
            reason: "the index is being written by another process (is another `omni index add` running?)"
                .into(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn read_meta(path: &Path) -> Result<Meta> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| Error::IndexFile {
        path: path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })?;
    if meta.format != FORMAT || meta.version != VERSION {
        return Err(Error::IndexFile {
            path: path.to_path_buf(),
            reason: format!(
                "format `{}` version {}; this omni reads `{FORMAT}` version {VERSION}",
                meta.format, meta.version
            ),
        });
    }
    if meta.dim == 0 {
        return Err(Error::IndexFile {
            path: path.to_path_buf(),
            reason: "dimension 0".into(),
        });
    }
    Ok(meta)
}
