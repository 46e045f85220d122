//! Element-wise kernels shared by the encoders (Whisper, BERT): activations and softmax over
//! f32 data, split over the rayon pool and vectorised (AVX2/FMA when available), and a
//! small-query attention kernel for incremental decoding.
//!
//! GELU uses the erf approximation CTranslate2 uses on CPU (Abramowitz & Stegun 7.1.26,
//! |error| < 1.5e-7, ported there from PyTorch's vectorised erf) and both use a Cephes-style
//! `expf` (as `exp256_ps` in CTranslate2's `avx_mathfun.h`), which keeps the numerics close to
//! the reference and the loops vectorisable.

use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// Cephes `expf`: |relative error| ≈ 1 ulp on [-88, 88].
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let underflow = x < -88.376_26;
    let x = x.clamp(-88.376_26, 88.376_26);
    let fx = (x * LOG2E + 0.5).floor();
    let r = x - fx * C1 - fx * C2;
    let z = r * r;
    let mut y = 1.987_569_1e-4_f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 0.166_666_65;
    y = y * r + 0.5;
    let y = y * z + r + 1.0;
    let pow2n = f32::from_bits((((fx as i32) + 127) << 23) as u32);
    if underflow { 0.0 } else { y * pow2n }
}

/// `0.5·x·(1 + erf(x/√2))` with the A&S 7.1.26 erf.
#[inline(always)]
fn gelu_one(v: f32) -> f32 {
    let a = v * std::f32::consts::FRAC_1_SQRT_2;
    let abs = a.abs();
    let t = 1.0 / (0.327_591_1 * abs + 1.0);
    let r =
        ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_7) * t - 0.284_496_74) * t) + 0.254_829_6;
    let e = 1.0 - r * t * exp(-(a * a));
    let erf = if a < 0.0 { -e } else { e };
    0.5 * v * (1.0 + erf)
}

/// `v[i] = f(v[i])`, compiled for the widest vectors the CPU has (`f` is inlined into each
/// variant, so `gelu_one` and friends vectorise to 16 or 8 lanes).
fn map_in_place(v: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA).
            return unsafe { map_avx512(v, f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { map_avx2(v, f) };
        }
    }
    map_impl(v, f);
}

