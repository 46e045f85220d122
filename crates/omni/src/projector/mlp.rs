//! The projector of any kind. Linear and MLP projectors keep LLaVA's weight names
//! (`weight`/`bias` for `linear`; `0.*` and `2.*` for the `nn.Sequential(Linear, GELU,
//! Linear)` of `mlp2x_gelu`), so LLaVA-family projector checkpoints load as they are;
//! the resampler is in [`super::resampler`].
//!
//! Reference: Liu et al., "Visual Instruction Tuning" (2023) and "Improved Baselines with
//! Visual Instruction Tuning" (2024); haotian-liu/LLaVA `llava/model/multimodal_projector`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::resampler::Resampler;
use super::{ProjectorConfig, ProjectorKind};
use crate::{Error, Result};

/// A projector, built from a [`VarBuilder`] (fresh variables for training, or a
/// safetensors file for inference: the same code either way).
#[derive(Debug, Clone)]
pub struct Projector {
    config: ProjectorConfig,
    layers: Layers,
}

#[derive(Debug, Clone)]
enum Layers {
    Linear(Linear),
    Mlp(Linear, Linear),
    Resampler(Box<Resampler>),
}

impl Projector {
    /// Builds the projector's layers under `vb` (initialised like PyTorch's `nn.Linear`
    /// when `vb` creates variables).
    pub fn new(config: ProjectorConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_names(config, vb, ["0", "2"])
    }

    /// As [`Self::new`], with an MLP's two layers under `names` (transformers'
    /// `LlavaMultiModalProjector` calls them `linear_1` and `linear_2`).
    pub fn with_names(config: ProjectorConfig, vb: VarBuilder, names: [&str; 2]) -> Result<Self> {
        config.validate()?;
        let layers = match config.kind {
            ProjectorKind::Linear => {
                Layers::Linear(candle_nn::linear(config.input_dim, config.output_dim, vb)?)
            }
            ProjectorKind::Mlp2xGelu => Layers::Mlp(
                candle_nn::linear(config.input_dim, config.hidden(), vb.pp(names[0]))?,
                candle_nn::linear(config.hidden(), config.output_dim, vb.pp(names[1]))?,
            ),
            ProjectorKind::Resampler => Layers::Resampler(Box::new(Resampler::new(&config, vb)?)),
        };
        Ok(Self { config, layers })
    }

    /// Loads `projector.json` and `model.safetensors` from a checkpoint directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = ProjectorConfig::load(&dir.join("projector.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::model_file(&weights, "missing projector weights"));
        }
        // SAFETY: the file is mapped read-only and not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| Error::model_file(&weights, e.to_string()))?;
        Self::new(config, vb).map_err(|e| Error::model_file(&weights, e.to_string()))
    }

    /// Saves `projector.json` and `model.safetensors` (f32) in `dir`: what
    /// [`Self::load`] reads.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let weights: std::collections::HashMap<String, Tensor> = match &self.layers {
            Layers::Linear(l) => linear_tensors(l, ""),
            Layers::Mlp(a, b) => {
                let mut all = linear_tensors(a, "0.");
                all.extend(linear_tensors(b, "2."));
                all
            }
            Layers::Resampler(r) => r.tensors().into_iter().collect(),
        };
        let weights = weights
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?.detach())))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let path = dir.join("model.safetensors");
        candle_core::safetensors::save(&weights, &path)
            .map_err(|e| Error::model_file(&path, e.to_string()))?;
        let json = dir.join("projector.json");
        let text = serde_json::to_string_pretty(&self.config)
            .map_err(|e| Error::InvalidInput(format!("projector config: {e}")))?;
        std::fs::write(&json, text + "\n").map_err(|e| Error::io(&json, e))
    }

    /// Its shape.
    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// Projects features.
    ///
    /// # Shapes
    /// Linear and MLP: `x` (…, input_dim) → (…, output_dim). Resampler: `x`
    /// (tokens, input_dim) → (queries, output_dim), or batched (B, tokens, input_dim) →
    /// (B, queries, output_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.layers {
            Layers::Linear(l) => l.forward(x)?,
            Layers::Mlp(a, b) => b.forward(&a.forward(x)?.gelu_erf()?)?,
            Layers::Resampler(r) => match x.rank() {
                2 => r.forward(&x.unsqueeze(0)?)?.squeeze(0)?,
                3 => r.forward(x)?,
                rank => {
                    return Err(Error::InvalidInput(format!(
                        "a resampler reads (tokens, dim) or (batch, tokens, dim) features, \
                         got rank {rank}"
                    )));
                }
            },
        })
    }
}

fn linear_tensors(l: &Linear, prefix: &str) -> std::collections::HashMap<String, Tensor> {
    let mut out =
        std::collections::HashMap::from([(format!("{prefix}weight"), l.weight().clone())]);
    if let Some(b) = l.bias() {
        out.insert(format!("{prefix}bias"), b.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn shapes_and_names() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let config = ProjectorConfig {
            hidden_dim: Some(5),
            ..ProjectorConfig::new(ProjectorKind::Mlp2xGelu, 6, 4)
        };
        let p = Projector::new(config, vb).unwrap();
        let y = p
            .forward(&Tensor::ones((2, 3, 6), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[2, 3, 4]);
        let mut names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    }
}
