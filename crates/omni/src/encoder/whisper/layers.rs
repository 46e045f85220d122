//! Building blocks shared by Whisper's encoder and decoder, loaded from CTranslate2 names:
//! pre-norm multi-head attention (fused QKV for self-attention, separate Q and fused KV for
//! cross-attention), the GELU feed-forward block and layer norm.
//!
//! Attention scales the queries by `1/sqrt(d_head)` before `Q·Kᵀ`, as CTranslate2 does.

use super::linear::Linear;
use crate::encoder::ops;
use candle_core::{D, Device, Tensor};

use crate::Result;
use crate::formats::ct2::Ct2File;

/// Loads tensors of one checkpoint onto one device, checking shapes.
pub(crate) struct Weights<'a> {
    pub file: &'a Ct2File,
    pub device: &'a Device,
    /// Keep matrices stored as f16 in f16 (the decoder: half the memory traffic per token,
    /// computed in f32 with the same values).
    pub keep_f16: bool,
}

impl Weights<'_> {
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.file.tensor_shaped(name, shape, self.device)
    }

    /// A matrix, in f16 when stored so and `keep_f16` is set, else f32.
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if !self.keep_f16 || self.device.is_cuda() || self.device.is_metal() {
            return self.tensor(name, shape);
        }
        let t = self.file.tensor_f16_or_f32(name, self.device)?;
        if t.dims() != shape {
            return Err(crate::Error::model_file(
                self.file.path(),
                format!(
                    "variable `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                ),
            ));
        }
        Ok(t)
    }

    pub fn linear(&self, prefix: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
        let w = self.matrix(&format!("{prefix}/weight"), &[out_dim, in_dim])?;
        let b = self.tensor(&format!("{prefix}/bias"), &[out_dim])?;
        Linear::new(w, Some(b))
    }

    pub fn layer_norm(&self, prefix: &str, dim: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.tensor(&format!("{prefix}/gamma"), &[dim])?,
            beta: self.tensor(&format!("{prefix}/beta"), &[dim])?,
        })
    }
}

/// Layer normalisation over the last dimension, ε = 1e-5.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.gamma,
            &self.beta,
            1e-5,
        )?)
    }
}

/// `linear_1(gelu(linear_0(layer_norm(x))))`, without the residual.
#[derive(Debug, Clone)]
pub struct FeedForward {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize) -> Result<Self> {
        let hidden = w
            .file
            .get(&format!("{prefix}/linear_0/weight"))
            .map_or(4 * dim, |v| v.shape[0]);
        Ok(FeedForward {
            norm: w.layer_norm(&format!("{prefix}/layer_norm"), dim)?,
            fc1: w.linear(&format!("{prefix}/linear_0"), hidden, dim)?,
            fc2: w.linear(&format!("{prefix}/linear_1"), dim, hidden)?,
        })
    }

    /// # Shapes
    /// `x`: `[b, t, d]` → `[b, t, d]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm.forward(x)?;
        let h = ops::gelu(&self.fc1.forward(&h)?)?;
        self.fc2.forward(&h)
    }
}

/// Splits `[b, t, h·dh]` into heads: `[b, h, t, dh]` (contiguous).
pub(crate) fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// Merges heads back: `[b, h, t, dh]` → `[b, t, h·dh]`.
pub(crate) fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, dh) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((b, t, h * dh))?)
}

/// `softmax(q·kᵀ + mask)·v` for pre-scaled `q`.
///
/// # Shapes
/// `q`: `[.., tq, dh]`, `k_t`: `[.., dh, tk]`, `v`: `[.., tk, dh]`, `mask`: `[tq, tk]`
/// (broadcast) → `[.., tq, dh]`.
pub(crate) fn attend(
    q: &Tensor,
    k_t: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    // Bound the score matrix (the encoder's is 1500 × 1500 per head): large temporaries
    // cost page faults on every call, so long queries go in blocks.
    const MAX_SCORES: usize = 1 << 21;
    let tq = q.dim(D::Minus2)?;
    let tk = k_t.dim(D::Minus1)?;
    let scores_len = q.elem_count() / q.dim(D::Minus1)?.max(1) * tk;
    if mask.is_none() && scores_len > MAX_SCORES && tq > 1 {
        let block = (tq * MAX_SCORES / scores_len).max(1);
        let dim = q.rank() - 2;
        let mut outs = Vec::with_capacity(tq.div_ceil(block));
        let mut start = 0;
        while start < tq {
            let len = block.min(tq - start);
            outs.push(attend_block(&q.narrow(dim, start, len)?, k_t, v, None)?);
            start += len;
        }
        return Ok(Tensor::cat(&outs, dim)?);
    }
    attend_block(q, k_t, v, mask)
}

fn attend_block(q: &Tensor, k_t: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let mut scores = q.matmul(k_t)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(v)?)
}

/// Causal mask `[t, offset + t]`: query `i` sees keys `0..=offset + i`.
pub(crate) fn causal_mask(t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = offset + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (t, total), device)?)
}

/// Pre-norm self-attention with fused QKV (`linear_0`: `[3d, d]`) and output `linear_1`.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    norm: LayerNorm,
    qkv: Linear,
    out: Linear,
    heads: usize,
    dim: usize,
    scale: f64,
}

