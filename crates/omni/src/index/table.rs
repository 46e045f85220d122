//! The index in memory: entries, a liveness flag per row, and the embeddings as one
//! contiguous row-major `f32` matrix (what exact search scans and the graph indexes).
//!
//! Rows are only appended; removing or replacing an entry marks its row dead (the graph
//! still routes through it). [`Table::vacuum`] drops dead rows and bumps
//! `layout_gen`, which invalidates any saved graph.

use std::collections::HashMap;

use super::codec::ReadResult;
use super::entry::Entry;
use super::wal::Op;

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) dim: usize,
    pub(crate) entries: Vec<Entry>,
    pub(crate) live: Vec<bool>,
    pub(crate) matrix: Vec<f32>,
    /// Live rows by source path and by id.
    pub(crate) by_path: HashMap<String, usize>,
    pub(crate) by_id: HashMap<u64, usize>,
    pub(crate) next_id: u64,
    /// Changes whenever row numbers change (vacuum).
    pub(crate) layout_gen: u64,
}

impl Table {
    pub(crate) fn new(dim: usize) -> Self {
        Self {
            dim,
            entries: Vec::new(),
            live: Vec::new(),
            matrix: Vec::new(),
            by_path: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 0,
            layout_gen: 0,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.matrix[i * self.dim..(i + 1) * self.dim]
    }

    /// Appends a row as stored (live or dead), as the snapshot reader does.
    pub(crate) fn push_row(&mut self, entry: Entry, live: bool, vector: &[f32]) -> ReadResult<()> {
        if vector.len() != self.dim {
            return Err(format!(
                "entry {} has a {}-d vector, expected {}",
                entry.id,
                vector.len(),
                self.dim
            ));
        }
        let row = self.entries.len();
        self.next_id = self.next_id.max(entry.id + 1);
        if live {
            if let Some(old) = self.by_path.insert(entry.path.clone(), row) {
                self.kill(old);
            }
            self.by_id.insert(entry.id, row);
        }
        self.entries.push(entry);
        self.live.push(live);
        self.matrix.extend_from_slice(vector);
        Ok(())
    }

    fn kill(&mut self, row: usize) {
        if self.live[row] {
            self.live[row] = false;
            let e = &self.entries[row];
            self.by_id.remove(&e.id);
            if self.by_path.get(&e.path) == Some(&row) {
                self.by_path.remove(&e.path);
            }
        }
    }

    /// Applies one logged change.
    pub(crate) fn apply(&mut self, op: Op) -> ReadResult<()> {
        match op {
            Op::Add(entry, vector) => self.push_row(entry, true, &vector),
            Op::Remove(id) => {
                // Removing an id that is already gone is harmless (idempotent replay).
                if let Some(&row) = self.by_id.get(&id) {
                    self.kill(row);
                }
                Ok(())
            }
        }
    }

    /// Dead rows as a fraction of all rows.
    pub(crate) fn dead_fraction(&self) -> f64 {
        if self.rows() == 0 {
            0.0
        } else {
            1.0 - self.live_count() as f64 / self.rows() as f64
        }
    }

    /// Drops dead rows (renumbering the rest).
    pub(crate) fn vacuum(&mut self) {
        let mut t = Table::new(self.dim);
        t.layout_gen = self.layout_gen + 1;
        t.next_id = self.next_id;
        for i in 0..self.rows() {
            if self.live[i] {
                let row = t.entries.len();
                let e = self.entries[i].clone();
                t.by_path.insert(e.path.clone(), row);
                t.by_id.insert(e.id, row);
                t.entries.push(e);
                t.live.push(true);
                t.matrix.extend_from_slice(self.row(i));
            }
        }
        *self = t;
    }
}
