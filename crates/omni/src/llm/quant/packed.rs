//! GGUF Q4_1 and Q8_0 weights repacked for the dot kernels.
//!
//! Repacking is lossless: values and f16 scales are copied. Q4_1 blocks
//! are repacked in pairs so that one 32-byte load holds two whole blocks: byte `j` of a
//! pair holds element `j` of the first block in its low nibble and element `j` of the
//! second in its high nibble (ggml interleaves elements `j` and `j + 16` of one block
//! instead). A trailing odd block keeps ggml's layout.

use half::f16;

use super::acts::QK;

/// Bytes per ggml `block_q4_1`: f16 `d`, f16 `m`, 16 nibble bytes.
pub(crate) const Q4_1_BLOCK_BYTES: usize = 20;
/// Bytes per ggml `block_q8_0`: f16 `d`, 32 signed bytes.
pub(crate) const Q8_0_BLOCK_BYTES: usize = 34;
/// Bytes per ggml `block_q5_0`: f16 `d`, 4 bytes of fifth bits, 16 nibble bytes.
pub(crate) const Q5_0_BLOCK_BYTES: usize = 22;

fn f16_at(bytes: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The 32 values (0..16) of one ggml Q4_1 block.
fn q4_values(qs: &[u8]) -> [u8; QK] {
    let mut v = [0u8; QK];
    for j in 0..16 {
        v[j] = qs[j] & 0x0F;
        v[j + 16] = qs[j] >> 4;
    }
    v
}

/// A Q4_1 matrix of `n` rows × `k` columns: `w = d · q + m`, `q` in 0..16.
#[derive(Debug)]
pub(crate) struct Q4_1Matrix {
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// `n × nb × 16` nibble bytes (see the module docs).
    pub(crate) qs: Vec<u8>,
    /// `n × nb` scales (f16, as in the file: decoding is bound by memory bandwidth).
    pub(crate) d: Vec<f16>,
    /// `n × nb` mins.
    pub(crate) m: Vec<f16>,
}

impl Q4_1Matrix {
    /// From the raw ggml bytes of an `n × k` tensor (`k` a multiple of 32).
    pub(crate) fn from_ggml(raw: &[u8], n: usize, k: usize) -> Option<Self> {
        let nb = k / QK;
        if !k.is_multiple_of(QK) || raw.len() != n * nb * Q4_1_BLOCK_BYTES {
            return None;
        }
        let mut qs = vec![0u8; n * nb * 16];
        let mut d = vec![f16::ZERO; n * nb];
        let mut m = vec![f16::ZERO; n * nb];
        for r in 0..n {
            let row = &raw[r * nb * Q4_1_BLOCK_BYTES..(r + 1) * nb * Q4_1_BLOCK_BYTES];
            let out = &mut qs[r * nb * 16..(r + 1) * nb * 16];
            for (b, block) in row.chunks_exact(Q4_1_BLOCK_BYTES).enumerate() {
                d[r * nb + b] = f16_at(block, 0);
                m[r * nb + b] = f16_at(block, 2);
            }
            let mut b = 0;
            while b + 1 < nb {
                let lo = q4_values(&row[b * Q4_1_BLOCK_BYTES + 4..(b + 1) * Q4_1_BLOCK_BYTES]);
                let hi =
                    q4_values(&row[(b + 1) * Q4_1_BLOCK_BYTES + 4..(b + 2) * Q4_1_BLOCK_BYTES]);
                for j in 0..QK {
                    out[b * 16 + j] = lo[j] | (hi[j] << 4);
                }
                b += 2;
            }
            if b < nb {
                out[b * 16..b * 16 + 16]
                    .copy_from_slice(&row[b * Q4_1_BLOCK_BYTES + 4..(b + 1) * Q4_1_BLOCK_BYTES]);
            }
        }
        Some(Self { n, k, qs, d, m })
    }

    pub(crate) fn nb(&self) -> usize {
        self.k / QK
    }

    /// The 32 values (0..16) of block `b` of row `r`.
    pub(crate) fn block_values(&self, r: usize, b: usize) -> [u8; QK] {
        let nb = self.nb();
        let row = &self.qs[r * nb * 16..(r + 1) * nb * 16];
        if b.is_multiple_of(2) && b + 1 == nb {
            return q4_values(&row[b * 16..b * 16 + 16]);
        }
        let pair = &row[(b & !1) * 16..(b & !1) * 16 + 32];
        let shift = if b.is_multiple_of(2) { 0 } else { 4 };
        let mut v = [0u8; QK];
        for j in 0..QK {
            v[j] = (pair[j] >> shift) & 0x0F;
        }
        v
    }

    /// Row `r` as f32 (exactly ggml's dequantization).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.nb();
        for b in 0..nb {
            let (d, m) = (self.d[r * nb + b].to_f32(), self.m[r * nb + b].to_f32());
            for (o, q) in out[b * QK..(b + 1) * QK]
                .iter_mut()
                .zip(self.block_values(r, b))
            {
                *o = q as f32 * d + m;
            }
        }
    }
}

