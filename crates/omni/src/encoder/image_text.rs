//! Image–text contrastive models behind one type, the family picked from the checkpoint's
//! `config.json` `model_type` (`clip`, `siglip`).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

pub use super::clip::Towers;
use super::clip::{ClipModel, read_config};
use super::siglip::SiglipModel;
use crate::modality::image::ImageProcessor;
use crate::{Error, Result};

/// A CLIP or SigLIP model directory, loaded.
#[derive(Debug, Clone)]
pub enum ImageTextModel {
    Clip(ClipModel),
    Siglip(SiglipModel),
}

#[derive(Deserialize)]
struct Probe {
    model_type: Option<String>,
}

impl ImageTextModel {
    /// Loads `dir` with both towers, choosing the family from `config.json`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_towers(dir, device, Towers::Both)
    }

    /// Loads only the `towers` asked for; using a tower left out is an error.
    pub fn load_towers(dir: &Path, device: &Device, towers: Towers) -> Result<Self> {
        let probe: Probe = read_config(dir)?;
        match probe.model_type.as_deref() {
            Some("clip") => Ok(Self::Clip(ClipModel::load_towers(dir, device, towers)?)),
            Some("siglip") => Ok(Self::Siglip(SiglipModel::load_towers(dir, device, towers)?)),
            other => Err(Error::UnsupportedArchitecture {
                path: dir.join("config.json"),
                arch: other.unwrap_or("(no model_type)").to_string(),
                supported: "clip, siglip".into(),
            }),
        }
    }

    /// Size of the shared embedding space.
    pub fn dim(&self) -> usize {
        match self {
            Self::Clip(m) => m.dim(),
            Self::Siglip(m) => m.dim(),
        }
    }

    pub fn processor(&self) -> &ImageProcessor {
        match self {
            Self::Clip(m) => m.processor(),
            Self::Siglip(m) => m.processor(),
        }
    }

    /// `(logit_scale, logit_bias)`: logits are `exp(scale) * cos + bias` (bias 0 for CLIP).
    pub fn logit_params(&self) -> (f32, f32) {
        match self {
            Self::Clip(m) => (m.logit_scale(), 0.0),
            Self::Siglip(m) => (m.logit_scale(), m.logit_bias()),
        }
    }

    /// `(N, 3, S, S)` pixels → `(N, dim)` embeddings.
    pub fn image_embeddings(&self, pixels: &Tensor, normalize: bool) -> Result<Tensor> {
        match self {
            Self::Clip(m) => m.image_embeddings(pixels, normalize),
            Self::Siglip(m) => m.image_embeddings(pixels, normalize),
        }
    }

    /// Texts → `(N, dim)` embeddings.
    pub fn text_embeddings(&self, texts: &[&str], normalize: bool) -> Result<Tensor> {
        match self {
            Self::Clip(m) => m.text_embeddings(texts, normalize),
            Self::Siglip(m) => m.text_embeddings(texts, normalize),
        }
    }

    /// Image files → `(N, dim)` embeddings.
    pub fn embed_image_files<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        normalize: bool,
    ) -> Result<Tensor> {
        match self {
            Self::Clip(m) => m.embed_image_files(paths, normalize),
            Self::Siglip(m) => m.embed_image_files(paths, normalize),
        }
    }
}