#[inline(always)]
fn map_impl(v: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    for x in v {
        *x = f(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn map_avx512(v: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    map_impl(v, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_avx2(v: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    map_impl(v, f);
}

/// A feed-forward activation, applied in place to f32 data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `0.5·x·(1 + erf(x/√2))` (HF `gelu`).
    GeluErf,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (HF `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
    /// `x·sigmoid(1.702·x)` (CLIP's `quick_gelu`).
    QuickGelu,
}

impl Activation {
    pub(crate) fn apply_in_place(self, v: &mut [f32]) {
        match self {
            Activation::GeluErf => map_in_place(v, gelu_one),
            Activation::GeluTanh => {
                for x in v {
                    let c = (2.0 / std::f32::consts::PI).sqrt();
                    *x = 0.5 * *x * (1.0 + (c * (*x + 0.044_715 * *x * *x * *x)).tanh());
                }
            }
            Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::QuickGelu => map_in_place(v, |x| x / (1.0 + exp(-1.702 * x))),
        }
    }
}

/// In place: `row = exp(row - max) / sum`, for each row of `width` in `data` (portable
/// fallback of the AVX2 kernel below).
fn softmax_rows_impl(data: &mut [f32], width: usize) {
    for row in data.chunks_exact_mut(width) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        // Eight interleaved partial sums, as the vector kernel.
        let mut acc = [0f32; 8];
        for (i, v) in row.iter_mut().enumerate() {
            *v = exp(*v - max);
            acc[i % 8] += *v;
        }
        let inv = 1.0 / acc.iter().sum::<f32>();
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

pub(crate) fn softmax_rows(data: &mut [f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { avx2::softmax_rows(data, width) };
        return;
    }
    softmax_rows_impl(data, width);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::exp`] on 8 lanes (CTranslate2's `exp256_ps`).
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(-88.376_26);
        let hi = _mm256_set1_ps(88.376_26);
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
        let x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
        let fx = _mm256_floor_ps(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
        let z = _mm256_mul_ps(r, r);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.166_666_65));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5));
        y = _mm256_add_ps(_mm256_fmadd_ps(y, z, r), _mm256_set1_ps(1.0));
        let n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n));
        _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2n))
    }

    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// See [`super::softmax_rows_impl`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_rows(data: &mut [f32], width: usize) {
        let body = width - width % 8;
        for row in data.chunks_exact_mut(width) {
            let p = row.as_mut_ptr();
            let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut i = 0;
            while i < body {
                // SAFETY: i + 8 ≤ body ≤ row.len().
                vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(p.add(i)) });
                i += 8;
            }
            let mut max = hmax(vmax);
            for &v in &row[body..] {
                max = max.max(v);
            }
            let vm = _mm256_set1_ps(max);
            let mut vsum = _mm256_setzero_ps();
            let mut i = 0;
            while i < body {
                // SAFETY: as above.
                unsafe {
                    let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm));
                    _mm256_storeu_ps(p.add(i), e);
                    vsum = _mm256_add_ps(vsum, e);
                }
                i += 8;
            }
            let mut sum = hsum(vsum);
            for v in &mut row[body..] {
                *v = super::exp(*v - max);
                sum += *v;
            }
            let inv = _mm256_set1_ps(1.0 / sum);
            let mut i = 0;
            while i < body {
                // SAFETY: as above.
                unsafe {
                    _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv))
                };
                i += 8;
            }
            for v in &mut row[body..] {
                *v *= 1.0 / sum;
            }
        }
    }
}

/// The tensor's data as one contiguous f32 slice, when it is a CPU f32 tensor.
pub(crate) fn with_f32<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = x.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Some(f(&data[start..end])),
        _ => None,
    }
}

/// GELU (erf form) of an f32 tensor.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    let out = with_f32(x, |src| {
        let mut dst = src.to_vec();
        if dst.len() >= 2 * CHUNK {
            dst.par_chunks_mut(CHUNK)
                .for_each(|d| map_in_place(d, gelu_one));
        } else {
            map_in_place(&mut dst, gelu_one);
        }
        dst
    });
    match out {
        Some(dst) => Ok(Tensor::from_vec(dst, x.shape(), &Device::Cpu)?),
        None => Ok(x.gelu_erf()?),
    }
}

/// Softmax over the last dimension of an f32 tensor.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let width = x.dims().last().copied().unwrap_or(1).max(1);
    let out = with_f32(x, |src| {
        let mut dst = src.to_vec();
        let rows_per_task = (CHUNK / width).max(1);
        if dst.len() >= 2 * CHUNK {
            dst.par_chunks_mut(rows_per_task * width)
                .for_each(|c| softmax_rows(c, width));
        } else {
            softmax_rows(&mut dst, width);
        }
        dst
    });
    match out {
        Some(dst) => Ok(Tensor::from_vec(dst, x.shape(), &Device::Cpu)?),
        None => Ok(candle_nn::ops::softmax_last_dim(x)?),
    }
}

