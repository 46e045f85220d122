//! The append-only log of changes since the last snapshot.
//!
//! File layout: a 16-byte header (`OMNIWAL1`, u64 sequence number), then records. A record
//! is one acknowledged batch: `u32 payload length, u32 CRC-32 of the payload, payload`;
//! the payload is `u32 op count` and the ops. Each append is followed by `fsync`, and
//! only then does [`Wal::append`] return: an acknowledged batch is on disk. A process
//! killed mid-append leaves at most one torn record at the end; replay stops before it
//! and a writable open truncates it. A bad checksum on a record that is *not* the last
//! one is real corruption and an error naming the file and offset.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::{ReadResult, Reader, Writer};
use super::entry::Entry;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OMNIWAL1";
const HEADER: u64 = 16;

/// One change to the index.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A new row (replaces the live entry with the same path, if any). The vector is
    /// already normalised.
    Add(Entry, Vec<f32>),
    /// Marks the entry with this id as removed.
    Remove(u64),
}

impl Op {
    fn encode(&self, w: &mut Writer) {
        match self {
            Op::Add(entry, vector) => {
                w.u8(1);
                entry.encode(w);
                w.f32s(vector);
            }
            Op::Remove(id) => {
                w.u8(2);
                w.u64(*id);
            }
        }
    }

    fn decode(r: &mut Reader<'_>, dim: usize) -> ReadResult<Self> {
        match r.u8()? {
            1 => {
                let entry = Entry::decode(r)?;
                let mut v = Vec::with_capacity(dim);
                r.f32s_into(dim, &mut v)?;
                Ok(Op::Add(entry, v))
            }
            2 => Ok(Op::Remove(r.u64()?)),
            t => Err(format!("unknown op tag {t}")),
        }
    }
}

/// The log file, open for appending (or just read, when the index is read-only).
#[derive(Debug)]
pub(crate) struct Wal {
    pub(crate) path: PathBuf,
    file: Option<File>,
    /// Bytes of valid content (header + whole records).
    pub(crate) len: u64,
}

/// The name of the log with sequence number `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("wal-{seq:06}.log")
}

impl Wal {
    /// Creates (or truncates) an empty log and makes it durable.
    pub(crate) fn create(path: &Path, seq: u64) -> Result<Self> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut w = Writer::default();
        w.bytes(MAGIC);
        w.u64(seq);
        f.write_all(&w.buf)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(f),
            len: HEADER,
        })
    }

    /// Reads every whole record of the log at `path` (which must carry sequence number
    /// `seq`), calling `apply` on each batch in order. With `writable`, a torn tail is
    /// truncated and the log is kept open for appends.
    pub(crate) fn replay(
        path: &Path,
        seq: u64,
        dim: usize,
        writable: bool,
        mut apply: impl FnMut(Vec<Op>) -> ReadResult<()>,
    ) -> Result<Self> {
        let bad = |reason: String| Error::IndexFile {
            path: path.to_path_buf(),
            reason,
        };
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if data.len() < HEADER as usize || &data[..8] != MAGIC {
            return Err(bad("not an omni index log (bad header)".into()));
        }
        let mut r = Reader::new(&data);
        r.take(8).map_err(bad)?;
        let file_seq = r.u64().map_err(bad)?;
        if file_seq != seq {
            return Err(bad(format!(
                "log sequence {file_seq} does not match the snapshot's {seq}"
            )));
        }
        let mut valid = HEADER as usize;
        while r.remaining() > 0 {
            let at = r.pos();
            if r.remaining() < 8 {
                break; // torn record header
            }
            let len = r.u32().map_err(bad)? as usize;
            let crc = r.u32().map_err(bad)?;
            if len > r.remaining() {
                break; // torn record body
            }
            let payload = r.take(len).map_err(bad)?;
            if crc32fast::hash(payload) != crc {
                if r.remaining() == 0 {
                    break; // a torn last record
                }
                return Err(bad(format!(
                    "record at byte {at} fails its checksum and is not the last one: the file is corrupt"
                )));
            }
            let mut p = Reader::new(payload);
            let ops = (|| {
                let n = p.u32()? as usize;
                let mut ops = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    ops.push(Op::decode(&mut p, dim)?);
                }
                if p.remaining() != 0 {
                    return Err(format!("{} stray bytes", p.remaining()));
                }
                Ok(ops)
            })()
            .map_err(|e| bad(format!("record at byte {at}: {e}")))?;
            apply(ops).map_err(|e| bad(format!("record at byte {at}: {e}")))?;
            valid = r.pos();
        }
        let file = if writable {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            if valid < data.len() {
                tracing::warn!(
                    "{}: dropping a torn record at the end ({} bytes, never acknowledged)",
                    path.display(),
                    data.len() - valid
                );
                f.set_len(valid as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io(path, e))?;
            }
            f.seek(SeekFrom::Start(valid as u64))
                .map_err(|e| Error::io(path, e))?;
            Some(f)
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len: valid as u64,
        })
    }

    /// Appends one batch as one record and fsyncs it. On failure the log is cut back to
    /// its previous length, so a failed batch leaves no partial record behind.
    pub(crate) fn append(&mut self, ops: &[Op]) -> Result<()> {
        let path = self.path.clone();
        let Some(f) = self.file.as_mut() else {
            return Err(Error::InvalidInput(format!(
                "{}: the index is open read-only",
                path.display()
            )));
        };
        let mut payload = Writer::default();
        payload.u32(ops.len() as u32);
        for op in ops {
            op.encode(&mut payload);
        }
        let len = u32::try_from(payload.buf.len()).map_err(|_| {
            Error::InvalidInput(format!(
                "a batch of {} bytes is too large for one log record; add fewer entries at once",
                payload.buf.len()
            ))
        })?;
        let mut rec = Writer::with_capacity(payload.buf.len() + 8);
        rec.u32(len);
        rec.u32(crc32fast::hash(&payload.buf));
        rec.bytes(&payload.buf);
        let res = f.write_all(&rec.buf).and_then(|_| f.sync_data());
        if let Err(e) = res {
            // Best effort: drop whatever part of the record reached the file.
            let _ = f
                .set_len(self.len)
                .and_then(|_| f.seek(SeekFrom::Start(self.len)).map(|_| ()));
            return Err(Error::io(&path, e));
        }
        self.len += rec.buf.len() as u64;
        Ok(())
    }
}
