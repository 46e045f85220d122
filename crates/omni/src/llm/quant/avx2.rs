//! AVX2 + FMA kernels for Q4_1 and Q8_0 weight rows against 8-bit activation rows.
//!
//! Bit-exact with ggml's x86 `ggml_vec_dot_q4_1_q8_1` / `ggml_vec_dot_q8_0_q8_0`
//! (and llamafile's tinyBLAS for Q8_0): per block, `maddubs` + `madd` give 8 lanes of
//! 4-product integer sums, converted to f32 and accumulated with one FMA by the block's
//! `d_w·d_a`; the Q4_1 min term `m_w·s_a` is a scalar FMA chain; the 8 lanes are summed
//! as `hsum_float_8` does. That accumulation order is a long dependency chain per row,
//! so four weight rows (decode) or four activation rows (prefill) run interleaved.

use std::arch::x86_64::*;
use std::ops::Range;

use half::f16;

use super::acts::{ActRow, QK};
use super::packed::{Q4_1Matrix, Q8_0Matrix};

/// ggml's `hsum_float_8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_float_8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn load256<T>(p: *const T) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Unsigned bytes × signed bytes → 8 × f32 lanes of 4-product sums (`mul_sum_us8_pairs_float`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn us8_lanes(u: __m256i, s: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_madd_epi16(
        _mm256_maddubs_epi16(u, s),
        _mm256_set1_epi16(1),
    ))
}

/// Signed × signed bytes → 8 × f32 lanes (`mul_sum_i8_pairs_float`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn i8_lanes(w: __m256i, a: __m256i) -> __m256 {
    us8_lanes(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

/// The 32 values of Q4_1 blocks `b` (and `b + 1`, if `b` starts a pair) of a repacked row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_blocks(row: *const u8, b: usize, nb: usize) -> (__m256i, __m256i) {
    let m0f = _mm256_set1_epi8(0x0F);
    unsafe {
        if b + 1 < nb {
            let x = load256(row.add(b * 16));
            (
                _mm256_and_si256(x, m0f),
                _mm256_and_si256(_mm256_srli_epi16(x, 4), m0f),
            )
        } else {
            // ggml's `bytes_from_nibbles_32` for the odd last block.
            let x = _mm_loadu_si128(row.add(b * 16) as *const __m128i);
            let v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), m0f);
            (v, v)
        }
    }
}

/// How many rows ahead the decode kernels prefetch weights: a model's weights do not fit
/// in cache, and the hardware prefetchers alone left the kernels waiting on memory
/// (37 → ~80 tok/s single-threaded on SmolLM2 with this).
const PREFETCH_ROWS: usize = 16;

fn check_act(a: &ActRow<'_>, k: usize) {
    assert!(
        a.qs.len() == k && a.d.len() == k / QK && a.s.len() == k / QK,
        "activation row of the wrong size"
    );
}

/// `out[r - rows.start] = W[r] · a` for Q4_1 rows `rows`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q4_1(
    w: &Q4_1Matrix,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    assert!(rows.end <= w.n && out.len() >= rows.len());
    check_act(a, w.k);
    let mut r = rows.start;
    let mut o = 0;
    while r < rows.end {
        let len = (rows.end - r).min(4);
        // SAFETY: rows r..r + len are inside the matrix; `a` has k values.
        unsafe {
            match len {
                4 => q4_1_rows::<4>(w, r, a, &mut out[o..o + 4]),
                3 => q4_1_rows::<3>(w, r, a, &mut out[o..o + 3]),
                2 => q4_1_rows::<2>(w, r, a, &mut out[o..o + 2]),
                _ => q4_1_rows::<1>(w, r, a, &mut out[o..o + 1]),
            }
        }
        r += len;
        o += len;
    }
}

/// Blocks whose scales are widened from f16 at a time (even, so pairs never straddle).
const SCALE_CHUNK: usize = 64;

