//! The pre-LayerNorm transformer encoder that CLIP's and SigLIP's towers share
//! (transformers' `CLIPEncoder` / `SiglipEncoder`: identical module trees and key names,
//! `encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc{1,2}}`).
//!
//! Reference: Vaswani et al. 2017 (attention), Radford et al. 2021 (CLIP, pre-LN ViT);
//! transformers `models/clip/modeling_clip.py`.

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder, layer_norm, linear};
use serde::Deserialize;

use crate::encoder::{fused, ops};

/// The MLP nonlinearity, by its transformers name (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    #[default]
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The exact, erf-based GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (SigLIP).
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_new", rename = "gelu_fast")]
    GeluTanh,
}

impl Activation {
    /// The same function for the fused kernels.
    fn fused(self) -> ops::Activation {
        match self {
            Activation::QuickGelu => ops::Activation::QuickGelu,
            Activation::Gelu => ops::Activation::GeluErf,
            Activation::GeluTanh => ops::Activation::GeluTanh,
        }
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
        }
    }
}

/// Sizes of one tower's encoder.
#[derive(Debug, Clone, Copy)]
pub struct EncoderDims {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub eps: f64,
    pub act: Activation,
}

/// `l(x)`; for a tracked `x` through a frozen matmul, so that the weights' gradients,
/// which nothing uses, are not computed.
fn apply(l: &Linear, x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        crate::train::frozen::linear(x, l.weight(), l.bias()).map_err(candle_core::Error::wrap)
    } else {
        l.forward(x)
    }
}

/// Multi-head self-attention with separate q/k/v projections.
#[derive(Debug, Clone)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn new(d: &EncoderDims, vb: VarBuilder) -> Result<Self> {
        if d.heads == 0 || !d.hidden.is_multiple_of(d.heads) {
            candle_core::bail!(
                "hidden size {} is not divisible by {} attention heads",
                d.hidden,
                d.heads
            );
        }
        Ok(Self {
            q: linear(d.hidden, d.hidden, vb.pp("q_proj"))?,
            k: linear(d.hidden, d.hidden, vb.pp("k_proj"))?,
            v: linear(d.hidden, d.hidden, vb.pp("v_proj"))?,
            out: linear(d.hidden, d.hidden, vb.pp("out_proj"))?,
            heads: d.heads,
        })
    }

    /// # Shapes
    /// `x`: (N, L, D); `mask`: additive, broadcastable to (N, heads, L, L). Returns (N, L, D).
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = apply(&self.q, x)?;
        let k = apply(&self.k, x)?;
        let v = apply(&self.v, x)?;
        let y = attend(&q, &k, &v, self.heads, mask)?;
        apply(&self.out, &y)
    }
}

/// Scaled dot-product attention over already projected `q` (N, Lq, D), `k`, `v` (N, Lk, D)
/// split into `heads` heads. Returns (N, Lq, D) before the output projection.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (n, lq, d) = q.dims3()?;
    let lk = k.dim(1)?;
    let hd = d / heads;
    let split = |t: &Tensor, l: usize| t.reshape((n, l, heads, hd))?.transpose(1, 2)?.contiguous();
    let q = (split(q, lq)? * (hd as f64).powf(-0.5))?;
    let k = split(k, lk)?;
    let v = split(v, lk)?;
    let mut scores = q.matmul(&k.t()?)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    // candle's fused softmax has no backward pass.
    let probs = match scores.track_op() {
        true => candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?,
        false => candle_nn::ops::softmax_last_dim(&scores)?,
    };
    probs.matmul(&v)?.transpose(1, 2)?.reshape((n, lq, d))
}

/// `n`'s LayerNorm from plain tensor ops (candle's fused one has no backward pass).
pub(crate) fn differentiable_layer_norm(n: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(candle_core::D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    let y = centred
        .broadcast_div(&(var + n.eps())?.sqrt()?)?
        .broadcast_mul(n.weight())?;
    match n.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// fc1 → activation → fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(d: &EncoderDims, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(d.hidden, d.intermediate, vb.pp("fc1"))?,
            fc2: linear(d.intermediate, d.hidden, vb.pp("fc2"))?,
            act: d.act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        apply(&self.fc2, &self.act.apply(&apply(&self.fc1, x)?)?)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    fused: Arc<FusedLayer>,
}

impl EncoderLayer {
    fn new(d: &EncoderDims, vb: VarBuilder) -> Result<Self> {
        let norm1 = layer_norm(d.hidden, d.eps, vb.pp("layer_norm1"))?;
        let attn = Attention::new(d, vb.pp("self_attn"))?;
        let norm2 = layer_norm(d.hidden, d.eps, vb.pp("layer_norm2"))?;
        let mlp = Mlp::new(d, vb.pp("mlp"))?;
        let fused =
            FusedLayer::new(&norm1, &attn, &norm2, &mlp).map_err(candle_core::Error::wrap)?;
        Ok(Self {
            norm1,
            attn,
            norm2,
            mlp,
            fused: Arc::new(fused),
        })
    }

    /// The fused kernels when nothing needs a gradient, candle ops otherwise (so that a
    /// frozen encoder passes gradients to what feeds it).
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if mask.is_none() && x.dtype() == DType::F32 && x.device().is_cpu() && !x.track_op() {
            return self.fused.forward(x).map_err(candle_core::Error::wrap);
        }
        let norm = |n: &LayerNorm, x: &Tensor| match x.track_op() {
            true => differentiable_layer_norm(n, x),
            false => n.forward(x),
        };
        let x = (x + self.attn.forward(&norm(&self.norm1, x)?, mask)?)?;
        &x + self.mlp.forward(&norm(&self.norm2, &x)?)?
    }
}

