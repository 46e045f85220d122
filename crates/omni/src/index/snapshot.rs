//! The compacted state of the index, `snapshot.bin`, always replaced atomically.
//!
//! Layout (little-endian): `OMNISNP1`, u32 format version, u32 dim, u64 log sequence
//! (the log that continues this snapshot), u64 layout generation, u64 next id, u64 row
//! count, then per row the entry, a live byte and `dim` f32; finally a CRC-32 of all
//! preceding bytes.

use std::path::Path;

use super::codec::{Reader, Writer};
use super::entry::Entry;
use super::fsutil::atomic_write;
use super::table::Table;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OMNISNP1";
const VERSION: u32 = 1;

/// Writes `table` (continued by log `wal_seq`) to `path` atomically; returns its size.
pub(crate) fn write(path: &Path, table: &Table, wal_seq: u64) -> Result<u64> {
    let mut w = Writer::with_capacity(64 + table.matrix.len() * 4 + table.rows() * 128);
    w.bytes(MAGIC);
    w.u32(VERSION);
    w.u32(table.dim as u32);
    w.u64(wal_seq);
    w.u64(table.layout_gen);
    w.u64(table.next_id);
    w.u64(table.rows() as u64);
    for i in 0..table.rows() {
        table.entries[i].encode(&mut w);
        w.u8(table.live[i] as u8);
        w.f32s(table.row(i));
    }
    let crc = crc32fast::hash(&w.buf);
    w.u32(crc);
    atomic_write(path, &w.buf)?;
    Ok(w.buf.len() as u64)
}

/// Reads a snapshot: the table and the sequence number of the log that continues it.
pub(crate) fn read(path: &Path, dim: usize) -> Result<(Table, u64, u64)> {
    let bad = |reason: String| Error::IndexFile {
        path: path.to_path_buf(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if data.len() < 48 || &data[..8] != MAGIC {
        return Err(bad("not an omni index snapshot (bad header)".into()));
    }
    let (body, tail) = data.split_at(data.len() - 4);
    let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32fast::hash(body) != want {
        return Err(bad(
            "checksum mismatch: the snapshot is corrupt (restore it from a backup or re-index)"
                .into(),
        ));
    }
    let mut r = Reader::new(body);
    let parse = |r: &mut Reader<'_>| -> std::result::Result<(Table, u64), String> {
        r.take(8)?;
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "format version {version}; this omni reads version {VERSION}"
            ));
        }
        let file_dim = r.u32()? as usize;
        if file_dim != dim {
            return Err(format!(
                "holds {file_dim}-d vectors but index.json says {dim}"
            ));
        }
        let wal_seq = r.u64()?;
        let mut t = Table::new(dim);
        t.layout_gen = r.u64()?;
        let next_id = r.u64()?;
        let rows = r.u64()? as usize;
        let mut v = Vec::with_capacity(dim);
        for _ in 0..rows {
            let e = Entry::decode(r)?;
            let live = r.u8()? != 0;
            v.clear();
            r.f32s_into(dim, &mut v)?;
            t.push_row(e, live, &v)?;
        }
        if r.remaining() != 0 {
            return Err(format!("{} stray bytes after the rows", r.remaining()));
        }
        t.next_id = t.next_id.max(next_id);
        Ok((t, wal_seq))
    };
    let (t, seq) = parse(&mut r).map_err(bad)?;
    Ok((t, seq, data.len() as u64))
}
