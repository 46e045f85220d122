//! Vector operations of the decoder, matching ggml's CPU ones (ggml-cpu/vec.{h,cpp}):
//! the same exp approximation (`ggml_v_expf`) in softmax and SiLU, the same f64 sum in
//! softmax, scalar libm `exp` for the elements after the last full vector. AVX2+FMA
//! where available, portable loops otherwise.

use half::f16;
use half::slice::HalfFloatSliceExt;

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("OMNI_NO_SIMD").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Rounds every value to the nearest f16 (kept as f32).
pub(crate) fn round_to_f16(xs: &mut [f32]) {
    let mut buf = [f16::ZERO; 64];
    for chunk in xs.chunks_mut(64) {
        let b = &mut buf[..chunk.len()];
        b.convert_from_f32_slice(chunk);
        b.convert_to_f32_slice(chunk);
    }
}

/// ggml's `ggml_v_expf`, one lane: the same operations (FMAs included) as the AVX2
/// version, so that every platform computes llama.cpp-on-AVX2's bits.
pub(crate) fn v_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let c = n.abs() > 126.0;
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    if !c {
        return j.mul_add(k, k);
    }
    let g = if n <= 0.0 { 0x8200_0000u32 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// `x[i] = exp(x[i] - max)`; returns `Σ x[i]` accumulated in f64 (`ggml_vec_soft_max_f32`:
/// `ggml_v_expf` and a horizontal sum per 8 values, libm `expf` for the rest).
pub(crate) fn softmax_exp(x: &mut [f32], max: f32) -> f64 {
    let mut i = 0;
    let mut sum = 0f64;
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        unsafe { (i, sum) = x86::softmax_exp(x, max) };
    }
    while i + 8 <= x.len() {
        let mut lanes = [0f32; 8];
        for (l, v) in lanes.iter_mut().zip(&mut x[i..i + 8]) {
            *v = v_expf(*v - max);
            *l = *v;
        }
        sum += crate::llm::quant::hsum_float_8(lanes) as f64;
        i += 8;
    }
    for v in &mut x[i..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    sum
}

/// `gate[i] = silu(gate[i]) · up[i]` (`ggml_vec_swiglu_f32`: `ggml_v_silu` per 8 values,
/// `x / (1 + expf(-x))` for the rest).
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        i = unsafe { x86::swiglu(gate, up) };
    }
    let full = gate.len().min(up.len()) / 8 * 8;
    for (g, u) in gate[i..full].iter_mut().zip(&up[i..full]) {
        *g = *g / (1.0 + v_expf(-*g)) * u;
    }
    for (g, u) in gate[full.max(i)..].iter_mut().zip(&up[full.max(i)..]) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// How llama.cpp sums the dot products of an f16 matmul on AVX2 — two orders, and
/// reproducing them bit for bit is what keeps greedy decoding on llama.cpp's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DotOrder {
    /// tinyBLAS (`llamafile_sgemm`, used when the matmul has ≥ 2 columns, i.e. prefill):
    /// 8 lanes (`c mod 8`) of FMAs in order, then `hsum_float_8`.
    Gemm,
    /// `ggml_vec_dot_f16` (one column, i.e. decoding one token): 4 × 8 lanes over steps of
    /// 32, reduced `(s0 + s2) + (s1 + s3)`, then `(t0 + t1) + (t2 + t3)` of the folded
    /// halves; values past the last multiple of 32 added in f64.
    Gemv,
}

