//! The Perceiver resampler: a fixed number of learned queries read the encoder features
//! by cross-attention, so every image or clip becomes the same number of LLM tokens
//! whatever its patch or frame count.
//!
//! Reference: Alayrac et al., "Flamingo" (2022), §2.1 and appendix A.1.1
//! (`PerceiverResampler`: the keys and values are the features *and* the latents, each
//! layer is attention then a feed-forward, both residual, with pre-LayerNorms);
//! Li et al., "BLIP-2" (2023) for the same idea as the Q-Former's learned queries.
//! Every op here is differentiable in candle (composite LayerNorm and softmax), so the
//! resampler trains like the MLP.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear, linear_no_bias};

use super::ProjectorConfig;
use super::norm::Norm;

/// One resampler layer: latents attend to `[features; latents]`, then a feed-forward.
#[derive(Debug, Clone)]
struct Layer {
    norm_media: Norm,
    norm_latents: Norm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    ff_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    heads: usize,
}

impl Layer {
    fn new(hidden: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let attn = vb.pp("attn");
        let ff = vb.pp("ff");
        Ok(Self {
            norm_media: Norm::new(hidden, attn.pp("norm_media"))?,
            norm_latents: Norm::new(hidden, attn.pp("norm_latents"))?,
            to_q: linear_no_bias(hidden, hidden, attn.pp("to_q"))?,
            to_k: linear_no_bias(hidden, hidden, attn.pp("to_k"))?,
            to_v: linear_no_bias(hidden, hidden, attn.pp("to_v"))?,
            to_out: linear_no_bias(hidden, hidden, attn.pp("to_out"))?,
            ff_norm: Norm::new(hidden, ff.pp("norm"))?,
            ff_in: linear(hidden, 4 * hidden, ff.pp("fc1"))?,
            ff_out: linear(4 * hidden, hidden, ff.pp("fc2"))?,
            heads,
        })
    }

    /// `media` (B, N, H), `latents` (B, Q, H) → new latents (B, Q, H).
    fn forward(&self, media: &Tensor, latents: &Tensor) -> Result<Tensor> {
        let (b, q_len, hidden) = latents.dims3()?;
        let media = self.norm_media.forward(media)?;
        let normed = self.norm_latents.forward(latents)?;
        let kv_input = Tensor::cat(&[&media, &normed], 1)?;
        let kv_len = kv_input.dim(1)?;
        let hd = hidden / self.heads;
        let split = |t: Tensor, len: usize| -> Result<Tensor> {
            t.reshape((b, len, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(self.to_q.forward(&normed)?, q_len)? * (hd as f64).powf(-0.5))?;
        let k = split(self.to_k.forward(&kv_input)?, kv_len)?;
        let v = split(self.to_v.forward(&kv_input)?, kv_len)?;
        let probs = candle_nn::ops::softmax(&q.matmul(&k.t()?)?, D::Minus1)?;
        let attended = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, q_len, hidden))?;
        let latents = (latents + self.to_out.forward(&attended)?)?;
        let ff = self.ff_out.forward(
            &self
                .ff_in
                .forward(&self.ff_norm.forward(&latents)?)?
                .gelu_erf()?,
        )?;
        latents + ff
    }
}

/// Learned queries, an input projection to the resampler's width, its layers, a final
/// norm and an output projection to the LLM's width.
#[derive(Debug, Clone)]
pub(super) struct Resampler {
    latents: Tensor,
    input: Linear,
    layers: Vec<Layer>,
    norm: Norm,
    output: Linear,
}

