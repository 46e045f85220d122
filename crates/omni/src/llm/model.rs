//! The LLaMA-family decoder (LLaMA, SmolLM, Qwen2) over GGUF weights.
//!
//! Paper: Touvron et al., "LLaMA: Open and Efficient Foundation Language Models" (2023);
//! Qwen2 adds q/k/v biases and NeoX-style RoPE. Reference implementation: llama.cpp's
//! `llm_build_llama` / `llm_build_qwen2` (src/models/) and its CPU ops, which this matches
//! op by op (RMSNorm with an f64 sum, RoPE angles by repeated multiplication, f16 KV cache,
//! 8-bit quantized activations in the quantized matmuls) so that greedy decoding gives the
//! same tokens. candle-transformers' `quantized_llama.rs` / `quantized_qwen2.rs` are the
//! Rust references; unlike them the weights are immutable and the cache is passed in.
//!
//! Each block: `x += Wo·Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n)` with `n = RMSNorm(x)`, then
//! `x += W_down·(SiLU(W_gate·n) ⊙ W_up·n)` with `n = RMSNorm(x)`; logits
//! `= W_out·RMSNorm(x)` with `W_out` the token embeddings when tied.

use half::slice::HalfFloatSliceExt;

use super::attention::{AttnShape, attention};
use super::config::{LlmConfig, RopeStyle};
use super::gguf::GgufFile;
use super::kv_cache::KvCache;
use super::lora::LoraWeights;
use super::quant::{QActs, QLinear, matmul_many};
use super::vec;
use crate::{Error, Result};

/// One transformer block's weights.
#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    wq: QLinear,
    wk: QLinear,
    wv: QLinear,
    /// q, k, v biases (Qwen2).
    bias: Option<[Vec<f32>; 3]>,
    wo: QLinear,
    ffn_norm: Vec<f32>,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
}

/// Scratch buffers of one sequence's forward passes (kept in its [`KvCache`]).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    rope: Vec<f32>,
    acts: QActs,
}

/// A LLaMA-family decoder with immutable weights.
#[derive(Debug)]
pub struct LlamaModel {
    config: LlmConfig,
    embed: QLinear,
    /// `None` when tied to `embed`.
    output: Option<QLinear>,
    output_norm: Vec<f32>,
    blocks: Vec<Block>,
    /// Per-pair RoPE frequency divisors (`rope_freqs.weight`, LLaMA 3), if any.
    rope_freqs: Option<Vec<f32>>,
}