/// `out[i] = x · rows[i·stride ..][..x.len()]` summed in `order`, the rows in f16. Used for
/// `q·k` (rows = keys) and `p·v` (rows = transposed values).
pub(crate) fn dots(order: DotOrder, x: &[f32], rows: &[f16], stride: usize, out: &mut [f32]) {
    let n = x.len();
    assert!(out.is_empty() || rows.len() >= (out.len() - 1) * stride + n);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && n.is_multiple_of(8) {
        // SAFETY: AVX2 and FMA were detected; row bounds asserted above.
        unsafe {
            match order {
                DotOrder::Gemm => x86::dots_gemm(x, rows, stride, out),
                DotOrder::Gemv => x86::dots_gemv(x, rows, stride, out),
            }
        }
        return;
    }
    let mut row = vec![0f32; n];
    for (i, o) in out.iter_mut().enumerate() {
        rows[i * stride..i * stride + n].convert_to_f32_slice(&mut row);
        *o = match order {
            DotOrder::Gemm => {
                let mut lanes = [0f32; 8];
                for (c, (&a, &b)) in row.iter().zip(x).enumerate() {
                    lanes[c % 8] = a.mul_add(b, lanes[c % 8]);
                }
                crate::llm::quant::hsum_float_8(lanes)
            }
            DotOrder::Gemv => {
                let np = n & !31;
                let mut sum = [[0f32; 8]; 4];
                for c in 0..np {
                    let (j, l) = ((c % 32) / 8, c % 8);
                    sum[j][l] = row[c].mul_add(x[c], sum[j][l]);
                }
                let t: [f32; 8] =
                    std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
                let h = [t[0] + t[4], t[1] + t[5], t[2] + t[6], t[3] + t[7]];
                let mut total = ((h[0] + h[1]) + (h[2] + h[3])) as f64;
                for c in np..n {
                    total += (row[c] * x[c]) as f64;
                }
                total as f32
            }
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    /// ggml's `ggml_v_expf` (AVX2): exp with ~1.5 ULP error, exact handling of large |x|.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn v_expf(x: __m256) -> __m256 {
        let r = _mm256_set1_ps(f32::from_bits(0x4b40_0000)); // 0x1.8p23
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(f32::from_bits(0x3fb8_aa3b)), r); // 0x1.715476p+0
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            _mm256_set1_ps(f32::from_bits(0x35bf_be8e)), // 0x1.7f7d1cp-20
            _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x3f31_7200)), x), // 0x1.62e4p-1
        );
        let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
        let k = _mm256_castsi256_ps(_mm256_add_epi32(
            e,
            _mm256_castps_si256(_mm256_set1_ps(1.0)),
        ));
        let c = _mm256_castps_si256(_mm256_cmp_ps(
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), n),
            _mm256_set1_ps(126.0),
            _CMP_GT_OQ,
        ));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(
                    _mm256_set1_ps(f32::from_bits(0x3c07_2010)), // 0x1.0e4020p-7
                    b,
                    _mm256_set1_ps(f32::from_bits(0x3d2b_9f17)), // 0x1.573e2ep-5
                ),
                u,
                _mm256_fmadd_ps(
                    _mm256_set1_ps(f32::from_bits(0x3e2a_af33)), // 0x1.555e66p-3
                    b,
                    _mm256_set1_ps(f32::from_bits(0x3eff_fedb)), // 0x1.fffdb6p-2
                ),
            ),
            u,
            _mm256_mul_ps(_mm256_set1_ps(f32::from_bits(0x3f7f_fff6)), b), // 0x1.ffffecp-1
        );
        if _mm256_movemask_ps(_mm256_castsi256_ps(c)) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let d = _mm256_castps_si256(_mm256_cmp_ps(
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), n),
            _mm256_set1_ps(192.0),
            _CMP_GT_OQ,
        ));
        _mm256_or_ps(
            _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(
                _mm256_castsi256_ps(d),
                _mm256_or_ps(
                    _mm256_and_ps(
                        _mm256_castsi256_ps(c),
                        _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1),
                    ),
                    _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)),
                ),
            ),
        )
    }

    /// Eight f16 values as f32.
    #[inline(always)]
    unsafe fn ld16(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// ggml's `hsum_float_8`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Full vectors of [`super::softmax_exp`]; returns (elements done, their sum).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn softmax_exp(x: &mut [f32], max: f32) -> (usize, f64) {
        let mut sum = 0f64;
        let mut i = 0;
        let m = _mm256_set1_ps(max);
        while i + 8 <= x.len() {
            // SAFETY: i + 8 <= len.
            unsafe {
                let p = x.as_mut_ptr().add(i);
                let val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(p), m));
                _mm256_storeu_ps(p, val);
                sum += hsum(val) as f64;
            }
            i += 8;
        }
        (i, sum)
    }

    /// Full vectors of [`super::swiglu`]; returns the elements done.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) -> usize {
        let n = gate.len().min(up.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let p = gate.as_mut_ptr().add(i);
                let x = _mm256_loadu_ps(p);
                let silu = _mm256_div_ps(
                    x,
                    _mm256_add_ps(
                        _mm256_set1_ps(1.0),
                        v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x)),
                    ),
                );
                _mm256_storeu_ps(p, _mm256_mul_ps(silu, _mm256_loadu_ps(up.as_ptr().add(i))));
            }
            i += 8;
        }
        i
    }

    /// # Safety
    /// `x.len() % 8 == 0`; `rows` holds `out.len()` rows of `x.len()` values at `stride`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_gemm(x: &[f32], rows: &[f16], stride: usize, out: &mut [f32]) {
        let n = x.len();
        let (xp, rp) = (x.as_ptr(), rows.as_ptr());
        let mut i = 0;
        unsafe {
            // Four rows at a time: four independent FMA chains.
            while i + 4 <= out.len() {
                let mut acc = [_mm256_setzero_ps(); 4];
                for c in (0..n).step_by(8) {
                    let xv = _mm256_loadu_ps(xp.add(c));
                    for (r, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(ld16(rp.add((i + r) * stride + c)), xv, *a);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    out[i + r] = hsum(*a);
                }
                i += 4;
            }
            while i < out.len() {
                let mut acc = _mm256_setzero_ps();
                for c in (0..n).step_by(8) {
                    acc = _mm256_fmadd_ps(
                        ld16(rp.add(i * stride + c)),
                        _mm256_loadu_ps(xp.add(c)),
                        acc,
                    );
                }
                out[i] = hsum(acc);
                i += 1;
            }
        }
    }

    /// `GGML_F32x8_REDUCE` of four accumulators, then the f64 tail.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce_gemv(
        s: &[__m256; 4],
        row: *const f16,
        x: *const f32,
        np: usize,
        n: usize,
    ) -> f32 {
        let x0 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1));
        let t1 = _mm_hadd_ps(t0, t0);
        let mut total = _mm_cvtss_f32(_mm_hadd_ps(t1, t1)) as f64;
        for c in np..n {
            // SAFETY: c < n, inside the row and `x`.
            total += unsafe { (*row.add(c)).to_f32() * *x.add(c) } as f64;
        }
        total as f32
    }

    /// # Safety
    /// `x.len() % 8 == 0`; `rows` holds `out.len()` rows of `x.len()` values at `stride`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_gemv(x: &[f32], rows: &[f16], stride: usize, out: &mut [f32]) {
        let n = x.len();
        let np = n & !31;
        let (xp, rp) = (x.as_ptr(), rows.as_ptr());
        let mut i = 0;
        unsafe {
            // Two rows at a time share the loads of `x`.
            while i + 2 <= out.len() {
                let (r0, r1) = (rp.add(i * stride), rp.add((i + 1) * stride));
                let mut s0 = [_mm256_setzero_ps(); 4];
                let mut s1 = [_mm256_setzero_ps(); 4];
                for c in (0..np).step_by(32) {
                    for j in 0..4 {
                        let at = c + j * 8;
                        let xv = _mm256_loadu_ps(xp.add(at));
                        s0[j] = _mm256_fmadd_ps(ld16(r0.add(at)), xv, s0[j]);
                        s1[j] = _mm256_fmadd_ps(ld16(r1.add(at)), xv, s1[j]);
                    }
                }
                out[i] = reduce_gemv(&s0, r0, xp, np, n);
                out[i + 1] = reduce_gemv(&s1, r1, xp, np, n);
                i += 2;
            }
            if i < out.len() {
                let row = rp.add(i * stride);
                let mut s = [_mm256_setzero_ps(); 4];
                for c in (0..np).step_by(32) {
                    for (j, sj) in s.iter_mut().enumerate() {
                        let at = c + j * 8;
                        *sj = _mm256_fmadd_ps(ld16(row.add(at)), _mm256_loadu_ps(xp.add(at)), *sj);
                    }
                }
                out[i] = reduce_gemv(&s, row, xp, np, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_expf_is_ggml_v_expf() {
        // Every 1/64 over the range softmax and SiLU use, plus large magnitudes.
        let xs: Vec<f32> = (-6400..=2000)
            .map(|i| i as f32 / 64.0)
            .chain([-200.0, -150.0, 89.0, 100.0])
            .collect();
        for chunk in xs.chunks(8) {
            let mut v = chunk.to_vec();
            v.resize(8, 0.0);
            let mut simd = v.clone();
            softmax_exp(&mut simd, 0.0);
            for (a, x) in simd.iter().zip(&v) {
                assert_eq!(a.to_bits(), v_expf(*x).to_bits(), "exp({x})");
                if x.exp().is_finite() {
                    assert!(
                        (a - x.exp()).abs() <= 4e-7 * x.exp() + 1e-38,
                        "exp({x}) = {a} vs {}",
                        x.exp()
                    );
                }
            }
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let x: Vec<f32> = (0..37)
            .map(|i| (i as f32 * 0.7).sin() * 20.0 - 3.0)
            .collect();
        let max = x.iter().cloned().fold(f32::MIN, f32::max);
        let mut y = x.clone();
        let sum = softmax_exp(&mut y, max);
        let want: f64 = x.iter().map(|v| ((v - max) as f64).exp()).sum();
        assert!((sum - want).abs() < 1e-5 * want);
        for (a, b) in y.iter().zip(&x) {
            assert!((a - (b - max).exp()).abs() <= 1e-6);
        }
        let mut g = x.clone();
        swiglu(&mut g, &x);
        for (a, b) in g.iter().zip(&x) {
            let want = b / (1.0 + (-b).exp()) * b;
            assert!((a - want).abs() <= 1e-4 * (1.0 + want.abs()), "{a} {want}");
        }
        let hd = 72;
        let q: Vec<f32> = (0..hd).map(|i| (i as f32).cos()).collect();
        let k16: Vec<f16> = (0..7 * 80)
            .map(|i| f16::from_f32((i as f32 * 0.3).sin()))
            .collect();
        let k: Vec<f32> = k16.iter().map(|v| v.to_f32()).collect();
        let mut s = vec![0f32; 7];
        dots(DotOrder::Gemm, &q, &k16, 80, &mut s);
        for j in 0..7 {
            let mut lanes = [0f32; 8];
            for c in 0..hd {
                lanes[c % 8] = k[j * 80 + c].mul_add(q[c], lanes[c % 8]);
            }
            assert_eq!(
                s[j].to_bits(),
                crate::llm::quant::hsum_float_8(lanes).to_bits(),
                "{j}"
            );
            let want: f32 = (0..hd).map(|c| q[c] * k[j * 80 + c]).sum::<f32>();
            assert!((s[j] - want).abs() < 1e-4, "{j}");
        }
        // The vec_dot order: SIMD and portable agree bit for bit.
        let mut v = vec![0f32; 7];
        dots(DotOrder::Gemv, &q, &k16, 80, &mut v);
        for j in 0..7 {
            let row = &k[j * 80..j * 80 + hd];
            let mut sum = [[0f32; 8]; 4];
            for c in 0..64 {
                sum[(c % 32) / 8][c % 8] = row[c].mul_add(q[c], sum[(c % 32) / 8][c % 8]);
            }
            let t: [f32; 8] =
                std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
            let h = [t[0] + t[4], t[1] + t[5], t[2] + t[6], t[3] + t[7]];
            let mut total = ((h[0] + h[1]) + (h[2] + h[3])) as f64;
            for c in 64..hd {
                total += (row[c] * q[c]) as f64;
            }
            assert_eq!(v[j].to_bits(), (total as f32).to_bits(), "{j}");
        }
    }
}