/// Widens `src` (f16) into `dst` with F16C, inline (a library call per row group costs
/// more than the conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen(src: &[f16], dst: &mut [f32]) {
    assert!(dst.len() >= src.len());
    let n = src.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    if i < n {
        let mut tail = [0u16; 8];
        for (t, v) in tail.iter_mut().zip(&src[i..]) {
            *t = v.to_bits();
        }
        let mut out = [0f32; 8];
        // SAFETY: both buffers hold 8 values.
        unsafe {
            _mm256_storeu_ps(
                out.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(tail.as_ptr() as *const __m128i)),
            )
        };
        dst[i..n].copy_from_slice(&out[..n - i]);
    }
}

/// Widens the scales of blocks `c0..c1` of rows `r0..r0 + rows` (each `nb` blocks) into
/// `dst`, row `i`'s at `i · (c1 - c0)`. When the chunk is whole rows, the rows are
/// contiguous and one call widens them all.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_rows(
    src: &[f16],
    r0: usize,
    rows: usize,
    nb: usize,
    c0: usize,
    c1: usize,
    dst: &mut [f32],
) {
    let w = c1 - c0;
    if w == nb {
        widen(&src[r0 * nb..(r0 + rows) * nb], dst);
    } else {
        for i in 0..rows {
            let at = (r0 + i) * nb;
            widen(&src[at + c0..at + c1], &mut dst[i * w..]);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_rows<const R: usize>(w: &Q4_1Matrix, r0: usize, a: &ActRow<'_>, out: &mut [f32]) {
    let nb = w.nb();
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [0f32; R];
    let mut wd = [0f32; 4 * SCALE_CHUNK];
    let mut wm = [0f32; 4 * SCALE_CHUNK];
    unsafe {
        let rows: [*const u8; R] = std::array::from_fn(|i| w.qs.as_ptr().add((r0 + i) * nb * 16));
        // Rows further down, streamed from memory while these are computed.
        let next = (r0 + PREFETCH_ROWS).min(w.n.saturating_sub(1));
        let ahead = w.qs.as_ptr().add(next * nb * 16);
        let ahead_len = (R * nb * 16).min((w.n - next) * nb * 16);
        let scales_len = 2 * (R * nb).min((w.n - next) * nb);
        let (ahead_d, ahead_m) = (
            w.d.as_ptr().add(next * nb) as *const i8,
            w.m.as_ptr().add(next * nb) as *const i8,
        );
        for l in (0..scales_len).step_by(64) {
            _mm_prefetch(ahead_d.add(l), _MM_HINT_T0);
            _mm_prefetch(ahead_m.add(l), _MM_HINT_T0);
        }
        let (aq, ad, asum) = (a.qs.as_ptr(), a.d.as_ptr(), a.s.as_ptr());
        let mut c0 = 0;
        while c0 < nb {
            let c1 = (c0 + SCALE_CHUNK).min(nb);
            let cw = c1 - c0;
            widen_rows(&w.d, r0, R, nb, c0, c1, &mut wd);
            widen_rows(&w.m, r0, R, nb, c0, c1, &mut wm);
            let mut b = c0;
            while b < c1 {
                let two = b + 1 < nb;
                for l in (b * 16 * R..((b + 2) * 16 * R).min(ahead_len)).step_by(64) {
                    _mm_prefetch(ahead.add(l) as *const i8, _MM_HINT_T0);
                }
                let a0 = load256(aq.add(b * QK));
                let a1 = if two {
                    load256(aq.add((b + 1) * QK))
                } else {
                    a0
                };
                let (ad0, as0) = (*ad.add(b), *asum.add(b));
                let (ad1, as1) = if two {
                    (*ad.add(b + 1), *asum.add(b + 1))
                } else {
                    (0.0, 0.0)
                };
                let j = b - c0;
                for i in 0..R {
                    let (u0, u1) = q4_blocks(rows[i], b, nb);
                    let s = i * cw + j;
                    summs[i] = wm.get_unchecked(s).mul_add(as0, summs[i]);
                    let d = _mm256_set1_ps(*wd.get_unchecked(s) * ad0);
                    acc[i] = _mm256_fmadd_ps(d, us8_lanes(u0, a0), acc[i]);
                    if two {
                        summs[i] = wm.get_unchecked(s + 1).mul_add(as1, summs[i]);
                        let d = _mm256_set1_ps(*wd.get_unchecked(s + 1) * ad1);
                        acc[i] = _mm256_fmadd_ps(d, us8_lanes(u1, a1), acc[i]);
                    }
                }
                b += 2;
            }
            c0 = c1;
        }
    }
    for i in 0..R {
        out[i] = hsum_float_8(acc[i]) + summs[i];
    }
}

/// `out[i · n + r] = W[r] · acts[i]` for Q4_1 rows `rows` and all `acts`: each weight
/// row is unpacked to bytes once and reused for every activation row.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `out` must be valid for writes at
/// `i · n + r` for every activation row `i` and weight row `r`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemm_q4_1(
    w: &Q4_1Matrix,
    rows: Range<usize>,
    acts: &[ActRow<'_>],
    out: *mut f32,
    n: usize,
) {
    let nb = w.nb();
    assert!(rows.end <= w.n);
    for a in acts {
        check_act(a, w.k);
    }
    let mut unpacked = vec![0u8; w.k];
    let (mut wd_row, mut wm_row) = (vec![0f32; nb], vec![0f32; nb]);
    let groups: Vec<ActPtrs> = acts
        .chunks(4)
        .map(|g| ActPtrs {
            len: g.len(),
            qs: std::array::from_fn(|i| g[i.min(g.len() - 1)].qs.as_ptr()),
            d: std::array::from_fn(|i| g[i.min(g.len() - 1)].d.as_ptr()),
            s: std::array::from_fn(|i| g[i.min(g.len() - 1)].s.as_ptr()),
        })
        .collect();
    for r in rows {
        let row = w.qs[r * nb * 16..(r + 1) * nb * 16].as_ptr();
        let mut b = 0;
        while b < nb {
            // SAFETY: block b (and b + 1) of row r exist; `unpacked` holds nb blocks.
            unsafe {
                let (u0, u1) = q4_blocks(row, b, nb);
                _mm256_storeu_si256(unpacked.as_mut_ptr().add(b * QK) as *mut __m256i, u0);
                if b + 1 < nb {
                    _mm256_storeu_si256(
                        unpacked.as_mut_ptr().add((b + 1) * QK) as *mut __m256i,
                        u1,
                    );
                }
            }
            b += 2;
        }
        widen(&w.d[r * nb..(r + 1) * nb], &mut wd_row);
        widen(&w.m[r * nb..(r + 1) * nb], &mut wm_row);
        let (wd, wm) = (&wd_row[..], &wm_row[..]);
        for (g, ptrs) in groups.iter().enumerate() {
            let mut res = [0f32; 4];
            // SAFETY: the activation rows have k values (checked); `unpacked` holds nb blocks.
            unsafe {
                match ptrs.len {
                    4 => bytes_rows::<4>(&unpacked, wd, wm, ptrs, &mut res),
                    3 => bytes_rows::<3>(&unpacked, wd, wm, ptrs, &mut res),
                    2 => bytes_rows::<2>(&unpacked, wd, wm, ptrs, &mut res),
                    _ => bytes_rows::<1>(&unpacked, wd, wm, ptrs, &mut res),
                }
            }
            for (j, v) in res[..ptrs.len].iter().enumerate() {
                // SAFETY: the caller guarantees `out` is valid at (4g + j) · n + r.
                unsafe { *out.add((4 * g + j) * n + r) = *v };
            }
        }
    }
}

/// Raw pointers to up to four activation rows (values, scales, sums).
struct ActPtrs {
    len: usize,
    qs: [*const i8; 4],
    d: [*const f32; 4],
    s: [*const f32; 4],
}

/// One unpacked Q4_1 row against `A` activation rows.
///
/// # Safety
/// `u`, `wd`, `wm` and the activation rows hold `wd.len()` blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_rows<const A: usize>(
    u: &[u8],
    wd: &[f32],
    wm: &[f32],
    acts: &ActPtrs,
    out: &mut [f32; 4],
) {
    let nb = wd.len();
    let mut acc = [_mm256_setzero_ps(); A];
    let mut summs = [0f32; A];
    let (up, wdp, wmp) = (u.as_ptr(), wd.as_ptr(), wm.as_ptr());
    for b in 0..nb {
        // SAFETY: block b lies inside `u`, `wd`, `wm` and every activation row.
        unsafe {
            let x = load256(up.add(b * QK));
            let (wdb, wmb) = (*wdp.add(b), *wmp.add(b));
            for i in 0..A {
                summs[i] = wmb.mul_add(*acts.s[i].add(b), summs[i]);
                let d = _mm256_set1_ps(wdb * *acts.d[i].add(b));
                acc[i] = _mm256_fmadd_ps(d, us8_lanes(x, load256(acts.qs[i].add(b * QK))), acc[i]);
            }
        }
    }
    for i in 0..A {
        out[i] = hsum_float_8(acc[i]) + summs[i];
    }
}

/// `out[r - rows.start] = W[r] · a` for Q8_0 rows `rows`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemv_q8_0(
    w: &Q8_0Matrix,
    rows: Range<usize>,
    a: &ActRow<'_>,
    out: &mut [f32],
) {
    assert!(rows.end <= w.n && out.len() >= rows.len());
    check_act(a, w.k);
    let mut r = rows.start;
    let mut o = 0;
    while r < rows.end {
        let len = (rows.end - r).min(4);
        // SAFETY: rows r..r + len are inside the matrix; `a` has k values.
        unsafe {
            match len {
                4 => q8_0_rows::<4>(w, r, a, &mut out[o..o + 4]),
                3 => q8_0_rows::<3>(w, r, a, &mut out[o..o + 3]),
                2 => q8_0_rows::<2>(w, r, a, &mut out[o..o + 2]),
                _ => q8_0_rows::<1>(w, r, a, &mut out[o..o + 1]),
            }
        }
        r += len;
        o += len;
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_rows<const R: usize>(w: &Q8_0Matrix, r0: usize, a: &ActRow<'_>, out: &mut [f32]) {
    let (nb, k) = (w.nb(), w.k);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut wd = [0f32; 4 * SCALE_CHUNK];
    unsafe {
        // Rows further down, streamed from memory while these are computed.
        let next = (r0 + PREFETCH_ROWS).min(w.n.saturating_sub(1));
        let ahead = w.qs.as_ptr().add(next * k);
        let ahead_len = (R * k).min((w.n - next) * k);
        let ahead_d = w.d.as_ptr().add(next * nb) as *const i8;
        for l in (0..2 * (R * nb).min((w.n - next) * nb)).step_by(64) {
            _mm_prefetch(ahead_d.add(l), _MM_HINT_T0);
        }
        let (aq, ad) = (a.qs.as_ptr(), a.d.as_ptr());
        let wq = w.qs.as_ptr().add(r0 * k);
        let mut c0 = 0;
        while c0 < nb {
            let c1 = (c0 + SCALE_CHUNK).min(nb);
            let cw = c1 - c0;
            widen_rows(&w.d, r0, R, nb, c0, c1, &mut wd);
            for b in c0..c1 {
                for l in (b * QK * R..((b + 1) * QK * R).min(ahead_len)).step_by(64) {
                    _mm_prefetch(ahead.add(l), _MM_HINT_T0);
                }
                let x = load256(aq.add(b * QK));
                let adb = *ad.add(b);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let q = load256(wq.add(i * k + b * QK));
                    let d = _mm256_set1_ps(*wd.get_unchecked(i * cw + b - c0) * adb);
                    *acc = _mm256_fmadd_ps(d, i8_lanes(q, x), *acc);
                }
            }
            c0 = c1;
        }
    }
    for i in 0..R {
        out[i] = hsum_float_8(acc[i]);
    }
}
