//! The LLaMA-family decoder in candle tensors (f32 or f64), differentiable: what training
//! runs through. The projector's gradients flow back through the frozen LLM; LoRA
//! adapters or unfrozen weights get their own.
//!
//! The same architecture as [`super::LlamaModel`] (which is the fast, quantized,
//! inference-only path), here from dequantized GGUF weights or a Hugging Face
//! safetensors checkpoint. Frozen weights go through [`matmul_t`], whose backward pass
//! computes only the input's gradient; norms, rotary embeddings, the attention softmax
//! and the gated FFN are fused ops with their own backward passes ([`crate::train::fused`]).
//!
//! Reference: HF transformers' `LlamaModel` / `Qwen2Model` (eager attention).

use candle_core::{DType, Device, Tensor};

use super::config::{LlmConfig, RopeStyle};
use super::gguf::GgufFile;
use super::lora::{LoraConfig, LoraWeights};
use crate::train::frozen::matmul_t;
use crate::train::fused::{attention_softmax, rms_norm, rope, silu_mul};
use crate::{Error, Result};

/// A linear layer of the decoder; trains only if its weight is a variable (or through
/// its LoRA adapter).
#[derive(Debug, Clone)]
struct DenseLinear {
    /// (out, in)
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<Lora>,
}

/// `A` (r, in), `B` (out, r) (as created: f32 variables when training) and `α / r`.
#[derive(Debug, Clone)]
struct Lora {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl DenseLinear {
    /// `x`: (…, in) → (…, out)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some((&inp, lead)) = x.dims().split_last() else {
            return Err(Error::InvalidInput(
                "a linear layer needs a tensor, got a scalar".into(),
            ));
        };
        let rows: usize = lead.iter().product();
        let x2 = x.contiguous()?.reshape((rows, inp))?;
        let y = matmul_t(&x2, &self.weight)?;
        let y = match &self.lora {
            Some(l) => {
                // The variables themselves (f32), so optimizer updates are seen.
                let (a, b) = (l.a.to_dtype(x2.dtype())?, l.b.to_dtype(x2.dtype())?);
                (y + (x2.matmul(&a.t()?)?.matmul(&b.t()?)? * l.scale)?)?
            }
            None => y,
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(self.weight.dim(0)?);
        let y = y.reshape(out_dims)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

#[derive(Debug, Clone)]
struct DenseBlock {
    attn_norm: Tensor,
    q: DenseLinear,
    k: DenseLinear,
    v: DenseLinear,
    o: DenseLinear,
    ffn_norm: Tensor,
    gate: DenseLinear,
    up: DenseLinear,
    down: DenseLinear,
}

impl DenseBlock {
    /// The linear layer with GGUF name `target` (`attn_q`, `ffn_up`, …).
    fn layer(&self, target: &str) -> Result<&DenseLinear> {
        Ok(match target {
            "attn_q" => &self.q,
            "attn_k" => &self.k,
            "attn_v" => &self.v,
            "attn_output" => &self.o,
            "ffn_gate" => &self.gate,
            "ffn_up" => &self.up,
            "ffn_down" => &self.down,
            other => {
                return Err(Error::InvalidInput(format!(
                    "no layer `{other}` in a block"
                )));
            }
        })
    }

    fn layer_mut(&mut self, target: &str) -> Result<&mut DenseLinear> {
        Ok(match target {
            "attn_q" => &mut self.q,
            "attn_k" => &mut self.k,
            "attn_v" => &mut self.v,
            "attn_output" => &mut self.o,
            "ffn_gate" => &mut self.gate,
            "ffn_up" => &mut self.up,
            "ffn_down" => &mut self.down,
            other => {
                return Err(Error::InvalidInput(format!(
                    "no layer `{other}` in a block"
                )));
            }
        })
    }
}

/// A LLaMA / Qwen2 decoder over candle tensors.
#[derive(Debug, Clone)]
pub struct DenseLlama {
    config: LlmConfig,
    /// (vocab, hidden)
    embed: Tensor,
    /// (vocab, hidden); `None` when tied to `embed`.
    lm_head: Option<Tensor>,
    norm: Tensor,
    blocks: Vec<DenseBlock>,
    /// `rope_dim / 2` inverse frequencies.
    inv_freq: Vec<f64>,
    dtype: DType,
}

impl DenseLlama {
    /// Builds the decoder from tensors named as in GGUF (`token_embd.weight`,
    /// `blk.{i}.attn_q.weight`, …), converted to `dtype`.
    pub fn from_named(
        config: LlmConfig,
        dtype: DType,
        get: &mut dyn FnMut(&str) -> Result<Tensor>,
    ) -> Result<Self> {
        let c = &config;
        if c.rope_dim != c.head_dim {
            return Err(Error::InvalidInput(format!(
                "partial RoPE ({} of {} head dimensions) is not supported for training",
                c.rope_dim, c.head_dim
            )));
        }
        let (h, kv) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        let mut tensor = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = get(name)?;
            if t.dims() != shape {
                return Err(Error::InvalidInput(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(t.to_dtype(dtype)?)
        };
        let d = c.hidden_size;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let t = &mut tensor;
            blocks.push(DenseBlock {
                attn_norm: t(&n("attn_norm.weight"), &[d])?,
                q: dense_linear(t, &n("attn_q"), h, d, c.qkv_bias)?,
                k: dense_linear(t, &n("attn_k"), kv, d, c.qkv_bias)?,
                v: dense_linear(t, &n("attn_v"), kv, d, c.qkv_bias)?,
                o: dense_linear(t, &n("attn_output"), d, h, false)?,
                ffn_norm: t(&n("ffn_norm.weight"), &[d])?,
                gate: dense_linear(t, &n("ffn_gate"), c.ffn_dim, d, false)?,
                up: dense_linear(t, &n("ffn_up"), c.ffn_dim, d, false)?,
                down: dense_linear(t, &n("ffn_down"), d, c.ffn_dim, false)?,
            });
        }
        let embed = tensor("token_embd.weight", &[c.vocab_size, d])?;
        let lm_head = if c.tied_embeddings {
            None
        } else {
            Some(tensor("output.weight", &[c.vocab_size, d])?)
        };
        let norm = tensor("output_norm.weight", &[d])?;
        let pairs = c.rope_dim / 2;
        let inv_freq = (0..pairs)
            .map(|i| {
                c.rope_freq_scale as f64
                    / (c.rope_theta as f64).powf(2.0 * i as f64 / c.rope_dim as f64)
            })
            .collect();
        Ok(Self {
            config,
            embed,
            lm_head,
            norm,
            blocks,
            inv_freq,
            dtype,
        })
    }

    /// Dequantizes the weights of a GGUF file (whose resolved config is `config`).
    pub fn from_gguf(gguf: &mut GgufFile, config: LlmConfig, dtype: DType) -> Result<Self> {
        if gguf.has_tensor("rope_freqs.weight") {
            return Err(Error::model_file(
                gguf.path(),
                "RoPE frequency factors (LLaMA 3) are not supported for training",
            ));
        }
        let path = gguf.path().to_path_buf();
        Self::from_named(config, dtype, &mut |name| {
            gguf.tensor(name)?
                .dequantize(&Device::Cpu)
                .map_err(|e| Error::model_file(&path, format!("tensor `{name}`: {e}")))
        })
    }

    /// Reads a Hugging Face checkpoint's decoder under `prefix` of `vb` (e.g. `model.`
    /// for a `LlamaForCausalLM`; `lm_head.weight` is looked up under `head_prefix`).
    pub fn from_hf(
        config: LlmConfig,
        vb: &candle_nn::VarBuilder,
        prefix: &str,
        head_prefix: &str,
    ) -> Result<Self> {
        let dtype = vb.dtype();
        Self::from_named(config, dtype, &mut |name| {
            let hf = hf_name(name, prefix, head_prefix);
            Ok(vb.get_unchecked(&hf)?)
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Wraps the `config.targets` layers of every block in LoRA adapters whose `A` and
    /// `B` are created under `vb` (variables, when `vb` is backed by a `VarMap`), named
    /// as in [`LoraConfig::names`]. `A` starts random (±1/√in), `B` at zero.
    pub fn add_lora(&mut self, config: &LoraConfig, vb: &candle_nn::VarBuilder) -> Result<()> {
        config.validate()?;
        let scale = config.scale();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for target in &config.targets {
                let layer = block.layer_mut(target)?;
                let (out, inp) = layer.weight.dims2()?;
                let (a, b) = LoraConfig::names(i, target);
                let bound = (inp as f64).powf(-0.5);
                layer.lora = Some(Lora {
                    a: vb.get_with_hints(
                        (config.rank, inp),
                        &a,
                        candle_nn::Init::Uniform {
                            lo: -bound,
                            up: bound,
                        },
                    )?,
                    b: vb.get_with_hints((out, config.rank), &b, candle_nn::Init::Const(0.0))?,
                    scale,
                });
            }
        }
        Ok(())
    }

    /// The current values of the LoRA adapters (`None` without adapters).
    pub fn lora_weights(&self, config: &LoraConfig) -> Result<Option<LoraWeights>> {
        let mut tensors = std::collections::HashMap::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for target in &config.targets {
                if let Some(l) = &block.layer(target)?.lora {
                    let (a, b) = LoraConfig::names(i, target);
                    tensors.insert(a, l.a.to_dtype(DType::F32)?.detach());
                    tensors.insert(b, l.b.to_dtype(DType::F32)?.detach());
                }
            }
        }
        Ok((!tensors.is_empty()).then(|| LoraWeights {
            config: config.clone(),
            tensors,
        }))
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Token embeddings `(tokens.len(), hidden)` (constants: the table does not train).
    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.config.vocab_size
            )));
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        Ok(self.embed.index_select(&ids, 0)?.detach())
    }

    /// Runs input embeddings `(batch, seq, hidden)` from position 0 with causal attention
    /// and returns the final-normed hidden states `(batch, seq, hidden)`. Sequences may be
    /// right-padded: a position never attends to later ones.
    pub fn forward_embeds(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None)
    }

