//! Embedded, persistent vector index for cross-modal search.
//!
//! An [`Index`] is a directory holding `index.json` (embedding space and dimension),
//! `snapshot.bin` (compacted entries and vectors), `wal-NNNNNN.log` (batches acknowledged
//! since the snapshot) and `graph.bin` (the HNSW graph, derived data). See `README.md`
//! next to this file for why it is built this way and what a crash can and cannot lose.
//!
//! Vectors are L2-normalised on the way in and scored by dot product (cosine). Search is
//! exact below [`IndexOptions::exact_threshold`] rows and HNSW above it. [`index_dir`]
//! is the incremental indexing job over a directory, independent of the model that
//! embeds (an [`Embedder`]).

mod codec;
mod entry;
mod exact;
mod fsutil;
mod hnsw;
mod job;
pub(crate) mod simd;
mod snapshot;
mod store;
mod table;
mod thumbnail;
mod wal;

pub use entry::{Entry, Kind, NewEntry, hex};
pub use hnsw::HnswParams;
pub use job::{
    Embedder, FailedFile, IndexDirOptions, IndexReport, Progress, Scoring, index_dir,
    is_image_path, is_text_path,
};
pub use simd::dot;
pub use store::Index;

/// How an index is opened and maintained.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Below this many rows search is exact and no graph is kept; at or above it an HNSW
    /// graph is built and maintained.
    pub exact_threshold: usize,
    /// Compact (write a new snapshot, start a new log) when the log exceeds this size.
    pub compact_after_bytes: u64,
    /// Graph construction parameters.
    pub hnsw: HnswParams,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            exact_threshold: 50_000,
            compact_after_bytes: 64 << 20,
            hnsw: HnswParams::default(),
        }
    }
}

/// Which search algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// The graph when the index has one (at or above the threshold), else exact.
    #[default]
    Auto,
    /// Brute force over every row.
    Exact,
    /// The HNSW graph (exact when the index has no graph yet).
    Approximate,
}

/// Options of [`Index::search`].
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Number of results.
    pub k: usize,
    /// Only entries of this kind.
    pub kind: Option<Kind>,
    pub mode: SearchMode,
    /// HNSW candidate list size (higher: better recall, slower); at least `k` is used.
    pub ef: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 10,
            kind: None,
            mode: SearchMode::Auto,
            ef: 128,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub entry: Entry,
    /// Cosine similarity to the query.
    pub score: f32,
}
