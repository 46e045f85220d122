//! CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision"): an image tower and a text tower projected into one space, loaded from a
//! Hugging Face model directory (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`). Matches transformers' `CLIPModel.get_image_features` /
//! `get_text_features` (parity: `tests/test_clip.rs`, fixtures from
//! `scripts/make_clip_fixtures.py`).
//!
//! ```text
//! image file ─► modality::image (preprocessor_config.json) ─► vision tower ─► visual_projection ─┐
//! text ─► tokenizer.json ─► text tower (causal, pooled at EOS) ─► text_projection ──────────────┴► shared space
//! ```

mod config;
pub(crate) mod layers;
mod text;
pub(crate) mod tokenize;
mod vision;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear_no_bias};

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use layers::{Activation, l2_normalize};
pub use text::ClipTextTransformer;
pub use tokenize::{Padding, TextTokenizer, TokenBatch};
pub use vision::ClipVisionTransformer;

use crate::modality::image::ImageProcessor;
use crate::{Error, Result};

/// A CLIP model with its tokenizer and image processor.
#[derive(Debug, Clone)]
pub struct ClipModel {
    config: ClipConfig,
    image: Option<(ClipVisionTransformer, Linear)>,
    text: Option<(ClipTextTransformer, Linear)>,
    logit_scale: f32,
    tokenizer: TextTokenizer,
    processor: ImageProcessor,
    device: Device,
}

impl ClipModel {
    /// Loads a transformers `CLIPModel` directory, both towers.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_towers(dir, device, Towers::Both)
    }

    /// Loads a transformers `CLIPModel` directory, only the towers asked for.
    pub fn load_towers(dir: &Path, device: &Device, towers: Towers) -> Result<Self> {
        let config: ClipConfig = read_config(dir)?;
        let processor = image_processor(dir, config.vision_config.image_size)?;
        let tc = &config.text_config;
        let tokenizer = TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            tc.max_position_embeddings,
            tc.vocab_size,
            tc.pad_token_id,
            Padding::Longest,
        )?;
        let (vb, weights) = load_weights(dir, device, towers)?;
        let build = || -> candle_core::Result<_> {
            let p = config.projection_dim;
            let vc = &config.vision_config;
            let image = if towers.image() {
                Some((
                    ClipVisionTransformer::new(vc, vb.pp("vision_model"))?,
                    linear_no_bias(vc.hidden_size, p, vb.pp("visual_projection"))?,
                ))
            } else {
                None
            };
            let text = if towers.text() {
                Some((
                    ClipTextTransformer::new(tc, vb.pp("text_model"))?,
                    linear_no_bias(tc.hidden_size, p, vb.pp("text_projection"))?,
                ))
            } else {
                None
            };
            Ok((image, text, scalar(&vb, "logit_scale")?))
        };
        let (image, text, logit_scale) =
            build().map_err(|e| Error::model_file(&weights, e.to_string()))?;
        Ok(Self {
            config,
            image,
            text,
            logit_scale,
            tokenizer,
            processor,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The image processor configured by `preprocessor_config.json`.
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Size of the shared embedding space.
    pub fn dim(&self) -> usize {
        self.config.projection_dim
    }

    /// The learned log temperature; similarity logits are `exp(logit_scale) * cos`.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Projected image embeddings.
    ///
    /// # Shapes
    /// `pixels`: (N, 3, S, S) from [`Self::processor`]. Returns (N, projection_dim).
    pub fn image_embeddings(&self, pixels: &Tensor, normalize: bool) -> Result<Tensor> {
        let (vision, projection) = Towers::Image.loaded(self.image.as_ref())?;
        let e = projection.forward(&vision.forward(pixels)?)?;
        Ok(if normalize { l2_normalize(&e)? } else { e })
    }

    /// Projected text embeddings, (N, projection_dim).
    pub fn text_embeddings(&self, texts: &[&str], normalize: bool) -> Result<Tensor> {
        let (text, projection) = Towers::Text.loaded(self.text.as_ref())?;
        let batch = self.tokenizer.encode(texts)?;
        let e = projection.forward(&text.forward(&batch.ids, &batch.keep, &self.device)?)?;
        Ok(if normalize { l2_normalize(&e)? } else { e })
    }

    /// Decodes, preprocesses and embeds image files, (N, projection_dim).
    pub fn embed_image_files<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        normalize: bool,
    ) -> Result<Tensor> {
        let pixels = self.processor.load_batch(paths, &self.device)?;
        self.image_embeddings(&pixels, normalize)
    }
}

/// Reads and parses `dir/config.json`.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))
}

/// The image processor of `dir`, checked to produce the `image_size` the tower takes.
pub(crate) fn image_processor(dir: &Path, image_size: usize) -> Result<ImageProcessor> {
    let processor = ImageProcessor::from_model_dir(dir)?;
    // A 1000×1000 probe: with a crop or an exact resize the output size is fixed.
    let (h, w) = processor.config().output_size(1000, 1000);
    if (h as usize, w as usize) != (image_size, image_size) {
        return Err(Error::model_file(
            dir.join("preprocessor_config.json"),
            format!(
                "makes {h}×{w} images but config.json's vision tower takes \
                 {image_size}×{image_size}"
            ),
        ));
    }
    Ok(processor)
}

/// Which towers of an image–text model to load: a job that embeds only images (or only
/// texts) leaves the other tower's weights on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Towers {
    Both,
    Image,
    Text,
}

impl Towers {
    pub(crate) fn image(self) -> bool {
        self != Self::Text
    }

    pub(crate) fn text(self) -> bool {
        self != Self::Image
    }

    /// Whether a checkpoint tensor belongs to the towers asked for (HF naming, shared by
    /// CLIP and SigLIP).
    fn keeps(self, name: &str) -> bool {
        let text = name.starts_with("text_model.") || name.starts_with("text_projection.");
        let image = name.starts_with("vision_model.") || name.starts_with("visual_projection.");
        (self.text() || !text) && (self.image() || !image)
    }

    /// `tower` (this one, `Image` or `Text`), or an error saying it was not loaded.
    pub(crate) fn loaded<T>(self, tower: Option<&T>) -> Result<&T> {
        tower.ok_or_else(|| {
            Error::InvalidInput(format!(
                "this model was loaded without its {} tower",
                if self == Self::Image { "image" } else { "text" }
            ))
        })
    }
}

/// A VarBuilder over `dir/model.safetensors` (f32, only the tensors of `towers`), and that
/// file's path.
pub(crate) fn load_weights(
    dir: &Path,
    device: &Device,
    towers: Towers,
) -> Result<(VarBuilder<'static>, std::path::PathBuf)> {
    let path = dir.join("model.safetensors");
    let tensors =
        crate::formats::safetensors::read_tensors_where(&path, device, |n| towers.keeps(n))?;
    Ok((VarBuilder::from_tensors(tensors, DType::F32, device), path))
}

/// A one-element parameter (`logit_scale` is stored as `[]` by CLIP, `[1]` by SigLIP).
pub(crate) fn scalar(vb: &VarBuilder, name: &str) -> candle_core::Result<f32> {
    let t = vb
        .get_unchecked(name)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    if t.elem_count() != 1 {
        candle_core::bail!("`{name}` has {} elements, expected 1", t.elem_count());
    }
    t.get(0)?.to_scalar::<f32>()
}