impl SelfAttention {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize, heads: usize) -> Result<Self> {
        Ok(SelfAttention {
            norm: w.layer_norm(&format!("{prefix}/layer_norm"), dim)?,
            qkv: w.linear(&format!("{prefix}/linear_0"), 3 * dim, dim)?,
            out: w.linear(&format!("{prefix}/linear_1"), dim, dim)?,
            heads,
            dim,
            scale: 1.0 / ((dim / heads) as f64).sqrt(),
        })
    }

    /// Normalises `x` and projects it to `(q·scale, k, v)`, each `[b, h, t, dh]`.
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let qkv = self.qkv.forward(&self.norm.forward(x)?)?;
        let d = self.dim;
        let q = split_heads(&(qkv.narrow(D::Minus1, 0, d)? * self.scale)?, self.heads)?;
        let k = split_heads(&qkv.narrow(D::Minus1, d, d)?, self.heads)?;
        let v = split_heads(&qkv.narrow(D::Minus1, 2 * d, d)?, self.heads)?;
        Ok((q, k, v))
    }

    /// Unmasked attention over the whole sequence (the encoder).
    ///
    /// # Shapes
    /// `x`: `[b, t, d]` → `[b, t, d]` (the residual is not added).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let y = attend(&q, &k.t()?, &v, None)?;
        self.out.forward(&merge_heads(&y)?)
    }

    /// Causal attention over the cached keys/values plus the new positions (the decoder).
    ///
    /// # Shapes
    /// `x`: `[b, t, d]`; `cache`: `[b, h, offset, dh]` each, grown to `offset + t` → `[b, t, d]`.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let t = x.dim(1)?;
        let offset = cache.len();
        let (k, v) = cache.append(k, v)?;
        let mask = if t > 1 {
            Some(causal_mask(t, offset, x.device())?)
        } else {
            None
        };
        let y = attend(&q, &k.t()?, &v, mask.as_ref())?;
        self.out.forward(&merge_heads(&y)?)
    }
}

/// Keys and values of past positions for one decoder layer, `[b, h, t, dh]` each.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.kv = Some(kv.clone());
        Ok(kv)
    }

    /// Keeps rows `rows` of the batch, in that order (beam reordering, finished rows).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?));
        }
        Ok(())
    }
}

/// Pre-norm cross-attention: query `linear_0`, fused key/value `linear_1` (`[2d, d]`) applied
/// to the encoder output, output `linear_2`.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    norm: LayerNorm,
    q: Linear,
    kv: Linear,
    out: Linear,
    heads: usize,
    dim: usize,
    scale: f64,
}

/// The encoder output projected to one layer's keys (transposed) and values, computed once
/// per audio window: `k_t` `[h, dh, s]`, `v` `[h, s, dh]`.
#[derive(Debug, Clone)]
pub struct CrossKv {
    k: Tensor,
    k_t: Tensor,
    v: Tensor,
}

impl CrossAttention {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize, heads: usize) -> Result<Self> {
        Ok(CrossAttention {
            norm: w.layer_norm(&format!("{prefix}/layer_norm"), dim)?,
            q: w.linear(&format!("{prefix}/linear_0"), dim, dim)?,
            kv: w.linear(&format!("{prefix}/linear_1"), 2 * dim, dim)?,
            out: w.linear(&format!("{prefix}/linear_2"), dim, dim)?,
            heads,
            dim,
            scale: 1.0 / ((dim / heads) as f64).sqrt(),
        })
    }

    /// Projects one window's encoder output `[1, s, d]` to keys and values.
    pub fn encode_memory(&self, memory: &Tensor) -> Result<CrossKv> {
        let kv = self.kv.forward(memory)?;
        let k = split_heads(&kv.narrow(D::Minus1, 0, self.dim)?, self.heads)?;
        let v = split_heads(&kv.narrow(D::Minus1, self.dim, self.dim)?, self.heads)?;
        let k = k.squeeze(0)?;
        Ok(CrossKv {
            k_t: k.t()?.contiguous()?,
            k,
            v: v.squeeze(0)?.contiguous()?,
        })
    }

    /// Every row of the batch attends to the same audio window, so the rows are folded into
    /// the query length and the keys/values are never replicated.
    ///
    /// # Shapes
    /// `x`: `[b, t, d]` → `[b, t, d]` (the residual is not added).
    pub fn forward(&self, x: &Tensor, memory: &CrossKv) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let q = (self.q.forward(&self.norm.forward(x)?)? * self.scale)?;
        let dh = d / self.heads;
        if b * t <= 8
            && let Some(y) = ops::cross_attend_small(&q, &memory.k, &memory.v)?
        {
            return self.out.forward(&y);
        }
        // [b, t, h, dh] → [h, b·t, dh]
        let q = q
            .reshape((b * t, self.heads, dh))?
            .transpose(0, 1)?
            .contiguous()?;
        let y = attend(&q, &memory.k_t, &memory.v, None)?; // [h, b·t, dh]
        let y = y.transpose(0, 1)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}