    /// Runs the next input embeddings `(1, seq, hidden)` after the positions `cache` holds
    /// (none at first), adds their keys and values to it and returns their final-normed
    /// hidden states: decoding without recomputing the prefix. Constants only: no
    /// gradients flow through the cache.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut DenseCache) -> Result<Tensor> {
        if x.dim(0)? != 1 {
            return Err(Error::InvalidInput(format!(
                "cached decoding runs one sequence at a time, not {}",
                x.dim(0)?
            )));
        }
        self.run(&x.detach(), Some(cache))
    }

    fn run(&self, x: &Tensor, mut cache: Option<&mut DenseCache>) -> Result<Tensor> {
        let (_, t, d) = x.dims3()?;
        if d != self.config.hidden_size {
            return Err(Error::InvalidInput(format!(
                "embeddings of width {d} given to a model of width {}",
                self.config.hidden_size
            )));
        }
        let start = cache.as_ref().map_or(0, |c| c.len);
        let (cos, sin) = self.rope_tables(start, t)?;
        let mut x = x.to_dtype(self.dtype)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let past = cache.as_deref_mut().map(|c| c.layer(i));
            x = self.block(block, &x, &cos, &sin, past)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        rms_norm(&x, &self.norm, self.config.rms_eps as f64)
    }

    /// Next-token logits `(n, vocab)` of hidden states `(n, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = DenseLinear {
            weight: self.lm_head.as_ref().unwrap_or(&self.embed).clone(),
            bias: None,
            lora: None,
        };
        head.forward(hidden)
    }

    /// One decoder layer over `x` (b, t, hidden); with `past`, the keys and values of the
    /// earlier positions, which the new ones are appended to.
    fn block(
        &self,
        w: &DenseBlock,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let n = rms_norm(x, &w.attn_norm, c.rms_eps as f64)?;
        let heads = |y: Tensor, count: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, count, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let interleaved = c.rope_style == RopeStyle::Interleaved;
        let q = rope(&heads(w.q.forward(&n)?, nh)?, cos, sin, interleaved)?;
        let mut k = rope(&heads(w.k.forward(&n)?, nkv)?, cos, sin, interleaved)?;
        let mut v = heads(w.v.forward(&n)?, nkv)?;
        if let Some(past) = past {
            if let Some((pk, pv)) = past.take() {
                k = Tensor::cat(&[&pk, &k], 2)?;
                v = Tensor::cat(&[&pv, &v], 2)?;
            }
            *past = Some((k.clone(), v.clone()));
        }
        let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
        let scale = 1.0 / (hd as f64).sqrt();
        let probs = attention_softmax(&q.matmul(&k.t()?)?, scale, true)?;
        let attn = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let x = (x + w.o.forward(&attn)?)?;
        let n = rms_norm(&x, &w.ffn_norm, c.rms_eps as f64)?;
        let ffn = silu_mul(&w.gate.forward(&n)?, &w.up.forward(&n)?)?;
        Ok((&x + w.down.forward(&ffn)?)?)
    }

    /// cos and sin of positions `start..start + t`: `(t, rope_dim / 2)` each.
    fn rope_tables(&self, start: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let pairs = self.inv_freq.len();
        let angles: Vec<f64> = (start..start + t)
            .flat_map(|p| self.inv_freq.iter().map(move |f| p as f64 * f))
            .collect();
        let table = |f: fn(f64) -> f64| -> Result<Tensor> {
            let values: Vec<f64> = angles.iter().map(|&a| f(a)).collect();
            Ok(Tensor::from_vec(values, (t, pairs), &Device::Cpu)?.to_dtype(self.dtype)?)
        };
        Ok((table(f64::cos)?, table(f64::sin)?))
    }
}

