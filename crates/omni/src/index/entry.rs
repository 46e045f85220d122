//! What the index stores per file: the entry's metadata (source path, kind, content hash,
//! modification time, preview) and its binary encoding. The embedding itself lives in the
//! index's contiguous matrix, one row per entry.

use super::codec::{ReadResult, Reader, Writer};

/// What kind of file an entry was embedded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Image,
    Text,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Image => 1,
            Kind::Text => 2,
        }
    }

    fn from_tag(t: u8) -> ReadResult<Self> {
        match t {
            1 => Ok(Kind::Image),
            2 => Ok(Kind::Text),
            _ => Err(format!("unknown entry kind tag {t}")),
        }
    }

    /// `"image"` or `"text"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Text => "text",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One indexed file (without its embedding).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Assigned by the index; never reused.
    pub id: u64,
    /// The source file (absolute when added by [`super::index_dir`]); unique in the index.
    pub path: String,
    pub kind: Kind,
    /// SHA-256 of the file's bytes.
    pub hash: [u8; 32],
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: i64,
    /// A thumbnail or preview image, if one was made.
    pub thumbnail: Option<String>,
    /// The start of a text file, for display.
    pub snippet: Option<String>,
}

/// An entry to add: its metadata and its embedding (any length-`dim` vector; the index
/// L2-normalises it).
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub path: String,
    pub kind: Kind,
    pub hash: [u8; 32],
    pub modified_ns: i64,
    pub thumbnail: Option<String>,
    pub snippet: Option<String>,
    pub vector: Vec<f32>,
}

impl Entry {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.str(&self.path);
        w.u8(self.kind.tag());
        w.bytes(&self.hash);
        w.i64(self.modified_ns);
        w.opt_str(self.thumbnail.as_deref());
        w.opt_str(self.snippet.as_deref());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        Ok(Entry {
            id: r.u64()?,
            path: r.str()?,
            kind: Kind::from_tag(r.u8()?)?,
            hash: r.hash()?,
            modified_ns: r.i64()?,
            thumbnail: r.opt_str()?,
            snippet: r.opt_str()?,
        })
    }
}

/// Hex form of a content hash.
pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
