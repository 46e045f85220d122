//! The search space that works out of the box: all-MiniLM-L6-v2 embeds texts, and images
//! reach the same space training-free through EfficientNet-Lite0's ImageNet classifier and
//! ConSE (the probability-weighted mean of the MiniLM embeddings of its top-10 class
//! names, "a photo of a {class}").

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{D, Device, Tensor};

use crate::encoder::TextEmbedder;
use crate::encoder::bert::BertEmbedder;
use crate::encoder::efficientnet::{EfficientNet, imagenet_classes};
use crate::index::Embedder;
use crate::modality::image::{Filter, ImageProcessor, ImageProcessorConfig, Kernel, ResizeTo};
use crate::projector::Conse;
use crate::tasks::text_embedding::{embed_texts, load_text_embedder};
use crate::{Error, Result};

/// The catalogue name of the image classifier.
pub const IMAGE_MODEL: &str = "efficientnet-lite0";
const IMAGE_WEIGHTS: &str = "efficientnet-lite0-57934424.pth";
/// Classes mixed per image (Norouzi et al.'s T).
const TOP_T: usize = 10;

/// MiniLM for texts, EfficientNet-Lite0 + ConSE for images (loaded on the first image).
pub struct MiniLmConse {
    space: String,
    text: BertEmbedder,
    image: OnceLock<std::result::Result<ImageSide, String>>,
}

struct ImageSide {
    image: EfficientNet,
    processor: ImageProcessor,
    conse: Conse,
}

impl MiniLmConse {
    /// Loads (fetching if needed) the text model `text_model`; EfficientNet-Lite0 and the
    /// 1000 ImageNet class prompts' embeddings follow on the first image.
    pub fn load(text_model: &str) -> Result<Self> {
        Ok(Self {
            space: text_model.to_string(),
            text: load_text_embedder(text_model)?,
            image: OnceLock::new(),
        })
    }

    fn image_side(&self) -> Result<&ImageSide> {
        self.image
            .get_or_init(|| ImageSide::load(&self.text).map_err(|e| format!("{e}")))
            .as_ref()
            .map_err(|e| Error::InvalidInput(e.clone()))
    }

    fn embed_image(&self, path: &Path) -> Result<Vec<f32>> {
        let side = self.image_side()?;
        let pixels = side.processor.load_batch(&[path], &Device::Cpu)?;
        let logits = side.image.forward(&pixels)?.logits;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let row = side.conse.forward(&probs)?.squeeze(0)?.to_vec1::<f32>()?;
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::Media {
                path: path.to_path_buf(),
                reason: "the image embedding is not finite".into(),
            });
        }
        Ok(row)
    }
}

impl ImageSide {
    fn load(text: &BertEmbedder) -> Result<Self> {
        let dir = crate::models::resolve(IMAGE_MODEL)?;
        let image = EfficientNet::load(&dir.join(IMAGE_WEIGHTS))?;
        let prompts: Vec<String> = imagenet_classes()
            .iter()
            .map(|c| format!("a photo of a {}", c.name()))
            .collect();
        let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let rows = embed_texts(text, &prompts, 64)?;
        let dim = text.dim();
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let class_texts = Tensor::from_vec(flat, (prompts.len(), dim), &Device::Cpu)?;
        // TensorFlow EfficientNet-Lite's eval preprocessing.
        let processor = ImageProcessor::new(ImageProcessorConfig {
            resize: Some(ResizeTo::ShortestEdge(256)),
            filter: Filter::Bicubic,
            kernel: Kernel::Pil,
            crop: Some((224, 224)),
            rescale: Some(1.0 / 255.0),
            normalize: Some(([127.0 / 255.0; 3], [128.0 / 255.0; 3])),
            convert_rgb: false,
        });
        Ok(Self {
            image,
            processor,
            conse: Conse::new(class_texts, TOP_T)?,
        })
    }
}

impl Embedder for MiniLmConse {
    fn space(&self) -> &str {
        &self.space
    }

    fn dim(&self) -> usize {
        self.text.dim()
    }

    fn embed_images(&self, paths: &[&Path]) -> Vec<Result<Vec<f32>>> {
        paths.iter().map(|p| self.embed_image(p)).collect()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.text.embed(texts)
    }
}
