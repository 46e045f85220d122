//! Dot products of packed weight rows with quantized activation rows.
//!
//! The arithmetic is ggml's x86 `ggml_vec_dot_q4_1_q8_1` / `ggml_vec_dot_q8_0_q8_0`,
//! operation for operation: 8 lanes of 4-product integer sums per block, one FMA per
//! block by `d_w·d_a`, ggml's horizontal sum, plus an FMA chain of `m_w·s_a` for Q4_1.
//! x86 CPUs with AVX2 run `avx2.rs`; others run the portable loops below, which
//! compute the same bits (`f32::mul_add` is a fused multiply-add everywhere).

use std::ops::Range;

use super::acts::{ActRow, QK};
use super::packed::{Q4_1Matrix, Q8_0Matrix};

#[cfg(target_arch = "x86_64")]
use crate::llm::vec::has_avx2;

/// `out[r - rows.start] = W[r] · a`.
pub(crate) fn gemv_q4_1(w: &Q4_1Matrix, rows: Range<usize>, a: &ActRow<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C were detected at run time.
        unsafe { super::avx2::gemv_q4_1(w, rows, a, out) };
        return;
    }
    for (o, r) in out.iter_mut().zip(rows) {
        *o = dot_q4_1_portable(w, r, a);
    }
}

/// `out[r - rows.start] = W[r] · a`.
pub(crate) fn gemv_q8_0(w: &Q8_0Matrix, rows: Range<usize>, a: &ActRow<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C were detected at run time.
        unsafe { super::avx2::gemv_q8_0(w, rows, a, out) };
        return;
    }
    for (o, r) in out.iter_mut().zip(rows) {
        *o = dot_q8_0_portable(w, r, a);
    }
}

/// `out[i · n + r] = W[r] · acts[i]` for `r` in `rows`.
///
/// # Safety
/// `out` must be valid for writes at `i · n + r` for all `i < acts.len()`, `r` in `rows`,
/// and no other thread may access those elements meanwhile.
pub(crate) unsafe fn gemm_q4_1(
    w: &Q4_1Matrix,
    rows: Range<usize>,
    acts: &[ActRow<'_>],
    out: *mut f32,
    n: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C were detected; `out` is the caller's promise.
        unsafe { super::avx2::gemm_q4_1(w, rows, acts, out, n) };
        return;
    }
    for r in rows {
        for (i, a) in acts.iter().enumerate() {
            // SAFETY: the caller's promise.
            unsafe { *out.add(i * n + r) = dot_q4_1_portable(w, r, a) };
        }
    }
}

/// ggml's `hsum_float_8`: `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
pub(crate) fn hsum_float_8(l: [f32; 8]) -> f32 {
    let a = [l[4] + l[0], l[5] + l[1], l[6] + l[2], l[7] + l[3]];
    (a[0] + a[2]) + (a[1] + a[3])
}

/// One block's 8 lanes: lane `L` holds `Σ_{e=4L}^{4L+3} w[e]·a[e]` as f32.
fn block_lanes(w: impl Fn(usize) -> i32, a: &[i8]) -> [f32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|e| w(e) * a[e] as i32).sum::<i32>() as f32)
}

pub(crate) fn dot_q4_1_portable(w: &Q4_1Matrix, r: usize, a: &ActRow<'_>) -> f32 {
    let nb = w.nb();
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for b in 0..nb {
        let q = w.block_values(r, b);
        summs = w.m[r * nb + b].to_f32().mul_add(a.s[b], summs);
        let d = w.d[r * nb + b].to_f32() * a.d[b];
        let lanes = block_lanes(|e| q[e] as i32, &a.qs[b * QK..(b + 1) * QK]);
        for (acc, l) in acc.iter_mut().zip(lanes) {
            *acc = d.mul_add(l, *acc);
        }
    }
    hsum_float_8(acc) + summs
}

