//! Causal grouped-query attention over the KV cache, for one layer.
//!
//! Follows llama.cpp's CPU graph without flash attention, operation for operation:
//! `kq = k·q` with the query rounded to f16 (the cache is f16, and ggml converts the other
//! operand of an f16 matmul to f16) summed as tinyBLAS sums, `softmax(scale · kq)` over a
//! row padded to a multiple of 8 (llama.cpp pads the cache view to 256), the probabilities
//! rounded to f16, then `kqv = vᵀ·p` from the transposed value cache. The dot products
//! follow ggml's summation order (`vec::DotOrder`), which differs between decoding one
//! token and prefilling several.

use super::kv_cache::KvCache;
use super::quant::parallel_for;
use super::vec;

/// Shapes of one attention call.
#[derive(Clone, Copy)]
pub(crate) struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Position of the first query (= tokens already in the cache before this call).
    pub start: usize,
    /// Number of queries.
    pub seq: usize,
}

/// Queries per work item when many queries come at once (prefill).
const QUERY_TILE: usize = 16;

/// `q`: `seq × n_head × head_dim` (rotated); keys/values for positions
/// `0..start + seq` already stored in `cache` layer `layer`. Writes `out`
/// (`seq × n_head × head_dim`).
pub(crate) fn attention(
    q: &mut [f32],
    cache: &KvCache,
    layer: usize,
    shape: AttnShape,
    out: &mut [f32],
) {
    let AttnShape {
        n_head,
        n_kv_head,
        head_dim,
        start,
        seq,
    } = shape;
    // ggml's f16 matmul rounds the query to f16.
    vec::round_to_f16(q);
    let q = &*q;
    let group = n_head / n_kv_head;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (keys, values) = (&cache.k[layer], &cache.v[layer]);
    let out_ptr = SharedOut(out.as_mut_ptr());
    let tiles = seq.div_ceil(QUERY_TILE);
    // llama.cpp's f16 matmul sums differently for one query column and for several.
    let order = if seq == 1 {
        vec::DotOrder::Gemv
    } else {
        vec::DotOrder::Gemm
    };
    // Items: (query head, query tile); a decode step has one tile, so one item per head.
    parallel_for(n_head * tiles, |items| {
        let mut scores = Vec::new();
        for item in items {
            let (h, t) = (item / tiles, item % tiles);
            let g = h / group;
            let k = &keys[cache.k_offset(g, 0)..cache.k_offset(g, start + seq)];
            let v = &values[cache.v_offset(g, 0)..cache.v_offset(g + 1, 0)];
            for i in t * QUERY_TILE..((t + 1) * QUERY_TILE).min(seq) {
                let n_pos = start + i + 1;
                let at = (i * n_head + h) * head_dim;
                let qh = &q[at..at + head_dim];
                // SAFETY: (query i, head h) is written by this item only.
                let oh = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(at), head_dim) };
                attend_one(
                    order,
                    qh,
                    &k[..n_pos * head_dim],
                    v,
                    cache.v_stride(),
                    n_pos,
                    scale,
                    &mut scores,
                    oh,
                );
            }
        }
    });
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: work items write disjoint (query, head) slices of the output.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// One query head over `n_pos` positions: keys `k` (`n_pos × head_dim`), transposed values
/// `v` (`head_dim` rows at `v_stride`).
#[allow(clippy::too_many_arguments)]
fn attend_one(
    order: vec::DotOrder,
    q: &[f32],
    k: &[half::f16],
    v: &[half::f16],
    v_stride: usize,
    n_pos: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    // llama.cpp's cache view is padded to 256 positions; what matters for the sums is
    // padding to the SIMD widths of the softmax (8) and of the p·v products (32).
    let padded = n_pos.next_multiple_of(32);
    scores.clear();
    scores.resize(padded, f32::NEG_INFINITY);
    vec::dots(order, q, k, q.len(), &mut scores[..n_pos]);
    let mut max = f32::NEG_INFINITY;
    for s in scores[..n_pos].iter_mut() {
        *s *= scale;
        max = max.max(*s);
    }
    let sum = vec::softmax_exp(scores, max);
    let inv = (1.0 / sum) as f32;
    for s in scores.iter_mut() {
        *s *= inv;
    }
    // ggml rounds the probabilities to f16 before multiplying with the f16 values.
    vec::round_to_f16(scores);
    vec::dots(order, scores, v, v_stride, out);
}
