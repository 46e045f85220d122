//! Hierarchical navigable small-world graph for approximate nearest-neighbour search
//! (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
//! Hierarchical Navigable Small World graphs", 2016/2018; the neighbour-selection
//! heuristic and layout follow hnswlib's `getNeighborsByHeuristic2`).
//!
//! The graph stores only links; vectors are the index's row matrix, passed in. Similarity
//! is the dot product of L2-normalised rows (cosine). Node `i` is row `i`. Removed rows
//! stay in the graph as routing nodes and are filtered out of results (`accept`).
//!
//! Saved as `graph.bin` (see [`Hnsw::save`]); the graph is derived data: if it is
//! missing, stale or corrupt it is rebuilt from the rows.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use super::codec::{Reader, Writer};
use super::fsutil::atomic_write;
use super::simd::dot;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"OMNIHNS1";
const NONE: u32 = u32::MAX;
const MAX_LEVEL: u8 = 16;

/// Graph construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on the upper layers (twice this on layer 0).
    pub m: usize,
    /// Candidate list size while inserting (higher: better graph, slower build).
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 128,
        }
    }
}

/// A similarity and a node, ordered by similarity (total order, NaN-safe).
#[derive(Debug, Clone, Copy)]
struct Scored(f32, u32);

impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

/// A visited-set over node numbers.
struct Visited(Vec<u64>);

impl Visited {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn clear(&mut self, n: usize) {
        self.0.clear();
        self.0.resize(n.div_ceil(64), 0);
    }
    /// Marks `i`; true if it was not marked before.
    fn insert(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        let Some(word) = self.0.get_mut(w) else {
            return false;
        };
        let fresh = *word & (1 << b) == 0;
        *word |= 1 << b;
        fresh
    }
}

/// The graph (links only).
#[derive(Debug, Clone)]
pub(crate) struct Hnsw {
    params: HnswParams,
    m0: usize,
    /// The table layout this graph numbers (see `Table::layout_gen`).
    pub(crate) layout_gen: u64,
    levels: Vec<u8>,
    /// Layer 0, `m0 + 1` slots per node: count, then neighbour ids.
    links0: Vec<u32>,
    /// Layers 1..=level of nodes whose level is above 0.
    upper: HashMap<u32, Vec<Vec<u32>>>,
    entry: u32,
    max_level: u8,
}

/// Rows of the matrix: `dim` floats each.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) dim: usize,
}

impl Rows<'_> {
    #[inline]
    fn get(&self, i: u32) -> &[f32] {
        let s = i as usize * self.dim;
        self.data.get(s..s + self.dim).unwrap_or(&[])
    }
}

impl Hnsw {
    pub(crate) fn new(params: HnswParams, layout_gen: u64) -> Self {
        let params = HnswParams {
            m: params.m.clamp(2, 128),
            ef_construction: params.ef_construction.max(params.m),
        };
        Self {
            m0: params.m * 2,
            params,
            layout_gen,
            levels: Vec::new(),
            links0: Vec::new(),
            upper: HashMap::new(),
            entry: NONE,
            max_level: 0,
        }
    }

    /// Number of nodes (rows already inserted).
    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    fn links(&self, node: u32, level: usize) -> &[u32] {
        if level == 0 {
            let base = node as usize * (self.m0 + 1);
            let c = self.links0.get(base).copied().unwrap_or(0) as usize;
            self.links0.get(base + 1..base + 1 + c).unwrap_or(&[])
        } else {
            self.upper
                .get(&node)
                .and_then(|l| l.get(level - 1))
                .map(Vec::as_slice)
                .unwrap_or(&[])
        }
    }

    fn set_links(&mut self, node: u32, level: usize, ids: &[u32]) {
        if level == 0 {
            let base = node as usize * (self.m0 + 1);
            let c = ids.len().min(self.m0);
            self.links0[base] = c as u32;
            self.links0[base + 1..base + 1 + c].copy_from_slice(&ids[..c]);
        } else if let Some(l) = self.upper.get_mut(&node).and_then(|l| l.get_mut(level - 1)) {
            l.clear();
            l.extend_from_slice(ids);
        }
    }