pub(crate) fn dot_q8_0_portable(w: &Q8_0Matrix, r: usize, a: &ActRow<'_>) -> f32 {
    let nb = w.nb();
    let mut acc = [0f32; 8];
    for b in 0..nb {
        let q = &w.qs[r * w.k + b * QK..r * w.k + (b + 1) * QK];
        let d = w.d[r * nb + b].to_f32() * a.d[b];
        let lanes = block_lanes(|e| q[e] as i32, &a.qs[b * QK..(b + 1) * QK]);
        for (acc, l) in acc.iter_mut().zip(lanes) {
            *acc = d.mul_add(l, *acc);
        }
    }
    hsum_float_8(acc)
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::super::acts::QActs;
    use super::super::packed::{Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES};
    use super::*;

    /// A deterministic pseudo-random stream in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn q4_1_bytes(n: usize, k: usize) -> Vec<u8> {
        let vals = noise(7, n * k / 2 + n * k / QK * 2);
        let mut raw = Vec::new();
        for (bi, chunk) in vals.chunks(18).take(n * k / QK).enumerate() {
            raw.extend_from_slice(&f16::from_f32(0.01 + chunk[0].abs() * 0.05).to_le_bytes());
            raw.extend_from_slice(&f16::from_f32(chunk[1] * 0.3).to_le_bytes());
            for j in 0..16 {
                raw.push(((bi * 31 + j * 7) % 256) as u8);
            }
        }
        assert_eq!(raw.len(), n * k / QK * Q4_1_BLOCK_BYTES);
        raw
    }

    fn q8_0_bytes(n: usize, k: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        for bi in 0..n * k / QK {
            raw.extend_from_slice(&f16::from_f32(0.002 + (bi % 13) as f32 * 1e-3).to_le_bytes());
            for j in 0..QK {
                raw.push((((bi * 57 + j * 13) % 255) as i32 - 127) as i8 as u8);
            }
        }
        assert_eq!(raw.len(), n * k / QK * Q8_0_BLOCK_BYTES);
        raw
    }

    /// Checks the kernel (SIMD when available) against the portable loop and against an
    /// f64 dot of the dequantized values, for row lengths with and without tails.
    #[test]
    fn kernels_match_reference() {
        for k in [32, 64, 96, 256, 288, 576, 1536] {
            let n = 3;
            let x = noise(k as u64, 4 * k);
            let mut acts = QActs::default();
            acts.quantize(&x, 4, k);
            let rows: Vec<_> = (0..4).map(|i| acts.row(i)).collect();
            let w4 = Q4_1Matrix::from_ggml(&q4_1_bytes(n, k), n, k).unwrap();
            let w8 = Q8_0Matrix::from_ggml(&q8_0_bytes(n, k), n, k).unwrap();
            let mut wrow = vec![0f32; k];
            for r in 0..n {
                let close = |a: f32, b: f32| a.to_bits() == b.to_bits();
                let mut out = [0f32; 1];
                let mut all = vec![0f32; 4 * n];
                // SAFETY: `all` holds 4 × n values.
                unsafe { gemm_q4_1(&w4, r..r + 1, &rows, all.as_mut_ptr(), n) };
                for i in 0..4 {
                    let want = dot_q4_1_portable(&w4, r, &rows[i]);
                    gemv_q4_1(&w4, r..r + 1, &rows[i], &mut out);
                    assert!(close(out[0], want), "{k} {r} {i}");
                    assert!(close(all[i * n + r], want), "{k} {r} {i}");
                    let want = dot_q8_0_portable(&w8, r, &rows[i]);
                    gemv_q8_0(&w8, r..r + 1, &rows[i], &mut out);
                    assert!(close(out[0], want), "{k} {r} {i}");
                }
                // Against the f64 dot product of the dequantized weights and activations.
                let xq: Vec<f64> = (0..k)
                    .map(|i| acts.qs[i] as f64 * acts.d[i / QK] as f64)
                    .collect();
                w4.dequantize_row(r, &mut wrow);
                let exact: f64 = (0..k).map(|e| wrow[e] as f64 * xq[e]).sum();
                let got = dot_q4_1_portable(&w4, r, &rows[0]) as f64;
                assert!(
                    (got - exact).abs() < 1e-3 * (1.0 + exact.abs()),
                    "{k}: {got} vs {exact}"
                );
                w8.dequantize_row(r, &mut wrow);
                let exact: f64 = (0..k).map(|e| wrow[e] as f64 * xq[e]).sum();
                let got = dot_q8_0_portable(&w8, r, &rows[0]) as f64;
                assert!(
                    (got - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                    "{k}: {got} vs {exact}"
                );
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use super::super::acts::QActs;
    use super::*;

    /// `cargo test --release -p omni --lib kernel_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn kernel_speed() {
        let (n, k) = (1536, 576);
        let raw: Vec<u8> = (0..n * k / QK * 20)
            .map(|i| (i * 7 % 251) as u8 & 0x3F)
            .collect();
        let w = Q4_1Matrix::from_ggml(&raw, n, k).unwrap();
        let x: Vec<f32> = (0..4 * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut acts = QActs::default();
        acts.quantize(&x, 4, k);
        let rows: Vec<_> = (0..4).map(|i| acts.row(i)).collect();
        let mut out = vec![0f32; 4 * n];
        let reps = 20;
        let macs = (reps * n * k) as f64;
        // Best of 20 runs: the machine is shared.
        let best = |f: &mut dyn FnMut()| {
            (0..20)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let secs = best(&mut || {
            for _ in 0..reps {
                gemv_q4_1(&w, 0..n, &rows[0], &mut out);
            }
        });
        println!("q4_1 gemv: {:.1} GMAC/s", macs / secs / 1e9);
        let secs = best(&mut || {
            for _ in 0..reps {
                // SAFETY: `out` holds 4 × n values.
                unsafe { gemm_q4_1(&w, 0..n, &rows, out.as_mut_ptr(), n) };
            }
        });
        println!("q4_1 gemm x4: {:.1} GMAC/s", 4.0 * macs / secs / 1e9);
        let raw: Vec<u8> = (0..n * k / QK * 34)
            .map(|i| (i * 7 % 251) as u8 & 0x3F)
            .collect();
        let w = Q8_0Matrix::from_ggml(&raw, n, k).unwrap();
        let secs = best(&mut || {
            for _ in 0..reps {
                gemv_q8_0(&w, 0..n, &rows[0], &mut out);
            }
        });
        println!("q8_0 gemv: {:.1} GMAC/s", macs / secs / 1e9);
    }
}
