//! The horizontal resampling pass with AVX2 when the fixed-point weights fit in 16 bits
//! (torch's precision always does, by construction): each channel of a row is widened to
//! a plane of i16 and every output pixel is 16 taps per `madd` (Pillow-SIMD's idea).
//! Integer arithmetic throughout, so the result is the scalar pass's, bit for bit.

use std::arch::x86_64::*;

/// Weights of one axis as i16, `stride` per output pixel (a multiple of 16, zero padded).
pub(super) struct Weights16 {
    stride: usize,
    weights: Vec<i16>,
}

impl Weights16 {
    /// `None` when a weight does not fit in i16 (Pillow's 22-bit precision).
    pub(super) fn new(weights: &[i32], ksize: usize, bounds: &[(usize, usize)]) -> Option<Self> {
        let stride = ksize.div_ceil(16) * 16;
        let mut out = vec![0i16; bounds.len() * stride];
        for (xx, &(_, n)) in bounds.iter().enumerate() {
            for (o, &w) in out[xx * stride..xx * stride + n]
                .iter_mut()
                .zip(&weights[xx * ksize..xx * ksize + n])
            {
                *o = i16::try_from(w).ok()?;
            }
        }
        Some(Self {
            stride,
            weights: out,
        })
    }

    /// Zero values a plane needs after the row's last pixel (the padded taps read them).
    pub(super) fn tail(&self) -> usize {
        self.stride
    }
}

/// Sums of the 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// One row of `C` interleaved channels: `out_row[xx·C + ch] = clip8(start + Σ w·pixel)`.
/// `planes` is scratch space reused across rows.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn horizontal_row<const C: usize>(
    row: &[u8],
    out_row: &mut [u8],
    w: &Weights16,
    bounds: &[(usize, usize)],
    start: i32,
    precision: u32,
    planes: &mut Vec<i16>,
) {
    let width = row.len() / C;
    let plane_len = width + w.tail();
    planes.clear();
    planes.resize(C * plane_len, 0);
    for (x, px) in row.chunks_exact(C).enumerate() {
        for ch in 0..C {
            planes[ch * plane_len + x] = i16::from(px[ch]);
        }
    }
    for (xx, &(xmin, _)) in bounds.iter().enumerate() {
        let k = &w.weights[xx * w.stride..(xx + 1) * w.stride];
        for ch in 0..C {
            let taps = &planes[ch * plane_len + xmin..ch * plane_len + xmin + w.stride];
            let mut acc = _mm256_setzero_si256();
            for (t, kw) in taps.chunks_exact(16).zip(k.chunks_exact(16)) {
                // SAFETY: both chunks hold 16 i16 values.
                let (a, b) = unsafe {
                    (
                        _mm256_loadu_si256(t.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(kw.as_ptr() as *const __m256i),
                    )
                };
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
            }
            let v = (start + hsum(acc)) >> precision;
            out_row[xx * C + ch] = v.clamp(0, 255) as u8;
        }
    }
}
