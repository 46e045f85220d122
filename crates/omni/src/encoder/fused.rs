//! Fused row-wise passes between the matrix products of a transformer encoder layer (BERT,
//! CLIP, SigLIP): bias + residual + LayerNorm, bias + activation, and multi-head attention
//! over the real tokens of each sequence. Each is one pass over the rows, split across
//! threads and compiled for the widest vectors the CPU has; the matrix products themselves
//! stay on candle's GEMM.

use candle_core::Tensor;
use rayon::prelude::*;

use crate::encoder::ops::{Activation, with_f32};
use crate::index::simd::dot_portable;
use crate::{Error, Result};

/// Rows per rayon task in the row-wise passes.
const ROWS_PER_TASK: usize = 16;

/// `y = x·Wᵀ (+ b)`: the product on candle's GEMM, the bias left to the next fused pass.
pub(crate) struct Linear {
    /// `[in, out]`, a transposed view of the stored `[out, in]` weight.
    pub(crate) weight_t: Tensor,
    pub(crate) bias: Vec<f32>,
}

impl Linear {
    /// From a `[out, in]` weight and an optional `[out]` bias (zeros when absent).
    pub(crate) fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let out = weight.dim(0)?;
        Ok(Self {
            weight_t: weight.t()?,
            bias: match bias {
                Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1()?,
                None => vec![0.0; out],
            },
        })
    }

    /// `x` (`m × in`) → `x·Wᵀ` (`m × out`), bias not added.
    pub(crate) fn product(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?)
    }
}

/// LayerNorm parameters.
pub(crate) struct LayerNorm {
    pub(crate) gamma: Vec<f32>,
    pub(crate) beta: Vec<f32>,
    pub(crate) eps: f32,
}

impl LayerNorm {
    pub(crate) fn from_candle(norm: &candle_nn::LayerNorm) -> Result<Self> {
        let gamma: Vec<f32> = norm.weight().to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let beta = match norm.bias() {
            Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1()?,
            None => vec![0.0; gamma.len()],
        };
        Ok(Self {
            gamma,
            beta,
            eps: norm.eps() as f32,
        })
    }
}

/// Calls `f` on the contiguous f32 data of `t`.
pub(crate) fn slice_of<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    with_f32(&t, f).ok_or_else(|| Error::InvalidInput("BERT: expected f32 CPU tensors".into()))
}

/// `LayerNorm(src + bias + residual)` per row of `d` (two-pass mean and variance, as torch).
pub(crate) fn residual_norm(
    src: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    norm: &LayerNorm,
    d: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(ROWS_PER_TASK * d)
        .enumerate()
        .for_each(|(t, chunk)| {
            let first = t * ROWS_PER_TASK * d;
            for (r, row) in chunk.chunks_exact_mut(d).enumerate() {
                let at = first + r * d;
                let x = &src[at..at + d];
                match residual {
                    Some(res) => {
                        let res = &res[at..at + d];
                        for ((o, &a), (&b, &c)) in row.iter_mut().zip(x).zip(bias.iter().zip(res)) {
                            *o = a + b + c;
                        }
                    }
                    None => {
                        for ((o, &a), &b) in row.iter_mut().zip(x).zip(bias) {
                            *o = a + b;
                        }
                    }
                }
                let mean = sum8(row) / d as f32;
                let mut sq = [0f32; 8];
                for (i, &v) in row.iter().enumerate() {
                    sq[i % 8] += (v - mean) * (v - mean);
                }
                let inv = 1.0 / (sq.iter().sum::<f32>() / d as f32 + norm.eps).sqrt();
                for ((v, &g), &b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
                    *v = (*v - mean) * inv * g + b;
                }
            }
        });
    out
}

/// `src + bias + residual` per row of `bias.len()` (a pre-LayerNorm block's residual add).
pub(crate) fn add_bias_residual(src: &[f32], bias: &[f32], residual: &[f32]) -> Vec<f32> {
    let width = bias.len();
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(ROWS_PER_TASK * width)
        .zip(src.par_chunks(ROWS_PER_TASK * width))
        .zip(residual.par_chunks(ROWS_PER_TASK * width))
        .for_each(|((o, s), r)| {
            for ((orow, srow), rrow) in o
                .chunks_exact_mut(width)
                .zip(s.chunks_exact(width))
                .zip(r.chunks_exact(width))
            {
                for (((o, &s), &b), &r) in orow.iter_mut().zip(srow).zip(bias).zip(rrow) {
                    *o = s + b + r;
                }
            }
        });
    out
}

