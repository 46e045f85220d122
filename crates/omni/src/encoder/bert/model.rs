//! The BERT encoder (HF `modeling_bert.py`: absolute positions, post-LayerNorm) on omni's
//! own kernels. Each layer is four matrix products over all tokens of the batch at once
//! (query/key/value fused into one), and everything between them (bias, attention,
//! activation, residual + LayerNorm) is one fused pass over the rows, split across threads.
//! Padded keys are skipped rather than masked with `finfo.min`: the same softmax, since
//! `exp(min - max)` is 0 in f32.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::config::BertConfig;
use crate::encoder::fused::{
    LayerNorm, Linear, Projection, attention, bias_activation, residual_norm, slice_of,
};
use crate::encoder::ops::Activation;
use crate::{Error, Result};

struct Layer {
    /// Query, key and value stacked: `[3·d, d]`.
    qkv: Linear,
    out: Linear,
    norm1: LayerNorm,
    up: Linear,
    down: Linear,
    norm2: LayerNorm,
}

/// A loaded BERT encoder.
pub(crate) struct BertEncoder {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    activation: Activation,
}

/// The tensors of a checkpoint, by name, read with errors that name the file.
struct Weights<'a> {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
    path: &'a Path,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let key = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .get(&key)
            .ok_or_else(|| Error::model_file(self.path, format!("no tensor `{key}`")))?;
        if t.dims() != shape {
            return Err(Error::model_file(
                self.path,
                format!(
                    "tensor `{key}` has shape {:?}, expected {shape:?}",
                    t.dims()
                ),
            ));
        }
        Ok(t.to_dtype(DType::F32)?)
    }

    fn vec(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.get(name, &[len])?.to_vec1()?)
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Linear::new(
            &self.get(&format!("{name}.weight"), &[out, inp])?,
            Some(&self.get(&format!("{name}.bias"), &[out])?),
        )
    }

    fn norm(&self, name: &str, d: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.vec(&format!("{name}.weight"), d)?,
            beta: self.vec(&format!("{name}.bias"), d)?,
            eps,
        })
    }
}

impl BertEncoder {
    /// Reads `model.safetensors` (HF key names, with or without a `bert.` prefix).
    pub(crate) fn load(path: &Path, config: &BertConfig, activation: Activation) -> Result<Self> {
        if !path.exists() {
            return Err(Error::model_file(
                path,
                "no such file (the model's weights)",
            ));
        }
        let tensors = crate::formats::safetensors::read_tensors(path, &Device::Cpu)?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let w = Weights {
            tensors,
            prefix,
            path,
        };
        let (d, inter) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps as f32;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let qkv_parts = ["query", "key", "value"]
                    .iter()
                    .map(|n| w.linear(&format!("{p}.attention.self.{n}"), d, d))
                    .collect::<Result<Vec<_>>>()?;
                let weights: Vec<Tensor> = qkv_parts
                    .iter()
                    .map(|l| l.weight_t.t())
                    .collect::<candle_core::Result<_>>()?;
                let qkv = Linear {
                    weight_t: Tensor::cat(&weights, 0)?.t()?,
                    bias: qkv_parts.iter().flat_map(|l| l.bias.clone()).collect(),
                };
                Ok(Layer {
                    qkv,
                    out: w.linear(&format!("{p}.attention.output.dense"), d, d)?,
                    norm1: w.norm(&format!("{p}.attention.output.LayerNorm"), d, eps)?,
                    up: w.linear(&format!("{p}.intermediate.dense"), inter, d)?,
                    down: w.linear(&format!("{p}.output.dense"), d, inter)?,
                    norm2: w.norm(&format!("{p}.output.LayerNorm"), d, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, d],
            )?,
            token_type: w.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, d],
            )?,
            norm: w.norm("embeddings.LayerNorm", d, eps)?,
            layers,
            heads: config.num_attention_heads,
            hidden: d,
            activation,
        })
    }

    /// Token states of a padded batch.
    ///
    /// # Shapes
    /// `ids`, `type_ids`: `b × s` row-major; `lens[i]` real tokens in row `i` → `[b, s, d]`.
    pub(crate) fn forward(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        lens: &[usize],
        seq: usize,
    ) -> Result<Tensor> {
        let (b, d) = (lens.len(), self.hidden);
        let rows = b * seq;
        let positions: Vec<u32> = (0..rows).map(|r| (r % seq) as u32).collect();
        let summed = (self.word.embedding(&Tensor::new(ids, &Device::Cpu)?)?
            + self
                .position
                .embedding(&Tensor::new(positions, &Device::Cpu)?)?
            + self
                .token_type
                .embedding(&Tensor::new(type_ids, &Device::Cpu)?)?)?;
        let zeros = vec![0f32; d];
        let mut x = slice_of(&summed, |s| residual_norm(s, &zeros, None, &self.norm, d))?;
        for layer in &self.layers {
            let xt = Tensor::from_vec(x, (rows, d), &Device::Cpu)?;
            let qkv = layer.qkv.product(&xt)?;
            let ctx = slice_of(&qkv, |s| {
                let part = |i: usize| Projection {
                    data: s,
                    stride: 3 * d,
                    offset: i * d,
                    bias: &layer.qkv.bias[i * d..(i + 1) * d],
                };
                attention(part(0), part(1), part(2), lens, seq, self.heads)
            })?;
            let a = layer
                .out
                .product(&Tensor::from_vec(ctx, (rows, d), &Device::Cpu)?)?;
            let h = slice_of(&a, |a| {
                slice_of(&xt, |x| {
                    residual_norm(a, &layer.out.bias, Some(x), &layer.norm1, d)
                })
            })??;
            let ht = Tensor::from_vec(h, (rows, d), &Device::Cpu)?;
            let u = layer.up.product(&ht)?;
            let g = slice_of(&u, |u| bias_activation(u, &layer.up.bias, self.activation))?;
            let inter = layer.up.bias.len();
            let o = layer
                .down
                .product(&Tensor::from_vec(g, (rows, inter), &Device::Cpu)?)?;
            x = slice_of(&o, |o| {
                slice_of(&ht, |h| {
                    residual_norm(o, &layer.down.bias, Some(h), &layer.norm2, d)
                })
            })??;
        }
        Ok(Tensor::from_vec(x, (b, seq, d), &Device::Cpu)?)
    }
}