/// A Q8_0 matrix of `n` rows × `k` columns: `w = d · q`, `q` in -127..=127.
#[derive(Debug)]
pub(crate) struct Q8_0Matrix {
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// `n × k` values.
    pub(crate) qs: Vec<i8>,
    /// `n × nb` scales (f16).
    pub(crate) d: Vec<f16>,
}

impl Q8_0Matrix {
    /// From the raw ggml bytes of an `n × k` tensor (`k` a multiple of 32).
    pub(crate) fn from_ggml(raw: &[u8], n: usize, k: usize) -> Option<Self> {
        let nb = k / QK;
        if !k.is_multiple_of(QK) || raw.len() != n * nb * Q8_0_BLOCK_BYTES {
            return None;
        }
        let mut qs = vec![0i8; n * k];
        let mut d = vec![f16::ZERO; n * nb];
        for (bi, block) in raw.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
            d[bi] = f16_at(block, 0);
            for (q, &b) in qs[bi * QK..(bi + 1) * QK].iter_mut().zip(&block[2..]) {
                *q = b as i8;
            }
        }
        Some(Self { n, k, qs, d })
    }

    /// From the raw ggml bytes of an `n × k` Q5_0 tensor: its values `q - 16` (−16..16)
    /// are signed bytes like Q8_0's and ggml's `ggml_vec_dot_q5_0_q8_0` sums them the way
    /// `ggml_vec_dot_q8_0_q8_0` does, so Q5_0 runs on the Q8_0 kernels, bit for bit.
    pub(crate) fn from_ggml_q5_0(raw: &[u8], n: usize, k: usize) -> Option<Self> {
        let nb = k / QK;
        if !k.is_multiple_of(QK) || raw.len() != n * nb * Q5_0_BLOCK_BYTES {
            return None;
        }
        let mut qs = vec![0i8; n * k];
        let mut d = vec![f16::ZERO; n * nb];
        for (bi, block) in raw.chunks_exact(Q5_0_BLOCK_BYTES).enumerate() {
            d[bi] = f16_at(block, 0);
            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let out = &mut qs[bi * QK..(bi + 1) * QK];
            for j in 0..16 {
                let lo = (block[6 + j] & 0x0F) | (((qh >> j) & 1) << 4) as u8;
                let hi = (block[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                out[j] = lo as i8 - 16;
                out[j + 16] = hi as i8 - 16;
            }
        }
        Some(Self { n, k, qs, d })
    }

    pub(crate) fn nb(&self) -> usize {
        self.k / QK
    }

    /// Row `r` as f32 (exactly ggml's dequantization).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.nb();
        for (b, o) in out.chunks_exact_mut(QK).enumerate().take(nb) {
            let d = self.d[r * nb + b].to_f32();
            for (o, &q) in o
                .iter_mut()
                .zip(&self.qs[r * self.k + b * QK..r * self.k + (b + 1) * QK])
            {
                *o = q as f32 * d;
            }
        }
    }
}