/// `act(src + bias)` per row of `bias.len()`.
pub(crate) fn bias_activation(src: &[f32], bias: &[f32], activation: Activation) -> Vec<f32> {
    let width = bias.len();
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(ROWS_PER_TASK * width)
        .zip(src.par_chunks(ROWS_PER_TASK * width))
        .for_each(|(o, s)| {
            for (orow, srow) in o.chunks_exact_mut(width).zip(s.chunks_exact(width)) {
                for ((o, &s), &b) in orow.iter_mut().zip(srow).zip(bias) {
                    *o = s + b;
                }
                activation.apply_in_place(orow);
            }
        });
    out
}

/// Sum in eight interleaved lanes (vectorises; the order torch's kernels use is similar).
fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (i, &x) in v.iter().enumerate() {
        acc[i % 8] += x;
    }
    acc.iter().sum()
}

/// One head: `out = softmax(q·kᵀ·scale)·v`, `q` `n × dh`, `k`, `v` `len × dh`.
#[inline(always)]
fn attend_head_impl(q: &[f32], k: &[f32], v: &[f32], dh: usize, scale: f32, out: &mut [f32]) {
    let len = k.len() / dh;
    let mut scores = vec![0f32; len];
    for (qi, o) in q.chunks_exact(dh).zip(out.chunks_exact_mut(dh)) {
        for (s, kj) in scores.iter_mut().zip(k.chunks_exact(dh)) {
            *s = dot_portable(qi, kj) * scale;
        }
        crate::encoder::ops::softmax_rows(&mut scores, len);
        for (&p, vj) in scores.iter().zip(v.chunks_exact(dh)) {
            for (o, &x) in o.iter_mut().zip(vj) {
                *o += p * x;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn attend_head_avx512(q: &[f32], k: &[f32], v: &[f32], dh: usize, scale: f32, out: &mut [f32]) {
    attend_head_impl(q, k, v, dh, scale, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_head_avx2(q: &[f32], k: &[f32], v: &[f32], dh: usize, scale: f32, out: &mut [f32]) {
    attend_head_impl(q, k, v, dh, scale, out);
}

/// [`attend_head_impl`] compiled for the widest vectors the CPU has.
fn attend_head(q: &[f32], k: &[f32], v: &[f32], dh: usize, scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA).
            return unsafe { attend_head_avx512(q, k, v, dh, scale, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { attend_head_avx2(q, k, v, dh, scale, out) };
        }
    }
    attend_head_impl(q, k, v, dh, scale, out);
}

/// One of the query, key or value projections inside a row-major buffer: row `r`'s values
/// are `data[r · stride + offset ..][..d]`, to which `bias` is added.
#[derive(Clone, Copy)]
pub(crate) struct Projection<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) stride: usize,
    pub(crate) offset: usize,
    pub(crate) bias: &'a [f32],
}

/// Multi-head self-attention of each sequence over its first `lens[i]` tokens (padding
/// keys skipped), `softmax(q·kᵀ/√dh)·v` per head.
///
/// # Shapes
/// `q`, `k`, `v`: `b·seq` rows of `d` (`d = bias.len()`) → `(b·seq) × d`.
pub(crate) fn attention(
    q: Projection<'_>,
    k: Projection<'_>,
    v: Projection<'_>,
    lens: &[usize],
    seq: usize,
    heads: usize,
) -> Vec<f32> {
    let d = q.bias.len();
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let per_task: Vec<(usize, usize, Vec<f32>)> = (0..lens.len() * heads)
        .into_par_iter()
        .map(|task| {
            let (bi, h) = (task / heads, task % heads);
            let len = lens[bi].clamp(1, seq);
            // This head's rows of a projection, bias added, packed.
            let gather = |p: Projection<'_>, n: usize| -> Vec<f32> {
                let col = p.offset + h * dh;
                let b = &p.bias[h * dh..(h + 1) * dh];
                let mut out = vec![0f32; n * dh];
                for (i, o) in out.chunks_exact_mut(dh).enumerate() {
                    let at = (bi * seq + i) * p.stride + col;
                    for ((o, &a), &c) in o.iter_mut().zip(&p.data[at..at + dh]).zip(b) {
                        *o = a + c;
                    }
                }
                out
            };
            let (qh, kh, vh) = (gather(q, seq), gather(k, len), gather(v, len));
            let mut out = vec![0f32; seq * dh];
            attend_head(&qh, &kh, &vh, dh, scale, &mut out);
            (bi, h, out)
        })
        .collect();
    let mut ctx = vec![0f32; lens.len() * seq * d];
    for (bi, h, out) in per_task {
        for (i, row) in out.chunks_exact(dh).enumerate() {
            let at = (bi * seq + i) * d + h * dh;
            ctx[at..at + dh].copy_from_slice(row);
        }
    }
    ctx
}