    /// A deterministic level for node `i` (geometric with ratio 1/m).
    fn level_for(&self, i: u32) -> u8 {
        // splitmix64 of the node number: reproducible builds.
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * ml) as u32).min(MAX_LEVEL as u32) as u8
    }

    /// Inserts rows `self.len()..n` of `rows`.
    pub(crate) fn extend(&mut self, rows: Rows<'_>, n: usize) {
        let mut visited = Visited::new(n);
        for i in self.len()..n {
            self.insert(rows, i as u32, &mut visited);
        }
    }

    fn insert(&mut self, rows: Rows<'_>, q: u32, visited: &mut Visited) {
        let level = self.level_for(q);
        self.levels.push(level);
        self.links0.extend(std::iter::repeat_n(0, self.m0 + 1));
        if level > 0 {
            self.upper.insert(q, vec![Vec::new(); level as usize]);
        }
        if self.entry == NONE {
            self.entry = q;
            self.max_level = level;
            return;
        }
        let qv = rows.get(q);
        let mut ep = Scored(dot(qv, rows.get(self.entry)), self.entry);
        for lc in (level as usize + 1..=self.max_level as usize).rev() {
            ep = self.greedy(rows, qv, ep, lc);
        }
        let mut eps = vec![ep];
        let n = self.len();
        for lc in (0..=level.min(self.max_level) as usize).rev() {
            visited.clear(n);
            let w = self.search_layer(
                rows,
                qv,
                &eps,
                self.params.ef_construction,
                lc,
                visited,
                &|_| true,
            );
            let selected = select(rows, &w, self.params.m);
            let ids: Vec<u32> = selected.iter().map(|s| s.1).collect();
            self.set_links(q, lc, &ids);
            for s in &selected {
                self.connect(rows, s.1, Scored(s.0, q), lc);
            }
            eps = w;
        }
        if level > self.max_level {
            self.entry = q;
            self.max_level = level;
        }
    }

    /// Adds a link `e → new` at `level`, pruning `e`'s list with the heuristic if full.
    fn connect(&mut self, rows: Rows<'_>, e: u32, new: Scored, level: usize) {
        let cap = if level == 0 { self.m0 } else { self.params.m };
        let current = self.links(e, level);
        if current.len() < cap {
            let mut ids = current.to_vec();
            ids.push(new.1);
            self.set_links(e, level, &ids);
            return;
        }
        let ev = rows.get(e);
        let mut cands: Vec<Scored> = current
            .iter()
            .map(|&c| Scored(dot(ev, rows.get(c)), c))
            .collect();
        cands.push(new);
        cands.sort_unstable_by(|a, b| b.cmp(a));
        let kept = select(rows, &cands, cap);
        let ids: Vec<u32> = kept.iter().map(|s| s.1).collect();
        self.set_links(e, level, &ids);
    }

    /// Hill-climbs from `ep` on `level` with a candidate list of one.
    fn greedy(&self, rows: Rows<'_>, q: &[f32], mut ep: Scored, level: usize) -> Scored {
        loop {
            let mut moved = false;
            for &c in self.links(ep.1, level) {
                let s = dot(q, rows.get(c));
                if s > ep.0 {
                    ep = Scored(s, c);
                    moved = true;
                }
            }
            if !moved {
                return ep;
            }
        }
    }

    /// Best-first search of one layer; returns up to `ef` accepted nodes, best first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        rows: Rows<'_>,
        q: &[f32],
        eps: &[Scored],
        ef: usize,
        level: usize,
        visited: &mut Visited,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let mut cands: BinaryHeap<Scored> = BinaryHeap::new();
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        for &ep in eps {
            if visited.insert(ep.1) {
                cands.push(ep);
                if accept(ep.1) {
                    best.push(Reverse(ep));
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        while let Some(c) = cands.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.0 < w.0.0) {
                break;
            }
            for &e in self.links(c.1, level) {
                if !visited.insert(e) {
                    continue;
                }
                let s = Scored(dot(q, rows.get(e)), e);
                if best.len() < ef || best.peek().is_some_and(|w| s.0 > w.0.0) {
                    cands.push(s);
                    if accept(e) {
                        best.push(Reverse(s));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Scored> = best.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// The (up to) `k` accepted nodes most similar to `q`, best first, with their scores.
    pub(crate) fn search(
        &self,
        rows: Rows<'_>,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        if self.entry == NONE || k == 0 {
            return Vec::new();
        }
        let mut ep = Scored(dot(q, rows.get(self.entry)), self.entry);
        for lc in (1..=self.max_level as usize).rev() {
            ep = self.greedy(rows, q, ep, lc);
        }
        let mut visited = Visited::new(self.len());
        let mut w = self.search_layer(rows, q, &[ep], ef.max(k), 0, &mut visited, accept);
        w.truncate(k);
        w.into_iter().map(|s| (s.1, s.0)).collect()
    }

    /// Writes the graph to `path` atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut w = Writer::with_capacity(64 + self.links0.len() * 4 + self.levels.len());
        w.bytes(MAGIC);
        w.u64(self.layout_gen);
        w.u32(self.params.m as u32);
        w.u32(self.params.ef_construction as u32);
        w.u64(self.levels.len() as u64);
        w.u32(self.entry);
        w.u8(self.max_level);
        w.bytes(&self.levels);
        w.u32s(&self.links0);
        for (i, &l) in self.levels.iter().enumerate() {
            for lc in 1..=l as usize {
                let ids = self.links(i as u32, lc);
                w.u32(ids.len() as u32);
                w.u32s(ids);
            }
        }
        let crc = crc32fast::hash(&w.buf);
        w.u32(crc);
        atomic_write(path, &w.buf)
    }

    /// Reads a graph saved by [`Hnsw::save`], checking every link against `rows` nodes.
    pub(crate) fn load(path: &Path, rows: usize) -> Result<Self> {
        let bad = |reason: String| Error::IndexFile {
            path: path.to_path_buf(),
            reason,
        };
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if data.len() < 45 || &data[..8] != MAGIC {
            return Err(bad("not an omni HNSW graph (bad header)".into()));
        }
        let (body, tail) = data.split_at(data.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) {
            return Err(bad("checksum mismatch: the graph file is corrupt".into()));
        }
        let mut r = Reader::new(body);
        let parse = |r: &mut Reader<'_>| -> std::result::Result<Hnsw, String> {
            r.take(8)?;
            let layout_gen = r.u64()?;
            let m = r.u32()? as usize;
            let ef_construction = r.u32()? as usize;
            let mut g = Hnsw::new(HnswParams { m, ef_construction }, layout_gen);
            if g.params.m != m {
                return Err(format!("invalid m {m}"));
            }
            let n = r.u64()? as usize;
            if n > rows {
                return Err(format!("has {n} nodes but the index has {rows} rows"));
            }
            g.entry = r.u32()?;
            g.max_level = r.u8()?;
            g.levels = r.take(n)?.to_vec();
            g.links0 = r.u32s(n.checked_mul(g.m0 + 1).ok_or("size overflow")?)?;
            for (i, &l) in g.levels.iter().enumerate() {
                if l > MAX_LEVEL {
                    return Err(format!("node {i} has level {l}"));
                }
                let mut lists = Vec::with_capacity(l as usize);
                for _ in 0..l {
                    let c = r.u32()? as usize;
                    if c > g.params.m {
                        return Err(format!("node {i} has {c} links on an upper layer"));
                    }
                    lists.push(r.u32s(c)?);
                }
                if l > 0 {
                    g.upper.insert(i as u32, lists);
                }
            }
            if r.remaining() != 0 {
                return Err(format!("{} stray bytes", r.remaining()));
            }
            // Every link must name an existing node that lives on that layer.
            for i in 0..n {
                let c = g.links0[i * (g.m0 + 1)] as usize;
                if c > g.m0 {
                    return Err(format!("node {i} has {c} links on layer 0"));
                }
                for lc in 0..=g.levels[i] as usize {
                    for &t in g.links(i as u32, lc) {
                        if t as usize >= n || (g.levels[t as usize] as usize) < lc {
                            return Err(format!("node {i} links to invalid node {t}"));
                        }
                    }
                }
            }
            let entry_ok = if n == 0 {
                g.entry == NONE
            } else {
                (g.entry as usize) < n && g.levels[g.entry as usize] == g.max_level
            };
            if !entry_ok {
                return Err("invalid entry point".into());
            }
            Ok(g)
        };
        parse(&mut r).map_err(bad)
    }
}

/// hnswlib's neighbour heuristic: walk candidates best first and keep one only if it is
/// more similar to the base than to every neighbour kept so far (this keeps links that
/// point in different directions, which matters on clustered data).
fn select(rows: Rows<'_>, cands: &[Scored], m: usize) -> Vec<Scored> {
    if cands.len() <= m {
        return cands.to_vec();
    }
    let mut kept: Vec<Scored> = Vec::with_capacity(m);
    for &c in cands {
        if kept.len() >= m {
            break;
        }
        let cv = rows.get(c.1);
        if kept.iter().all(|k| dot(cv, rows.get(k.1)) < c.0) {
            kept.push(c);
        }
    }
    kept
}