/// A layer's weights as the fused kernels take them (transposed views of the same
/// matrices, no copies), for the unmasked f32 CPU case: the image towers.
struct FusedLayer {
    norm1: fused::LayerNorm,
    q: fused::Linear,
    k: fused::Linear,
    v: fused::Linear,
    out: fused::Linear,
    norm2: fused::LayerNorm,
    fc1: fused::Linear,
    fc2: fused::Linear,
    heads: usize,
    act: ops::Activation,
}

impl std::fmt::Debug for FusedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedLayer").finish_non_exhaustive()
    }
}

impl FusedLayer {
    fn new(
        norm1: &LayerNorm,
        attn: &Attention,
        norm2: &LayerNorm,
        mlp: &Mlp,
    ) -> crate::Result<Self> {
        let linear = |l: &Linear| fused::Linear::new(l.weight(), l.bias());
        Ok(Self {
            norm1: fused::LayerNorm::from_candle(norm1)?,
            q: linear(&attn.q)?,
            k: linear(&attn.k)?,
            v: linear(&attn.v)?,
            out: linear(&attn.out)?,
            norm2: fused::LayerNorm::from_candle(norm2)?,
            fc1: linear(&mlp.fc1)?,
            fc2: linear(&mlp.fc2)?,
            heads: attn.heads,
            act: mlp.act.fused(),
        })
    }

    /// `x + attn(norm1(x))`, then `+ mlp(norm2(·))`, every step between the matrix
    /// products one fused pass.
    fn forward(&self, x: &Tensor) -> crate::Result<Tensor> {
        let cpu = candle_core::Device::Cpu;
        let (n, l, d) = x.dims3()?;
        let rows = n * l;
        let x = x.reshape((rows, d))?.contiguous()?;
        let zeros = vec![0f32; d];
        let h = fused::slice_of(&x, |x| {
            fused::residual_norm(x, &zeros, None, &self.norm1, d)
        })?;
        let h = Tensor::from_vec(h, (rows, d), &cpu)?;
        let (q, k, v) = (
            self.q.product(&h)?,
            self.k.product(&h)?,
            self.v.product(&h)?,
        );
        let lens = vec![l; n];
        let ctx = fused::slice_of(&q, |q| {
            fused::slice_of(&k, |k| {
                fused::slice_of(&v, |v| {
                    let part = |data, bias| fused::Projection {
                        data,
                        stride: d,
                        offset: 0,
                        bias,
                    };
                    fused::attention(
                        part(q, &self.q.bias),
                        part(k, &self.k.bias),
                        part(v, &self.v.bias),
                        &lens,
                        l,
                        self.heads,
                    )
                })
            })
        })???;
        let a = self.out.product(&Tensor::from_vec(ctx, (rows, d), &cpu)?)?;
        let x = fused::slice_of(&a, |a| {
            fused::slice_of(&x, |x| fused::add_bias_residual(a, &self.out.bias, x))
        })??;
        let h = fused::residual_norm(&x, &zeros, None, &self.norm2, d);
        let u = self.fc1.product(&Tensor::from_vec(h, (rows, d), &cpu)?)?;
        let g = fused::slice_of(&u, |u| fused::bias_activation(u, &self.fc1.bias, self.act))?;
        let inter = self.fc1.bias.len();
        let o = self
            .fc2
            .product(&Tensor::from_vec(g, (rows, inter), &cpu)?)?;
        let y = fused::slice_of(&o, |o| fused::add_bias_residual(o, &self.fc2.bias, &x))?;
        Ok(Tensor::from_vec(y, (n, l, d), &cpu)?)
    }
}

/// `encoder.layers.*`: a stack of pre-LN transformer layers.
#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(d: &EncoderDims, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..d.layers)
            .map(|i| EncoderLayer::new(d, vb.pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// # Shapes
    /// `x`: (N, L, D); `mask`: additive (N, 1, L, L) or (1, 1, L, L). Returns (N, L, D).
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_layers(x, mask, self.layers.len())
    }

    /// Runs only the first `n` layers (LLaVA reads an inner layer's output).
    pub fn forward_layers(&self, x: &Tensor, mask: Option<&Tensor>, n: usize) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in self.layers.iter().take(n) {
            x = layer.forward(&x, mask)?;
        }
        Ok(x)
    }

    /// Number of layers.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.layers.len()
    }
}

/// An additive attention mask (N, 1, L, L): 0 where query i may attend to key j, -inf
/// elsewhere. `causal` hides later keys; `keep` (N, L) of 0/1 hides padding keys.
pub fn attention_mask(
    n: usize,
    l: usize,
    causal: bool,
    keep: Option<&[Vec<u32>]>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut data = vec![0f32; n * l * l];
    for b in 0..n {
        for i in 0..l {
            for j in 0..l {
                let hidden = (causal && j > i) || keep.is_some_and(|k| k[b][j] == 0);
                if hidden {
                    data[(b * l + i) * l + j] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_vec(data, (n, 1, l, l), device)?.to_dtype(DType::F32)
}

pub use crate::encoder::l2_normalize;