/// The keys and values a [`DenseLlama`] has computed, per layer, for
/// [`DenseLlama::forward_cached`].
#[derive(Debug, Default)]
pub struct DenseCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl DenseCache {
    /// The positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn layer(&mut self, i: usize) -> &mut Option<(Tensor, Tensor)> {
        if self.layers.len() <= i {
            self.layers.resize(i + 1, None);
        }
        &mut self.layers[i]
    }
}

/// The Hugging Face name of a GGUF-named decoder tensor.
fn hf_name(gguf: &str, prefix: &str, head_prefix: &str) -> String {
    match gguf {
        "token_embd.weight" => format!("{prefix}embed_tokens.weight"),
        "output_norm.weight" => format!("{prefix}norm.weight"),
        "output.weight" => format!("{head_prefix}lm_head.weight"),
        _ => {
            let Some(rest) = gguf.strip_prefix("blk.") else {
                return gguf.to_string();
            };
            let (layer, tensor) = rest.split_once('.').unwrap_or((rest, ""));
            let (module, kind) = tensor.rsplit_once('.').unwrap_or((tensor, ""));
            let hf_module = match module {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                other => other,
            };
            format!("{prefix}layers.{layer}.{hf_module}.{kind}")
        }
    }
}

/// Reads `{name}.weight` (out, inp) and, if `bias`, `{name}.bias`.
fn dense_linear(
    tensor: &mut impl FnMut(&str, &[usize]) -> Result<Tensor>,
    name: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<DenseLinear> {
    Ok(DenseLinear {
        weight: tensor(&format!("{name}.weight"), &[out, inp])?,
        bias: match bias {
            true => Some(tensor(&format!("{name}.bias"), &[out])?),
            false => None,
        },
        lora: None,
    })
}

/// `(b, kv_heads, t, hd)` → `(b, kv_heads · n, t, hd)`, each head repeated `n` times.
fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kvh, n, t, hd))?
        .reshape((b, kvh * n, t, hd))?)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::llm::Arch;

    fn tiny_config(rope_style: RopeStyle) -> LlmConfig {
        LlmConfig {
            arch: Arch::Qwen2,
            name: None,
            hidden_size: 8,
            n_layer: 2,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            ffn_dim: 12,
            context_length: 32,
            vocab_size: 11,
            rope_dim: 4,
            rope_theta: 10_000.0,
            rope_freq_scale: 1.0,
            rope_style,
            rms_eps: 1e-6,
            qkv_bias: true,
            tied_embeddings: true,
        }
    }

    /// The largest absolute difference between two f64 tensors of one shape.
    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f64>())
            .unwrap()
    }

    /// Deterministic values in (-0.5, 0.5) (an LCG: no dependence on rand's versions).
    pub(crate) fn values(n: usize, seed: &mut u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// A two-layer decoder with deterministic random weights (for tests).
    pub(crate) fn tiny_model(rope_style: RopeStyle) -> DenseLlama {
        let mut seed = 7;
        let c = tiny_config(rope_style);
        let (d, f, v) = (c.hidden_size, c.ffn_dim, c.vocab_size);
        let (h, kv) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        DenseLlama::from_named(c, DType::F64, &mut |name| {
            let layer_tensor = name.split('.').nth(2).unwrap_or("");
            let shape: Vec<usize> = match (name, layer_tensor) {
                ("token_embd.weight", _) => vec![v, d],
                ("output_norm.weight", _) => vec![d],
                (_, "attn_norm" | "ffn_norm") => vec![d],
                (n, "attn_q") if n.ends_with("bias") => vec![h],
                (n, "attn_k" | "attn_v") if n.ends_with("bias") => vec![kv],
                (_, "attn_q") => vec![h, d],
                (_, "attn_k" | "attn_v") => vec![kv, d],
                (_, "attn_output") => vec![d, h],
                (_, "ffn_gate" | "ffn_up") => vec![f, d],
                (_, "ffn_down") => vec![d, f],
                _ => panic!("unexpected tensor {name}"),
            };
            let n = shape.iter().product();
            let mut data = values(n, &mut seed);
            if name.ends_with("norm.weight") {
                data.iter_mut().for_each(|x| *x += 1.0);
            }
            Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
        })
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::test_support::{max_abs_diff, tiny_model, values};
    use super::*;

    /// Cross-entropy of the next tokens at some positions, as training uses it.
    fn loss(model: &DenseLlama, x: &Tensor) -> Tensor {
        let hidden = model.forward_embeds(x).unwrap();
        let rows = hidden.squeeze(0).unwrap();
        let picked = rows
            .index_select(&Tensor::new(&[1u32, 3, 4], &Device::Cpu).unwrap(), 0)
            .unwrap();
        let logits = model.logits(&picked).unwrap();
        let targets = Tensor::new(&[2u32, 9, 0], &Device::Cpu).unwrap();
        candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
    }

    /// Central differences of `loss` in each coordinate of `var`.
    fn numeric_grad(var: &Var, mut loss: impl FnMut() -> f64) -> Vec<f64> {
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let shape = var.shape().clone();
        let eps = 1e-5;
        (0..base.len())
            .map(|i| {
                let mut at = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss()
                };
                let g = (at(eps) - at(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(base.clone(), shape.clone(), &Device::Cpu).unwrap())
                    .unwrap();
                g
            })
            .collect()
    }

    fn assert_close(analytic: &[f64], numeric: &[f64]) {
        let scale = numeric.iter().fold(0f64, |m, g| m.max(g.abs()));
        assert!(scale > 1e-4, "gradient vanishes: {numeric:?}");
        for (a, n) in analytic.iter().zip(numeric) {
            assert!((a - n).abs() <= 1e-6 * scale.max(1.0), "{a} vs {n}");
        }
    }

    #[test]
    fn input_gradients_through_the_frozen_decoder_match_finite_differences() {
        for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
            let model = tiny_model(style);
            let mut seed = 3;
            let x = Var::from_vec(values(5 * 8, &mut seed), (1, 5, 8), &Device::Cpu).unwrap();
            let grads = loss(&model, x.as_tensor()).backward().unwrap();
            let analytic: Vec<f64> = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let numeric = numeric_grad(&x, || {
                loss(&model, x.as_tensor()).to_scalar::<f64>().unwrap()
            });
            assert_close(&analytic, &numeric);
            // Frozen weights get no gradient.
            assert!(grads.get(&model.blocks[0].q.weight).is_none());
        }
    }

    #[test]
    fn unfrozen_weights_get_gradients_too() {
        let mut model = tiny_model(RopeStyle::Neox);
        let w = Var::from_tensor(&model.blocks[1].gate.weight).unwrap();
        model.blocks[1].gate.weight = w.as_tensor().clone();
        let mut seed = 5;
        let x = Tensor::from_vec(values(5 * 8, &mut seed), (1, 5, 8), &Device::Cpu).unwrap();
        let grads = loss(&model, &x).backward().unwrap();
        let analytic: Vec<f64> = grads
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let numeric = numeric_grad(&w, || loss(&model, &x).to_scalar::<f64>().unwrap());
        assert_close(&analytic, &numeric);
    }

    #[test]
    fn cached_decoding_equals_the_full_forward_pass() {
        for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
            let model = tiny_model(style);
            let mut seed = 11;
            let x = Tensor::from_vec(values(6 * 8, &mut seed), (1, 6, 8), &Device::Cpu).unwrap();
            let full = model.forward_embeds(&x).unwrap();
            let mut cache = DenseCache::default();
            let mut parts = vec![
                model
                    .forward_cached(&x.narrow(1, 0, 3).unwrap(), &mut cache)
                    .unwrap(),
            ];
            for p in 3..6 {
                parts.push(
                    model
                        .forward_cached(&x.narrow(1, p, 1).unwrap(), &mut cache)
                        .unwrap(),
                );
            }
            assert_eq!(cache.len(), 6);
            let diff = max_abs_diff(&full, &Tensor::cat(&parts, 1).unwrap());
            assert!(diff < 1e-12, "{diff}");
        }
    }

    #[test]
    fn right_padding_does_not_change_earlier_positions() {
        let model = tiny_model(RopeStyle::Interleaved);
        let mut seed = 9;
        let x = Tensor::from_vec(values(6 * 8, &mut seed), (1, 6, 8), &Device::Cpu).unwrap();
        let full = model.forward_embeds(&x).unwrap();
        let short = model.forward_embeds(&x.narrow(1, 0, 4).unwrap()).unwrap();
        let diff = max_abs_diff(&full.narrow(1, 0, 4).unwrap(), &short);
        assert!(diff < 1e-12, "{diff}");
    }
}
