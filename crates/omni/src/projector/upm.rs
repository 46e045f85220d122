//! OneLLM's Universal Projection Module (Han et al., CVPR 2024, §3.2; reference:
//! `model/LLM/onellm.py`, `encode_image`): K projection experts shared by every
//! modality, mixed per token by a soft router, read out at learnable per-modality query
//! tokens.
//!
//! ```text
//! features (B, L, W) ─► proj1 (Linear + LayerNorm) ─► [queries (Q) ; features] (B, Q+L, W)
//!   ├─► router: fc1 → GELU → fc2 → sigmoid, normalised to sum 1 over the K experts
//!   └─► expert k: LLaMA blocks (RMSNorm, SwiGLU, bidirectional, no RoPE), first Q rows
//! Σ_k weight_k · expert_k ─► proj2 (Linear + LayerNorm) ─► (B, Q, LLM width)
//! ```
//!
//! The router's weights are read only at the query positions, so only those are routed.
//! Every op is differentiable (composite norms), so the module trains with candle's
//! autograd. Names are the reference's: `resample_layers.{k}.{i}.*`, `routers.{m}.*`,
//! `resample_tokens.{m}`, `clip_proj{1,2}.{m}.{0,1}.*`, `start_tag.{m}`, `end_tag.{m}`.

use std::collections::HashMap;

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear, linear_no_bias};
use serde::{Deserialize, Serialize};

use super::norm::Norm;
use crate::modality::universal::Modality;
use crate::train::fused::{attention_softmax, rms_norm, silu_mul};

/// Sizes of the module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpmConfig {
    /// Projection experts (OneLLM: 3).
    pub experts: usize,
    /// Transformer blocks per expert (8).
    pub layers: usize,
    /// Attention heads of an expert block (16).
    pub heads: usize,
    /// Query tokens per modality: the LLM tokens one input becomes (30).
    pub queries: usize,
    /// SwiGLU hidden size is `multiple_of · ⌈⌊8·width/3⌋ / multiple_of⌉` (256).
    pub multiple_of: usize,
    pub norm_eps: f64,
    /// Route with the learned router (true) or weigh every expert 1/K (the ablation).
    pub soft_router: bool,
}

impl Default for UpmConfig {
    fn default() -> Self {
        Self {
            experts: 3,
            layers: 8,
            heads: 16,
            queries: 30,
            multiple_of: 256,
            norm_eps: 1e-5,
            soft_router: true,
        }
    }
}

/// LLaMA's feed-forward width for a block of width `dim`.
pub fn swiglu_hidden(dim: usize, multiple_of: usize) -> usize {
    let hidden = 2 * 4 * dim / 3;
    hidden.div_ceil(multiple_of) * multiple_of
}

/// One LLaMA block without RoPE or mask (`TransformerBlock(x, 0, None, None)`).
#[derive(Debug, Clone)]
struct ExpertBlock {
    attention_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w1: Linear,
    w2: Linear,
    w3: Linear,
    heads: usize,
    eps: f64,
}

