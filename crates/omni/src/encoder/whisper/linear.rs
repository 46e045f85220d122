//! A linear layer with a fast path for the few rows of incremental decoding.
//!
//! Decoding runs every weight matrix on one row per hypothesis (1–8 rows). A general GEMM
//! packs the weight matrix on each call, which for Whisper's output head means copying
//! 80–100 MB per token; here each weight row is streamed once and dotted with all input rows
//! (AVX2/FMA when the CPU has it), split over the rayon pool when the matrix is large.
//! Larger inputs (the encoder, the prompt) go to candle's GEMM.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use candle_nn::Module;
use rayon::prelude::*;

use crate::Result;

/// Rows up to which the streaming kernel is used.
const MAX_FAST_ROWS: usize = 8;
/// Weight elements per rayon task.
const CHUNK_ELEMS: usize = 1 << 16;

/// `y = x·Wᵀ + b` with `W` `[out, in]` stored in f32, or in f16 (computed in f32).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    bias_vec: Option<Vec<f32>>,
    out_dim: usize,
    in_dim: usize,
}

/// A borrowed weight matrix.
enum WeightSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let bias_vec = match &bias {
            Some(b) => Some(b.to_vec1::<f32>()?),
            None => None,
        };
        Ok(Linear {
            weight,
            bias,
            bias_vec,
            out_dim,
            in_dim,
        })
    }

    /// Candle's GEMM (weights converted to f32 when stored in f16).
    fn forward_gemm(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.to_dtype(DType::F32)?;
        Ok(candle_nn::Linear::new(w, self.bias.clone()).forward(x)?)
    }

    /// # Shapes
    /// `x`: `[.., in]` → `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.elem_count() / self.in_dim.max(1);
        if rows == 0 || rows > MAX_FAST_ROWS || !matches!(x.device(), Device::Cpu) {
            return self.forward_gemm(x);
        }
        let (storage, layout) = self.weight.storage_and_layout();
        let w = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => {
                WeightSlice::F32(&data[start..end])
            }
            (Storage::Cpu(CpuStorage::F16(data)), Some((start, end))) => {
                WeightSlice::F16(&data[start..end])
            }
            _ => {
                drop(storage);
                return self.forward_gemm(x);
            }
        };
        let xs = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let y = small_matmul(
            &xs,
            rows,
            &w,
            self.out_dim,
            self.in_dim,
            self.bias_vec.as_deref(),
        );
        drop(storage);
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.out_dim;
        }
        Ok(Tensor::from_vec(y, dims, x.device())?)
    }
}

/// `x` `[m, k]` times `w` `[n, k]` transposed, plus `bias` → `[m, n]`.
fn small_matmul(
    x: &[f32],
    m: usize,
    w: &WeightSlice,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    // Work on the transposed output [n, m] so that each task owns whole weight rows.
    let mut out_t = vec![0f32; n * m];
    let rows_per_chunk = (CHUNK_ELEMS / k.max(1)).max(1);
    let kernel = |(chunk, out): (usize, &mut [f32])| {
        let rows = (chunk * rows_per_chunk)..(chunk * rows_per_chunk + out.len() / m);
        match w {
            WeightSlice::F32(w) => dots_f32(x, m, &w[rows.start * k..rows.end * k], k, out),
            WeightSlice::F16(w) => dots_f16(x, m, &w[rows.start * k..rows.end * k], k, out),
        }
    };
    if n * k >= 4 * CHUNK_ELEMS {
        out_t
            .par_chunks_mut(rows_per_chunk * m)
            .enumerate()
            .for_each(kernel);
    } else {
        out_t
            .chunks_mut(rows_per_chunk * m)
            .enumerate()
            .for_each(kernel);
    }
    if m == 1 && bias.is_none() {
        return out_t;
    }
    let mut y = vec![0f32; m * n];
    for j in 0..n {
        let b = bias.map_or(0.0, |b| b[j]);
        for i in 0..m {
            y[i * n + j] = out_t[j * m + i] + b;
        }
    }
    y
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! dispatch_m {
    ($f:ident, $m:expr, $($arg:expr),*) => {
        match $m {
            1 => avx2::$f::<1>($($arg),*),
            2 => avx2::$f::<2>($($arg),*),
            3 => avx2::$f::<3>($($arg),*),
            4 => avx2::$f::<4>($($arg),*),
            5 => avx2::$f::<5>($($arg),*),
            6 => avx2::$f::<6>($($arg),*),
            7 => avx2::$f::<7>($($arg),*),
            _ => avx2::$f::<8>($($arg),*),
        }
    };
}

/// `out[r·m + i] = ⟨x_i, w_r⟩` for every row `r` of `w`.
pub(crate) fn dots_f32(x: &[f32], m: usize, w: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked); the kernel reads within `x` (m·k) and
        // `w` (rows·k) and writes within `out` (rows·m).
        unsafe { dispatch_m!(dots_f32, m, x, w, k, out) };
        return;
    }
    dots_scalar(x, m, w.chunks_exact(k).map(|r| r.to_vec()), k, out);
}