impl Resampler {
    pub(super) fn new(config: &ProjectorConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = config.hidden();
        let queries = config.queries();
        Ok(Self {
            latents: vb.get_with_hints(
                (queries, hidden),
                "latents",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            input: linear(config.input_dim, hidden, vb.pp("input"))?,
            layers: (0..config.layers())
                .map(|i| Layer::new(hidden, config.heads(), vb.pp(format!("layers.{i}"))))
                .collect::<Result<_>>()?,
            norm: Norm::new(hidden, vb.pp("norm"))?,
            output: linear(hidden, config.output_dim, vb.pp("output"))?,
        })
    }

    /// Every tensor, by name (for saving).
    pub(super) fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("latents".to_string(), self.latents.clone())];
        let mut add_linear = |name: &str, l: &Linear| {
            out.push((format!("{name}.weight"), l.weight().clone()));
            if let Some(b) = l.bias() {
                out.push((format!("{name}.bias"), b.clone()));
            }
        };
        add_linear("input", &self.input);
        add_linear("output", &self.output);
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("layers.{i}");
            add_linear(&format!("{p}.attn.to_q"), &layer.to_q);
            add_linear(&format!("{p}.attn.to_k"), &layer.to_k);
            add_linear(&format!("{p}.attn.to_v"), &layer.to_v);
            add_linear(&format!("{p}.attn.to_out"), &layer.to_out);
            add_linear(&format!("{p}.ff.fc1"), &layer.ff_in);
            add_linear(&format!("{p}.ff.fc2"), &layer.ff_out);
        }
        let mut add_norm = |name: String, n: &Norm| {
            out.push((format!("{name}.weight"), n.weight.clone()));
            out.push((format!("{name}.bias"), n.bias.clone()));
        };
        add_norm("norm".into(), &self.norm);
        for (i, layer) in self.layers.iter().enumerate() {
            add_norm(format!("layers.{i}.attn.norm_media"), &layer.norm_media);
            add_norm(format!("layers.{i}.attn.norm_latents"), &layer.norm_latents);
            add_norm(format!("layers.{i}.ff.norm"), &layer.ff_norm);
        }
        out
    }

    /// `x` (B, N, input_dim) → (B, queries, output_dim).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let media = self.input.forward(x)?;
        let (q, h) = self.latents.dims2()?;
        let mut latents = self.latents.unsqueeze(0)?.broadcast_as((b, q, h))?;
        for layer in &self.layers {
            latents = layer.forward(&media, &latents)?;
        }
        self.output.forward(&self.norm.forward(&latents)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::super::{Projector, ProjectorKind};
    use super::*;

    fn config() -> ProjectorConfig {
        ProjectorConfig {
            hidden_dim: Some(8),
            queries: Some(3),
            layers: Some(2),
            heads: Some(2),
            ..ProjectorConfig::new(ProjectorKind::Resampler, 5, 6)
        }
    }

    fn features(rows: usize) -> Tensor {
        let values: Vec<f32> = (0..rows * 5)
            .map(|i| ((i * 7 % 11) as f32) / 5.0 - 1.0)
            .collect();
        Tensor::from_vec(values, (rows, 5), &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn any_number_of_features_gives_the_query_count() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let p = Projector::new(config(), vb).unwrap();
        for rows in [1, 4, 9] {
            assert_eq!(p.forward(&features(rows)).unwrap().dims(), &[3, 6]);
        }
        let batched = features(4).unsqueeze(0).unwrap().repeat((2, 1, 1)).unwrap();
        assert_eq!(p.forward(&batched).unwrap().dims(), &[2, 3, 6]);
        // Cross-attention has no notion of order: permuted features, same tokens.
        let x = features(4);
        let permuted = x
            .index_select(&Tensor::new(&[2u32, 0, 3, 1], &Device::Cpu).unwrap(), 0)
            .unwrap();
        let diff = max_diff(&p.forward(&x).unwrap(), &p.forward(&permuted).unwrap());
        assert!(diff < 1e-5, "{diff}");
        let bad = ProjectorConfig {
            heads: Some(3),
            ..config()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn saved_and_loaded_it_computes_the_same() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let p = Projector::new(config(), vb).unwrap();
        // Every variable is saved, under the name it was created with.
        let saved: std::collections::BTreeSet<String> = Resampler::new(
            &config(),
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        )
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
        let created: std::collections::BTreeSet<String> =
            map.data().lock().unwrap().keys().cloned().collect();
        assert_eq!(saved, created);
        let dir = std::env::temp_dir().join(format!("omni-resampler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        p.save(&dir).unwrap();
        let loaded = Projector::load(&dir, &Device::Cpu).unwrap();
        let x = features(5);
        assert_eq!(
            max_diff(&p.forward(&x).unwrap(), &loaded.forward(&x).unwrap()),
            0.0
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
