//! SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"): CLIP-style
//! image and text towers trained with a pairwise sigmoid loss, so a pair's probability is
//! `sigmoid(exp(logit_scale) * cos + logit_bias)`. Loaded from a Hugging Face model
//! directory (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`); matches transformers' `SiglipModel.get_image_features` /
//! `get_text_features` (parity: `tests/test_clip.rs`, fixtures from
//! `scripts/make_clip_fixtures.py`).

mod config;
mod text;
mod vision;

use std::path::Path;

use candle_core::{Device, Tensor};

pub use config::{SiglipConfig, SiglipTextConfig, SiglipVisionConfig};
pub use text::SiglipTextTransformer;
pub use vision::SiglipVisionTransformer;

use crate::encoder::clip::{
    Padding, TextTokenizer, Towers, image_processor, l2_normalize, load_weights, read_config,
    scalar,
};
use crate::modality::image::ImageProcessor;
use crate::{Error, Result};

/// A SigLIP model with its tokenizer and image processor.
#[derive(Debug, Clone)]
pub struct SiglipModel {
    config: SiglipConfig,
    vision: Option<SiglipVisionTransformer>,
    text: Option<SiglipTextTransformer>,
    logit_scale: f32,
    logit_bias: f32,
    tokenizer: TextTokenizer,
    processor: ImageProcessor,
    device: Device,
}

impl SiglipModel {
    /// Loads a transformers `SiglipModel` directory, both towers.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_towers(dir, device, Towers::Both)
    }

    /// Loads a transformers `SiglipModel` directory, only the towers asked for.
    pub fn load_towers(dir: &Path, device: &Device, towers: Towers) -> Result<Self> {
        let config: SiglipConfig = read_config(dir)?;
        let processor = image_processor(dir, config.vision_config.image_size)?;
        let tc = &config.text_config;
        if tc.projection() != config.vision_config.hidden_size {
            return Err(Error::model_file(
                dir.join("config.json"),
                format!(
                    "text projection_size {} differs from the vision hidden_size {}",
                    tc.projection(),
                    config.vision_config.hidden_size
                ),
            ));
        }
        let tokenizer = TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            tc.max_position_embeddings,
            tc.vocab_size,
            tc.pad_token_id,
            Padding::MaxLength(tc.max_position_embeddings),
        )?;
        let (vb, weights) = load_weights(dir, device, towers)?;
        let build = || -> candle_core::Result<_> {
            let vision = if towers.image() {
                Some(SiglipVisionTransformer::new(
                    &config.vision_config,
                    vb.pp("vision_model"),
                )?)
            } else {
                None
            };
            let text = if towers.text() {
                Some(SiglipTextTransformer::new(tc, vb.pp("text_model"))?)
            } else {
                None
            };
            Ok((
                vision,
                text,
                scalar(&vb, "logit_scale")?,
                scalar(&vb, "logit_bias")?,
            ))
        };
        let (vision, text, logit_scale, logit_bias) =
            build().map_err(|e| Error::model_file(&weights, e.to_string()))?;
        Ok(Self {
            config,
            vision,
            text,
            logit_scale,
            logit_bias,
            tokenizer,
            processor,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &SiglipConfig {
        &self.config
    }

    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Size of the shared embedding space.
    pub fn dim(&self) -> usize {
        self.config.vision_config.hidden_size
    }

    /// The learned log temperature.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// The learned bias added to the scaled cosine before the sigmoid.
    pub fn logit_bias(&self) -> f32 {
        self.logit_bias
    }

    /// Image embeddings.
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S) from [`Self::processor`]. Returns (N, hidden).
    pub fn image_embeddings(&self, pixels: &Tensor, normalize: bool) -> Result<Tensor> {
        let e = Towers::Image
            .loaded(self.vision.as_ref())?
            .forward(pixels)?;
        Ok(if normalize { l2_normalize(&e)? } else { e })
    }

    /// Text embeddings, (N, projection_size).
    pub fn text_embeddings(&self, texts: &[&str], normalize: bool) -> Result<Tensor> {
        let text = Towers::Text.loaded(self.text.as_ref())?;
        let batch = self.tokenizer.encode(texts)?;
        let e = text.forward(&batch.ids, None, &self.device)?;
        Ok(if normalize { l2_normalize(&e)? } else { e })
    }

    /// Decodes, preprocesses and embeds image files, (N, hidden).
    pub fn embed_image_files<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        normalize: bool,
    ) -> Result<Tensor> {
        let pixels = self.processor.load_batch(paths, &self.device)?;
        self.image_embeddings(&pixels, normalize)
    }
}