/// As [`dots_f32`] with f16 weights.
fn dots_f16(x: &[f32], m: usize, w: &[half::f16], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked); bounds as in `dots_f32`.
        unsafe { dispatch_m!(dots_f16, m, x, w, k, out) };
        return;
    }
    dots_scalar(
        x,
        m,
        w.chunks_exact(k)
            .map(|r| r.iter().map(|v| v.to_f32()).collect::<Vec<f32>>()),
        k,
        out,
    );
}

fn dots_scalar(
    x: &[f32],
    m: usize,
    rows: impl Iterator<Item = Vec<f32>>,
    k: usize,
    out: &mut [f32],
) {
    for (r, row) in rows.enumerate() {
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            let mut acc = [0f32; 8];
            let mut c = 0;
            while c + 8 <= k {
                for l in 0..8 {
                    acc[l] += xi[c + l] * row[c + l];
                }
                c += 8;
            }
            let mut s: f32 = acc.iter().sum();
            for l in c..k {
                s += xi[l] * row[l];
            }
            out[r * m + i] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// See [`super::dots_f32`]; `M` input rows kept in registers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots_f32<const M: usize>(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) {
        let rows = w.len() / k;
        let body = k - k % 8;
        let xp = x.as_ptr();
        for r in 0..rows {
            // SAFETY: r·k + c + 8 ≤ rows·k = w.len() and i·k + c + 8 ≤ M·k ≤ x.len().
            let wp = unsafe { w.as_ptr().add(r * k) };
            let mut acc = [_mm256_setzero_ps(); M];
            let mut c = 0;
            while c < body {
                let wv = unsafe { _mm256_loadu_ps(wp.add(c)) };
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = unsafe { _mm256_loadu_ps(xp.add(i * k + c)) };
                    *a = _mm256_fmadd_ps(xv, wv, *a);
                }
                c += 8;
            }
            for (i, a) in acc.iter().enumerate() {
                let mut s = hsum(*a);
                for l in body..k {
                    s += x[i * k + l] * w[r * k + l];
                }
                out[r * M + i] = s;
            }
        }
    }

    /// See [`super::dots_f16`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_f16<const M: usize>(
        x: &[f32],
        w: &[half::f16],
        k: usize,
        out: &mut [f32],
    ) {
        let rows = w.len() / k;
        let body = k - k % 8;
        let xp = x.as_ptr();
        for r in 0..rows {
            // SAFETY: as in `dots_f32`; 8 halfs are 16 bytes.
            let wp = unsafe { w.as_ptr().add(r * k) } as *const __m128i;
            let mut acc = [_mm256_setzero_ps(); M];
            let mut c = 0;
            while c < body {
                let wv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(wp.add(c / 8)) });
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = unsafe { _mm256_loadu_ps(xp.add(i * k + c)) };
                    *a = _mm256_fmadd_ps(xv, wv, *a);
                }
                c += 8;
            }
            for (i, a) in acc.iter().enumerate() {
                let mut s = hsum(*a);
                for l in body..k {
                    s += x[i * k + l] * w[r * k + l].to_f32();
                }
                out[r * M + i] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_matches_candle() {
        let device = Device::Cpu;
        for (m, n, k) in [(1, 7, 12), (3, 300, 384), (5, 1000, 64), (8, 33, 9)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &device).unwrap();
            let x = Tensor::randn(0f32, 1.0, (1, m, k), &device).unwrap();
            let slow = candle_nn::Linear::new(w.clone(), Some(b.clone()))
                .forward(&x)
                .unwrap();
            let fast = Linear::new(w.clone(), Some(b.clone()))
                .unwrap()
                .forward(&x)
                .unwrap();
            assert_eq!(fast.dims(), slow.dims());
            let diff = (fast - &slow).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "{m}x{n}x{k}");
            // f16 storage computes with the f16 values in f32.
            let w16 = w.to_dtype(DType::F16).unwrap();
            let exact = candle_nn::Linear::new(w16.to_dtype(DType::F32).unwrap(), Some(b.clone()))
                .forward(&x)
                .unwrap();
            let half = Linear::new(w16, Some(b)).unwrap();
            for xs in [
                x.clone(),
                Tensor::randn(0f32, 1.0, (2, 9, k), &device).unwrap(),
            ] {
                let exact = if xs.dims() == x.dims() {
                    exact.clone()
                } else {
                    half.forward_gemm(&xs).unwrap()
                };
                let diff = (half.forward(&xs).unwrap() - exact)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "f16 {m}x{n}x{k}");
            }
        }
    }
}
