//! Activations quantized to 8 bits per block of 32, as ggml's `quantize_row_q8_1` does.

use half::f16;

/// Values per quantization block (ggml `QK4_1` = `QK8_0` = `QK8_1`).
pub(crate) const QK: usize = 32;

/// `m` rows of `k` activations quantized to ggml's Q8_1: per block of 32, 8-bit values
/// in their natural order, a scale `d` and the scaled sum `s`.
///
/// The buffers are reused across calls: quantizing allocates only when a larger input
/// than any before arrives.
#[derive(Debug, Default)]
pub(crate) struct QActs {
    pub(crate) m: usize,
    pub(crate) k: usize,
    /// `m × k` values.
    pub(crate) qs: Vec<i8>,
    /// `m × nb` block scales `f16(amax / 127)`, read back as f32.
    pub(crate) d: Vec<f32>,
    /// `m × nb` values `f16(d · Σq)` (the Q4_1 min correction).
    pub(crate) s: Vec<f32>,
}

/// One quantized activation row.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
}

impl QActs {
    pub(crate) fn nb(&self) -> usize {
        self.k / QK
    }

    pub(crate) fn row(&self, i: usize) -> ActRow<'_> {
        let nb = self.nb();
        ActRow {
            qs: &self.qs[i * self.k..(i + 1) * self.k],
            d: &self.d[i * nb..(i + 1) * nb],
            s: &self.s[i * nb..(i + 1) * nb],
        }
    }

    /// Quantizes `x` (`m × k`, row-major; `k` a multiple of 32) exactly as ggml's x86
    /// `quantize_row_q8_1`: `d = amax / 127`, values `round_half_even(x · 127 / amax)`,
    /// `s = f16(d · Σq)`.
    pub(crate) fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        debug_assert_eq!(x.len(), m * k);
        debug_assert_eq!(k % QK, 0);
        let nb = k / QK;
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        self.s.resize(m * nb, 0.0);
        #[cfg(target_arch = "x86_64")]
        if super::super::vec::has_avx2() {
            // SAFETY: AVX2 was detected; the buffers were sized above.
            unsafe { quantize_avx2(x, &mut self.qs, &mut self.d, &mut self.s) };
            return;
        }
        for (b, block) in x.chunks_exact(QK).enumerate() {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in self.qs[b * QK..(b + 1) * QK].iter_mut().zip(block) {
                let r = (v * id).round_ties_even() as i32;
                sum += r;
                *q = r as i8;
            }
            self.d[b] = f16::from_f32(d).to_f32();
            self.s[b] = f16::from_f32(d * sum as f32).to_f32();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(x: &[f32], qs: &mut [i8], ds: &mut [f32], ss: &mut [f32]) {
    use std::arch::x86_64::*;
    let nb = x.len() / QK;
    assert!(qs.len() >= nb * QK && ds.len() >= nb && ss.len() >= nb);
    for b in 0..nb {
        // SAFETY: block b lies inside `x` and `qs` (asserted above).
        unsafe {
            let p = x.as_ptr().add(b * QK);
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            let sign = _mm256_set1_ps(-0.0);
            let mut m = _mm256_andnot_ps(sign, v[0]);
            for vi in &v[1..] {
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
            }
            let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            let amax = _mm_cvtss_f32(m4);
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let q = v.map(|vi| {
                _mm256_cvtps_epi32(_mm256_round_ps(
                    _mm256_mul_ps(vi, id),
                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                ))
            });
            let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s4 = _mm_add_epi32(_mm256_extracti128_si256(s, 1), _mm256_castsi256_si128(s));
            let s4 = _mm_hadd_epi32(s4, s4);
            let s4 = _mm_hadd_epi32(s4, s4);
            let sum = _mm_cvtsi128_si32(s4);
            // The in-lane packs leave the order 0-3 8-11 16-19 24-27 4-7 …; permute back.
            let bytes = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(
                    _mm256_packs_epi32(q[0], q[1]),
                    _mm256_packs_epi32(q[2], q[3]),
                ),
                _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
            );
            _mm256_storeu_si256(qs.as_mut_ptr().add(b * QK) as *mut __m256i, bytes);
            ds[b] = f16::from_f32(d).to_f32();
            ss[b] = f16::from_f32(d * sum as f32).to_f32();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_matches_the_definition() {
        let k = 96;
        let x: Vec<f32> = (0..2 * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 + 0.5)
            .collect();
        let mut a = QActs::default();
        a.quantize(&x, 2, k);
        for (b, block) in x.chunks_exact(QK).enumerate() {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let mut sum = 0;
            for (e, v) in block.iter().enumerate() {
                let q = (v * (127.0 / amax)).round_ties_even() as i32;
                sum += q;
                assert_eq!(a.qs[b * QK + e] as i32, q);
                assert!((q as f32 * a.d[b] - v).abs() <= a.d[b] * 0.51);
            }
            assert_eq!(a.d[b], f16::from_f32(amax / 127.0).to_f32());
            assert_eq!(a.s[b], f16::from_f32(amax / 127.0 * sum as f32).to_f32());
        }
    }
}