impl LlamaModel {
    /// Loads the weights of `gguf`, whose resolved config is `config`.
    pub fn load(gguf: &mut GgufFile, config: LlmConfig) -> Result<Self> {
        let c = &config;
        let (h, kv) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        let embed = linear(gguf, "token_embd.weight", c.vocab_size, c.hidden_size)?;
        let output = if c.tied_embeddings {
            None
        } else {
            Some(linear(gguf, "output.weight", c.vocab_size, c.hidden_size)?)
        };
        let output_norm = gguf.tensor_f32("output_norm.weight", c.hidden_size)?;
        let rope_freqs = if gguf.has_tensor("rope_freqs.weight") {
            Some(gguf.tensor_f32("rope_freqs.weight", c.rope_dim / 2)?)
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let name = |s: &str| format!("blk.{i}.{s}");
            let bias = if c.qkv_bias {
                Some([
                    gguf.tensor_f32(&name("attn_q.bias"), h)?,
                    gguf.tensor_f32(&name("attn_k.bias"), kv)?,
                    gguf.tensor_f32(&name("attn_v.bias"), kv)?,
                ])
            } else {
                None
            };
            blocks.push(Block {
                attn_norm: gguf.tensor_f32(&name("attn_norm.weight"), c.hidden_size)?,
                wq: linear(gguf, &name("attn_q.weight"), h, c.hidden_size)?,
                wk: linear(gguf, &name("attn_k.weight"), kv, c.hidden_size)?,
                wv: linear(gguf, &name("attn_v.weight"), kv, c.hidden_size)?,
                bias,
                wo: linear(gguf, &name("attn_output.weight"), c.hidden_size, h)?,
                ffn_norm: gguf.tensor_f32(&name("ffn_norm.weight"), c.hidden_size)?,
                gate: linear(gguf, &name("ffn_gate.weight"), c.ffn_dim, c.hidden_size)?,
                up: linear(gguf, &name("ffn_up.weight"), c.ffn_dim, c.hidden_size)?,
                down: linear(gguf, &name("ffn_down.weight"), c.hidden_size, c.ffn_dim)?,
            });
        }
        Ok(Self {
            config,
            embed,
            output,
            output_norm,
            blocks,
            rope_freqs,
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Folds trained LoRA adapters into the weights (`W + (α / r) B A`, each changed
    /// layer re-quantized to Q8_0).
    pub fn merge_lora(&mut self, lora: &LoraWeights) -> Result<()> {
        lora.config.validate()?;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for target in &lora.config.targets {
                let Some(delta) = lora.delta(i, target)? else {
                    continue;
                };
                let layer = match target.as_str() {
                    "attn_q" => &mut block.wq,
                    "attn_k" => &mut block.wk,
                    "attn_v" => &mut block.wv,
                    "attn_output" => &mut block.wo,
                    "ffn_gate" => &mut block.gate,
                    "ffn_up" => &mut block.up,
                    _ => &mut block.down,
                };
                if delta.dims() != [layer.n(), layer.k()] {
                    return Err(Error::InvalidInput(format!(
                        "the LoRA adapter of blk.{i}.{target} is {:?}, the layer [{}, {}]",
                        delta.dims(),
                        layer.n(),
                        layer.k()
                    )));
                }
                *layer = layer.add(&delta)?;
            }
        }
        Ok(())
    }

    /// Token embeddings, `tokens.len() × hidden_size`.
    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.config.vocab_size
            )));
        }
        let mut out = vec![0f32; tokens.len() * self.config.hidden_size];
        self.embed.rows(tokens, &mut out)?;
        Ok(out)
    }

    /// Runs `hidden` (`seq × hidden_size` input embeddings) at positions
    /// `cache.len()..cache.len() + seq`, appends their keys/values to `cache` and returns
    /// the logits of the last position (`vocab_size`).
    pub fn forward_hidden(&self, hidden: &[f32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let d = self.config.hidden_size;
        if hidden.is_empty() || !hidden.len().is_multiple_of(d) {
            return Err(Error::InvalidInput(format!(
                "input embeddings of {} values are not a non-empty sequence of {d}-dim vectors",
                hidden.len()
            )));
        }
        let seq = hidden.len() / d;
        let mut logits = self.forward_segments(hidden, &mut [cache], &[seq])?;
        Ok(logits.remove(0))
    }

    /// One decoding step of several sequences at once (continuous batching): token
    /// `tokens[i]` runs at the next position of `caches[i]`. The weights are read once
    /// for the whole batch. Returns each sequence's next-token logits.
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() || tokens.len() != caches.len() {
            return Err(Error::InvalidInput(format!(
                "a batch of {} tokens for {} sequences",
                tokens.len(),
                caches.len()
            )));
        }
        let hidden = self.embed_tokens(tokens)?;
        self.forward_segments(&hidden, caches, &vec![1; tokens.len()])
    }

    /// Runs consecutive row segments of `hidden`, segment `i` (`lens[i]` rows) at the next
    /// positions of `caches[i]`; returns the logits of each segment's last row.
    fn forward_segments(
        &self,
        hidden: &[f32],
        caches: &mut [&mut KvCache],
        lens: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let d = c.hidden_size;
        for (cache, &len) in caches.iter().zip(lens) {
            if cache.len() + len > cache.capacity() {
                return Err(Error::ContextOverflow {
                    tokens: cache.len() + len,
                    context: cache.capacity(),
                });
            }
        }
        let rows: usize = lens.iter().sum();
        let (h, kv) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        let mut s = std::mem::take(&mut caches[0].scratch);
        s.x.clear();
        s.x.extend_from_slice(hidden);
        for buf in [&mut s.xn, &mut s.o] {
            buf.resize(rows * d, 0.0);
        }
        s.q.resize(rows * h, 0.0);
        s.attn.resize(rows * h, 0.0);
        s.k.resize(rows * kv, 0.0);
        s.v.resize(rows * kv, 0.0);
        s.gate.resize(rows * c.ffn_dim, 0.0);
        s.up.resize(rows * c.ffn_dim, 0.0);
        s.rope.clear();
        let starts: Vec<usize> = caches.iter().map(|cache| cache.len()).collect();
        for (&start, &len) in starts.iter().zip(lens) {
            self.rope_table(start, len, &mut s.rope);
        }

        let result = self.run_blocks(&mut s, caches, &starts, lens);
        let logits = result.and_then(|()| {
            // Only each segment's last position's logits are needed.
            let n = lens.len();
            let mut end = 0;
            for (i, &len) in lens.iter().enumerate() {
                end += len;
                let last = &s.x[(end - 1) * d..end * d];
                rms_norm(
                    last,
                    &self.output_norm,
                    c.rms_eps,
                    &mut s.xn[i * d..(i + 1) * d],
                );
            }
            let head = self.output.as_ref().unwrap_or(&self.embed);
            let mut logits = vec![0f32; n * c.vocab_size];
            matmul_many(&[head], &s.xn[..n * d], n, &mut s.acts, &mut [&mut logits])?;
            Ok(logits
                .chunks(c.vocab_size)
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>())
        });
        caches[0].scratch = s;
        if logits.is_ok() {
            for ((cache, start), len) in caches.iter_mut().zip(starts).zip(lens) {
                cache.set_len(start + len);
            }
        }
        logits
    }

    fn run_blocks(
        &self,
        s: &mut Scratch,
        caches: &mut [&mut KvCache],
        starts: &[usize],
        lens: &[usize],
    ) -> Result<()> {
        let c = &self.config;
        let d = c.hidden_size;
        let (h, kv) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        let rows: usize = lens.iter().sum();
        for (l, b) in self.blocks.iter().enumerate() {
            for i in 0..rows {
                rms_norm(
                    &s.x[i * d..(i + 1) * d],
                    &b.attn_norm,
                    c.rms_eps,
                    &mut s.xn[i * d..(i + 1) * d],
                );
            }
            matmul_many(
                &[&b.wq, &b.wk, &b.wv],
                &s.xn,
                rows,
                &mut s.acts,
                &mut [&mut s.q, &mut s.k, &mut s.v],
            )?;
            if let Some([bq, bk, bv]) = &b.bias {
                add_rows(&mut s.q, bq);
                add_rows(&mut s.k, bk);
                add_rows(&mut s.v, bv);
            }
            self.rope(&mut s.q, c.n_head, &s.rope);
            self.rope(&mut s.k, c.n_kv_head, &s.rope);
            let mut row = 0;
            for ((cache, &start), &seq) in caches.iter_mut().zip(starts).zip(lens) {
                let (r0, r1) = (row, row + seq);
                store_kv(
                    cache,
                    l,
                    start,
                    &s.k[r0 * kv..r1 * kv],
                    &s.v[r0 * kv..r1 * kv],
                    kv,
                );
                let shape = AttnShape {
                    n_head: c.n_head,
                    n_kv_head: c.n_kv_head,
                    head_dim: c.head_dim,
                    start,
                    seq,
                };
                attention(
                    &mut s.q[r0 * h..r1 * h],
                    cache,
                    l,
                    shape,
                    &mut s.attn[r0 * h..r1 * h],
                );
                row = r1;
            }
            matmul_many(&[&b.wo], &s.attn, rows, &mut s.acts, &mut [&mut s.o])?;
            add_in_place(&mut s.x, &s.o);

            for i in 0..rows {
                rms_norm(
                    &s.x[i * d..(i + 1) * d],
                    &b.ffn_norm,
                    c.rms_eps,
                    &mut s.xn[i * d..(i + 1) * d],
                );
            }
            matmul_many(
                &[&b.gate, &b.up],
                &s.xn,
                rows,
                &mut s.acts,
                &mut [&mut s.gate, &mut s.up],
            )?;
            vec::swiglu(&mut s.gate, &s.up);
            matmul_many(&[&b.down], &s.gate, rows, &mut s.acts, &mut [&mut s.o])?;
            add_in_place(&mut s.x, &s.o);
        }
        Ok(())
    }

    /// Appends cos/sin for positions `start..start + seq`, `rope_dim / 2` pairs each, as
    /// ggml's `ggml_rope_cache_init`: θ starts at the position and is multiplied by
    /// `base^(-2/rope_dim)` pair after pair.
    fn rope_table(&self, start: usize, seq: usize, table: &mut Vec<f32>) {
        let c = &self.config;
        let pairs = c.rope_dim / 2;
        let theta_scale = c.rope_theta.powf(-2.0 / c.rope_dim as f32);
        for p in start..start + seq {
            let mut theta = p as f32;
            for i in 0..pairs {
                let ff = self.rope_freqs.as_ref().map_or(1.0, |f| f[i]);
                let t = c.rope_freq_scale * (theta / ff);
                table.push(t.cos());
                table.push(t.sin());
                theta *= theta_scale;
            }
        }
    }

    /// Rotates the first `rope_dim` dimensions of each of `heads` heads per position.
    fn rope(&self, x: &mut [f32], heads: usize, table: &[f32]) {
        let c = &self.config;
        let (hd, n) = (c.head_dim, c.rope_dim);
        for (p, row) in x.chunks_mut(heads * hd).enumerate() {
            let cs = &table[p * n..(p + 1) * n];
            for head in row.chunks_mut(hd) {
                for i in 0..n / 2 {
                    let (cos, sin) = (cs[2 * i], cs[2 * i + 1]);
                    let (a, b) = match c.rope_style {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + n / 2),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    // As GCC contracts ggml's `x0*cos - x1*sin`, `x0*sin + x1*cos`.
                    head[a] = x0.mul_add(cos, -(x1 * sin));
                    head[b] = x0.mul_add(sin, x1 * cos);
                }
            }
        }
    }
}