impl ExpertBlock {
    fn new(width: usize, c: &UpmConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = swiglu_hidden(width, c.multiple_of);
        let att = vb.pp("attention");
        let ff = vb.pp("feed_forward");
        let ones = candle_nn::Init::Const(1.0);
        Ok(Self {
            attention_norm: vb.get_with_hints(width, "attention_norm.weight", ones)?,
            wq: linear_no_bias(width, width, att.pp("wq"))?,
            wk: linear_no_bias(width, width, att.pp("wk"))?,
            wv: linear_no_bias(width, width, att.pp("wv"))?,
            wo: linear_no_bias(width, width, att.pp("wo"))?,
            ffn_norm: vb.get_with_hints(width, "ffn_norm.weight", ones)?,
            w1: linear_no_bias(width, hidden, ff.pp("w1"))?,
            w2: linear_no_bias(hidden, width, ff.pp("w2"))?,
            w3: linear_no_bias(width, hidden, ff.pp("w3"))?,
            heads: c.heads,
            eps: c.norm_eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, w) = x.dims3()?;
        let hd = w / self.heads;
        let n = rms_norm(x, &self.attention_norm, self.eps).map_err(candle_core::Error::wrap)?;
        let split = |t: Tensor| {
            t.reshape((b, l, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.wq.forward(&n)?)?;
        let k = split(self.wk.forward(&n)?)?;
        let v = split(self.wv.forward(&n)?)?;
        let probs = attention_softmax(&q.matmul(&k.t()?)?, (hd as f64).powf(-0.5), false)
            .map_err(candle_core::Error::wrap)?;
        let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, w))?;
        let h = (x + self.wo.forward(&attn)?)?;
        let n = rms_norm(&h, &self.ffn_norm, self.eps).map_err(candle_core::Error::wrap)?;
        let gated = silu_mul(&self.w1.forward(&n)?, &self.w3.forward(&n)?)
            .map_err(candle_core::Error::wrap)?;
        &h + self.w2.forward(&gated)?
    }
}

/// A modality's own parts: queries, router, the two projections and the LLM tags.
#[derive(Debug, Clone)]
struct ModalityHead {
    /// (Q, W)
    queries: Tensor,
    router: (Linear, Linear),
    proj1: (Linear, Norm),
    proj2: (Linear, Norm),
    /// (1, D) each
    start_tag: Tensor,
    end_tag: Tensor,
}

/// The module: shared experts and one head per modality.
#[derive(Debug, Clone)]
pub struct Upm {
    config: UpmConfig,
    experts: Vec<Vec<ExpertBlock>>,
    heads: HashMap<Modality, ModalityHead>,
}

impl Upm {
    /// Reads (or, on a `VarMap`, creates) the module for encoder width `width` and LLM
    /// width `llm_width`, with a head for each of `modalities`.
    pub fn new(
        config: UpmConfig,
        width: usize,
        llm_width: usize,
        modalities: &[Modality],
        vb: VarBuilder,
    ) -> Result<Self> {
        if config.heads == 0 || !width.is_multiple_of(config.heads) || config.experts == 0 {
            candle_core::bail!(
                "UPM: width {width} must split into {} heads, with at least one expert",
                config.heads
            );
        }
        let experts = (0..config.experts)
            .map(|k| {
                (0..config.layers)
                    .map(|i| {
                        ExpertBlock::new(width, &config, vb.pp(format!("resample_layers.{k}.{i}")))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let mut heads = HashMap::new();
        for &m in modalities {
            let name = m.name();
            let router = vb.pp(format!("routers.{name}"));
            let (p1, p2) = (
                vb.pp(format!("clip_proj1.{name}")),
                vb.pp(format!("clip_proj2.{name}")),
            );
            let normal = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            };
            let unit = candle_nn::Init::Uniform { lo: 0.0, up: 1.0 };
            let tag = |which: &str| {
                vb.get_with_hints((1, 1, llm_width), &format!("{which}.{name}"), unit)?
                    .reshape((1, llm_width))
            };
            heads.insert(
                m,
                ModalityHead {
                    queries: vb
                        .get_with_hints(
                            (1, config.queries, width),
                            &format!("resample_tokens.{name}"),
                            normal,
                        )?
                        .reshape((config.queries, width))?,
                    router: (
                        linear(width, 4 * width, router.pp("fc1"))?,
                        linear(4 * width, config.experts, router.pp("fc2"))?,
                    ),
                    proj1: (
                        linear(width, width, p1.pp("0"))?,
                        Norm::new(width, p1.pp("1"))?,
                    ),
                    proj2: (
                        linear(width, llm_width, p2.pp("0"))?,
                        Norm::new(llm_width, p2.pp("1"))?,
                    ),
                    start_tag: tag("start_tag")?,
                    end_tag: tag("end_tag")?,
                },
            );
        }
        Ok(Self {
            config,
            experts,
            heads,
        })
    }

    pub fn config(&self) -> &UpmConfig {
        &self.config
    }

    fn head(&self, m: Modality) -> Result<&ModalityHead> {
        self.heads
            .get(&m)
            .ok_or_else(|| candle_core::Error::Msg(format!("the UPM has no {} head", m.name())))
    }

    /// Routing weights `(Q, K)` of a modality's queries (they depend on the queries
    /// alone, so they are the same for every input).
    pub fn routing(&self, m: Modality) -> Result<Tensor> {
        let head = self.head(m)?;
        let k = self.config.experts;
        if !self.config.soft_router {
            return Tensor::full(
                1.0 / k as f32,
                (self.config.queries, k),
                head.queries.device(),
            );
        }
        let (fc1, fc2) = &head.router;
        let w = candle_nn::ops::sigmoid(&fc2.forward(&fc1.forward(&head.queries)?.gelu_erf()?)?)?;
        w.broadcast_div(&w.sum_keepdim(D::Minus1)?)
    }

    /// Encoder features `(B, L, W)` of modality `m` → LLM input tokens `(B, Q, D)`.
    pub fn forward(&self, m: Modality, features: &Tensor) -> Result<Tensor> {
        let head = self.head(m)?;
        let b = features.dim(0)?;
        let q = self.config.queries;
        let x = head.proj1.1.forward(&head.proj1.0.forward(features)?)?;
        let queries = head.queries.unsqueeze(0)?.repeat((b, 1, 1))?;
        let x = Tensor::cat(&[&queries, &x], 1)?;
        let routing = self.routing(m)?;
        // Σ over experts from zero, as the reference's `sum(list)`.
        let mut mixed = queries.zeros_like()?;
        for (k, blocks) in self.experts.iter().enumerate() {
            let mut h = x.clone();
            for block in blocks {
                h = block.forward(&h)?;
            }
            let weight = routing.narrow(1, k, 1)?.unsqueeze(0)?;
            mixed = (mixed + h.narrow(1, 0, q)?.broadcast_mul(&weight)?)?;
        }
        head.proj2.1.forward(&head.proj2.0.forward(&mixed)?)
    }

    /// The LLM-width start and end tags of modality `m`, `(1, D)` each.
    pub fn tags(&self, m: Modality) -> Result<(&Tensor, &Tensor)> {
        let head = self.head(m)?;
        Ok((&head.start_tag, &head.end_tag))
    }
}
