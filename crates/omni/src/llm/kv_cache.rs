//! The key/value cache of one sequence, preallocated for the whole context.

use half::f16;

use super::config::LlmConfig;
use super::model::Scratch;

/// Keys and values of every layer for positions `0..len()`, plus the decoder's scratch
/// buffers, so that a decoding step allocates nothing.
///
/// Values are f16, like llama.cpp's default cache (at long contexts, reading the cache
/// costs as much memory bandwidth as reading the weights). Per layer, keys are laid out
/// `[kv_head][position][head_dim]` and values transposed, `[kv_head][head_dim][position]`
/// (as llama.cpp stores V without flash attention), so that both attention products
/// read contiguous rows. The buffers are allocated zeroed for the full capacity; the OS
/// backs pages only once written, so memory grows with the positions actually used.
#[derive(Debug)]
pub struct KvCache {
    n_kv_head: usize,
    head_dim: usize,
    capacity: usize,
    /// Capacity rounded up to a multiple of 32: the stride of a transposed value row.
    v_stride: usize,
    len: usize,
    pub(crate) k: Vec<Vec<f16>>,
    pub(crate) v: Vec<Vec<f16>>,
    pub(crate) scratch: Scratch,
}

impl KvCache {
    /// A cache for `capacity` positions of a model with `config`.
    pub fn new(config: &LlmConfig, capacity: usize) -> Self {
        let kv = config.n_kv_head * config.head_dim;
        let v_stride = capacity.next_multiple_of(32);
        Self {
            n_kv_head: config.n_kv_head,
            head_dim: config.head_dim,
            capacity,
            v_stride,
            len: 0,
            k: (0..config.n_layer).map(|_| zeroed(capacity * kv)).collect(),
            v: (0..config.n_layer).map(|_| zeroed(v_stride * kv)).collect(),
            scratch: Scratch::default(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold: the context size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` positions (a shared prompt prefix), forgets the rest.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }

    /// Offset of the key of (kv head `h`, position `pos`) in a layer's key buffer.
    #[inline]
    pub(crate) fn k_offset(&self, h: usize, pos: usize) -> usize {
        (h * self.capacity + pos) * self.head_dim
    }

    /// Offset of the value row of (kv head `h`, dimension `d`) in a layer's value buffer.
    #[inline]
    pub(crate) fn v_offset(&self, h: usize, d: usize) -> usize {
        (h * self.head_dim + d) * self.v_stride
    }

    /// Distance between two transposed value rows.
    pub(crate) fn v_stride(&self) -> usize {
        self.v_stride
    }

    pub(crate) fn n_kv_head(&self) -> usize {
        self.n_kv_head
    }
}

/// `n` zero f16 values, allocated zeroed (so untouched pages cost no memory).
fn zeroed(n: usize) -> Vec<f16> {
    let bits = vec![0u16; n];
    let mut bits = std::mem::ManuallyDrop::new(bits);
    // SAFETY: f16 is `repr(transparent)` over u16; same size, alignment and capacity.
    unsafe { Vec::from_raw_parts(bits.as_mut_ptr() as *mut f16, bits.len(), bits.capacity()) }
}