/// Reads a GGUF matrix and checks it is `rows × cols`.
fn linear(gguf: &mut GgufFile, name: &str, rows: usize, cols: usize) -> Result<QLinear> {
    let t = gguf.tensor(name)?;
    let dims = t.shape().dims().to_vec();
    if dims != [rows, cols] {
        return Err(Error::model_file(
            gguf.path(),
            format!("tensor `{name}` has shape {dims:?}, expected [{rows}, {cols}]"),
        ));
    }
    QLinear::from_qtensor(t)
        .map_err(|e| Error::model_file(gguf.path(), format!("tensor `{name}`: {e}")))
}

/// ggml's `rms_norm` then `mul`: `y = (x / sqrt(mean(x²) + eps)) · w`, the sum in f64.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = (x * scale) * w;
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds `bias` to every row of `x`.
fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

/// Stores `seq` positions of keys and values (`seq × kv`, head-major inside a position)
/// in layer `layer` of the cache at positions `start..`, rounded to f16.
fn store_kv(cache: &mut KvCache, layer: usize, start: usize, k: &[f32], v: &[f32], kv: usize) {
    let n_kv_head = cache.n_kv_head();
    let hd = kv / n_kv_head;
    for (i, (krow, vrow)) in k.chunks(kv).zip(v.chunks(kv)).enumerate() {
        let pos = start + i;
        for g in 0..n_kv_head {
            let at = cache.k_offset(g, pos);
            cache.k[layer][at..at + hd].convert_from_f32_slice(&krow[g * hd..(g + 1) * hd]);
            for d in 0..hd {
                let at = cache.v_offset(g, d) + pos;
                cache.v[layer][at] = half::f16::from_f32(vrow[g * hd + d]);
            }
        }
    }
}