/// Attention of a few query rows to one window's keys and values, streaming each head's
/// keys and values once (a GEMM would pack them on every decoding step).
///
/// # Shapes
/// `q`: `[b, t, h·dh]` (pre-scaled), `k`, `v`: `[h, s, dh]` → `[b, t, h·dh]`; `None` when the
/// tensors are not contiguous CPU f32.
pub fn cross_attend_small(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let (h, s, dh) = k.dims3()?;
    let d = h * dh;
    let m = q.elem_count() / d.max(1);
    let Some(qs) = with_f32(q, <[f32]>::to_vec) else {
        return Ok(None);
    };
    let out = with_f32(k, |ks| {
        with_f32(v, |vs| {
            let per_head: Vec<Vec<f32>> = (0..h)
                .into_par_iter()
                .map(|head| {
                    let kh = &ks[head * s * dh..(head + 1) * s * dh];
                    let vh = &vs[head * s * dh..(head + 1) * s * dh];
                    let qh: Vec<f32> = (0..m)
                        .flat_map(|i| {
                            qs[i * d + head * dh..i * d + (head + 1) * dh]
                                .iter()
                                .copied()
                        })
                        .collect();
                    // scores_t [s, m] → probs [m, s]
                    let mut scores_t = vec![0f32; s * m];
                    super::whisper::linear::dots_f32(&qh, m, kh, dh, &mut scores_t);
                    let mut probs = vec![0f32; m * s];
                    for j in 0..s {
                        for i in 0..m {
                            probs[i * s + j] = scores_t[j * m + i];
                        }
                    }
                    softmax_rows(&mut probs, s);
                    // out [m, dh] = probs · V
                    let mut out = vec![0f32; m * dh];
                    for i in 0..m {
                        let o = &mut out[i * dh..(i + 1) * dh];
                        for (j, &p) in probs[i * s..(i + 1) * s].iter().enumerate() {
                            for (a, &b) in o.iter_mut().zip(&vh[j * dh..(j + 1) * dh]) {
                                *a += p * b;
                            }
                        }
                    }
                    out
                })
                .collect();
            let mut y = vec![0f32; m * d];
            for (head, out) in per_head.iter().enumerate() {
                for i in 0..m {
                    y[i * d + head * dh..i * d + (head + 1) * dh]
                        .copy_from_slice(&out[i * dh..(i + 1) * dh]);
                }
            }
            y
        })
    })
    .flatten();
    match out {
        Some(y) => Ok(Some(Tensor::from_vec(y, q.shape(), &Device::Cpu)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            assert!(rel < 3e-7, "exp({x}): {rel}");
        }
    }

    #[test]
    fn gelu_matches_erf_form() {
        let x = Tensor::randn(0f32, 3.0, (7, 5000), &Device::Cpu).unwrap();
        let ours = gelu(&x).unwrap();
        let reference = x.gelu_erf().unwrap();
        let diff = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 2e-6);
    }

    #[test]
    fn cross_attention_kernel_matches_matmuls() {
        let dev = Device::Cpu;
        let (h, s, dh, b) = (6, 1500, 64, 5);
        let q = Tensor::randn(0f32, 0.3, (b, 1, h * dh), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (h, s, dh), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (h, s, dh), &dev).unwrap();
        let fast = cross_attend_small(&q, &k, &v).unwrap().unwrap();
        let qh = q
            .reshape((b, h, dh))
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap();
        let p = candle_nn::ops::softmax_last_dim(&qh.matmul(&k.t().unwrap()).unwrap()).unwrap();
        let slow = p
            .matmul(&v)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .reshape((b, 1, h * dh))
            .unwrap();
        let diff = (fast - slow).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn softmax_is_accurate() {
        // Deterministic scores in [-10, 10).
        let values: Vec<f32> = (0..3 * 40 * 1500u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 * 20.0 - 10.0
            })
            .collect();
        let x = Tensor::from_vec(values, (3, 40, 1500), &Device::Cpu).unwrap();
        let ours = softmax_last_dim(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut worst = 0f64;
        for (row, out) in xs.chunks(1500).zip(ours.chunks(1500)) {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (&v, &o) in row.iter().zip(out) {
                worst = worst.max(((v as f64 - max).exp() / sum - o as f64).abs());
            }
        }
        // f32 rounding of exp and of the 1500-term sum.
        assert!(worst < 3e-6, "{worst}");
        let masked = Tensor::new(&[[0f32, f32::NEG_INFINITY, 1.0]], &Device::Cpu).unwrap();
        let p = softmax_last_dim(&masked).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(p[0][1], 0.0);
    }
}
