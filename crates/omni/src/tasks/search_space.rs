//! Embedding spaces shared by images and texts, picked by model name ([`load_space`]):
//!
//! - a sentence embedder (all-MiniLM-L6-v2 by default): texts by MiniLM; images reach the
//!   same space training-free through EfficientNet-Lite0's ImageNet classifier and ConSE
//!   (the probability-weighted mean of the MiniLM embeddings of its top-10 class names,
//!   "a photo of a {class}");
//! - a trained aligner (a directory with `aligner.json`, made by `omni train align`):
//!   texts by its text model, images by EfficientNet-Lite0's pooled features through the
//!   trained projector;
//! - a CLIP or SigLIP checkpoint (a directory with `preprocessor_config.json`).

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{D, Device, Tensor};

use super::align::AlignerInfo;
use crate::encoder::bert::BertEmbedder;
use crate::encoder::efficientnet::{EfficientNet, imagenet_classes};
use crate::encoder::{ImageTextModel, TextEmbedder, l2_normalize};
use crate::index::{Embedder, Scoring};
use crate::modality::image::{
    Filter, ImageProcessor, ImageProcessorConfig, ImageSource, Kernel, ResizeTo, RgbImage,
};
use crate::projector::{Conse, Projector};
use crate::tasks::text_embedding::{embed_texts, load_text_embedder};
use crate::{Error, Result};

/// The catalogue name of the image encoder behind the MiniLM spaces.
pub const IMAGE_MODEL: &str = "efficientnet-lite0";
/// Classes mixed per image (Norouzi et al.'s T).
const TOP_T: usize = 10;
/// Texts per MiniLM forward pass.
const TEXT_BATCH: usize = 32;
/// Cosine-to-logit scale for spaces without a learned one (CLIP's upper bound).
const DEFAULT_SCALE: f32 = 100.0;

/// Loads the embedding space `model`: a sentence-embedder name or directory (ConSE for
/// images), a trained aligner, or a CLIP/SigLIP checkpoint. Catalogue models are fetched.
pub fn load_space(model: &str) -> Result<Box<dyn Embedder>> {
    let dir = crate::models::resolve(model)?;
    if dir.join(AlignerInfo::FILE).is_file() {
        return Ok(Box::new(MiniLmSpace::aligned(model, &dir)?));
    }
    if dir.join("preprocessor_config.json").is_file() {
        return Ok(Box::new(ImageTextSpace {
            space: model.to_string(),
            model: ImageTextModel::load(&dir, &Device::Cpu)?,
        }));
    }
    Ok(Box::new(MiniLmSpace::conse(model)?))
}

/// How EfficientNet-Lite0's output reaches the text space.
#[derive(Debug, Clone)]
pub enum ImageMapping {
    /// Training-free, from the ImageNet class probabilities.
    Conse(Conse),
    /// A trained projector of the pooled features.
    Projector(Projector),
}

impl ImageMapping {
    /// ConSE over the 1000 ImageNet classes, their prompts embedded by `text`.
    pub fn imagenet_conse(text: &dyn TextEmbedder) -> Result<Self> {
        let prompts: Vec<String> = imagenet_classes()
            .iter()
            .map(|c| format!("a photo of a {}", c.name()))
            .collect();
        let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let rows = embed_texts(text, &prompts, 64)?;
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let class_texts = Tensor::from_vec(flat, (prompts.len(), text.dim()), &Device::Cpu)?;
        Ok(Self::Conse(Conse::new(class_texts, TOP_T)?))
    }

    /// Pooled EfficientNet features `(N, 1280)` → unit rows in the text space `(N, dim)`.
    pub fn map(&self, net: &EfficientNet, pooled: &Tensor) -> Result<Tensor> {
        match self {
            Self::Conse(conse) => {
                let probs = candle_nn::ops::softmax(&net.classify(pooled)?, D::Minus1)?;
                conse.forward(&probs)
            }
            Self::Projector(p) => l2_normalize(&p.forward(pooled)?),
        }
    }
}

/// TensorFlow EfficientNet-Lite's eval preprocessing: shorter side 256, center crop 224,
/// `(x − 127) / 128`.
pub fn efficientnet_processor() -> ImageProcessor {
    ImageProcessor::new(ImageProcessorConfig {
        resize: Some(ResizeTo::ShortestEdge(256)),
        filter: Filter::Bicubic,
        kernel: Kernel::Pil,
        crop: Some((224, 224)),
        rescale: Some(1.0 / 255.0),
        normalize: Some(([127.0 / 255.0; 3], [128.0 / 255.0; 3])),
        convert_rgb: false,
    })
}

/// Loads EfficientNet-Lite0 from the store (fetching it if needed).
pub fn load_efficientnet() -> Result<EfficientNet> {
    EfficientNet::load(&crate::models::resolve(IMAGE_MODEL)?)
}

/// A MiniLM-family text space with EfficientNet-Lite0 images mapped into it; the image
/// side loads on the first image.
pub struct MiniLmSpace {
    space: String,
    text: BertEmbedder,
    scale: f32,
    /// The trained projector and its directory, or `None` for ConSE.
    projector: Option<(std::path::PathBuf, Projector)>,
    image: OnceLock<std::result::Result<ImageSide, String>>,
}

struct ImageSide {
    net: EfficientNet,
    processor: ImageProcessor,
    mapping: ImageMapping,
}

impl MiniLmSpace {
    /// Texts by `text_model` (fetched if needed); images by ConSE.
    pub fn conse(text_model: &str) -> Result<Self> {
        Ok(Self {
            space: text_model.to_string(),
            text: load_text_embedder(text_model)?,
            scale: DEFAULT_SCALE,
            projector: None,
            image: OnceLock::new(),
        })
    }

    /// The trained aligner in `dir` (named `name`).
    pub fn aligned(name: &str, dir: &Path) -> Result<Self> {
        let info = AlignerInfo::load(dir)?;
        if info.image_model != IMAGE_MODEL {
            return Err(Error::model_file(
                dir.join(AlignerInfo::FILE),
                format!(
                    "image model `{}` is not supported (only {IMAGE_MODEL})",
                    info.image_model
                ),
            ));
        }
        let text = load_text_embedder(&info.text_model)?;
        let projector = Projector::load(dir, &Device::Cpu)?;
        let output = projector.config().output_dim;
        if output != text.dim() {
            return Err(Error::model_file(
                dir.join("projector.json"),
                format!(
                    "the projector writes {output}-d vectors but `{}` embeds texts in {} dimensions",
                    info.text_model,
                    text.dim()
                ),
            ));
        }
        Ok(Self {
            space: name.to_string(),
            text,
            scale: info.logit_scale,
            projector: Some((dir.to_path_buf(), projector)),
            image: OnceLock::new(),
        })
    }

    fn image_side(&self) -> Result<&ImageSide> {
        self.image
            .get_or_init(|| self.load_image_side().map_err(|e| format!("{e}")))
            .as_ref()
            .map_err(|e| Error::InvalidInput(e.clone()))
    }

    fn load_image_side(&self) -> Result<ImageSide> {
        let net = load_efficientnet()?;
        let mapping = match &self.projector {
            None => ImageMapping::imagenet_conse(&self.text)?,
            Some((dir, projector)) => {
                if projector.config().input_dim != net.config.head_channels {
                    return Err(Error::model_file(
                        dir.join("projector.json"),
                        format!(
                            "the projector reads {}-d features, EfficientNet gives {}",
                            projector.config().input_dim,
                            net.config.head_channels
                        ),
                    ));
                }
                ImageMapping::Projector(projector.clone())
            }
        };
        Ok(ImageSide {
            net,
            processor: efficientnet_processor(),
            mapping,
        })
    }

    /// Decoded images → unit rows in the text space.
    fn embed_decoded(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let side = self.image_side()?;
        let pixels = side.processor.tensor(images, &Device::Cpu)?;
        let pooled = side.net.forward(&pixels)?.pooled;
        Ok(side.mapping.map(&side.net, &pooled)?.to_vec2::<f32>()?)
    }
}

/// Images per forward pass of a ViT tower (CLIP, SigLIP): batching reads the weights
/// once for many images. EfficientNet's convolutions gain nothing from batches on a CPU
/// (a batch's activations outgrow the caches: 8 images take 1.2× as long in one batch as
/// one by one), so it runs one image per pass.
const VIT_BATCH: usize = 16;

/// Decodes each image alone (a bad one fails alone) and embeds the decoded ones `batch`
/// at a time; when a batch fails, each of its images fails with the reason.
fn embed_in_batches(
    images: &[ImageSource],
    batch: usize,
    decode: impl Fn(&ImageSource) -> Result<RgbImage>,
    embed: impl Fn(&[RgbImage]) -> Result<Vec<Vec<f32>>>,
) -> Vec<Result<Vec<f32>>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let mut results = Vec::with_capacity(chunk.len());
        let (mut decoded, mut at) = (Vec::new(), Vec::new());
        for (i, source) in chunk.iter().enumerate() {
            results.push(decode(source).map(|image| {
                decoded.push(image);
                at.push(i);
                Vec::new()
            }));
        }
        if !decoded.is_empty() {
            let rows = embed(&decoded).and_then(|rows| {
                if rows.len() == decoded.len() {
                    Ok(rows)
                } else {
                    Err(Error::InvalidInput(format!(
                        "the image tower returned {} vectors for {} images",
                        rows.len(),
                        decoded.len()
                    )))
                }
            });
            let media = |i: usize, reason: String| Error::Media {
                path: chunk[i].name().to_path_buf(),
                reason,
            };
            match rows {
                Ok(rows) => {
                    for (&i, row) in at.iter().zip(rows) {
                        results[i] = if row.iter().all(|v| v.is_finite()) {
                            Ok(row)
                        } else {
                            Err(media(i, "the image embedding is not finite".into()))
                        };
                    }
                }
                Err(e) => {
                    for &i in &at {
                        results[i] = Err(media(i, e.to_string()));
                    }
                }
            }
        }
        out.extend(results);
    }
    out
}

impl Embedder for MiniLmSpace {
    fn space(&self) -> &str {
        &self.space
    }

    fn dim(&self) -> usize {
        self.text.dim()
    }

    fn scoring(&self) -> Scoring {
        Scoring::Softmax { scale: self.scale }
    }

    fn embed_images(&self, images: &[ImageSource]) -> Vec<Result<Vec<f32>>> {
        let side = match self.image_side() {
            Ok(side) => side,
            Err(e) => {
                let reason = e.to_string();
                return images
                    .iter()
                    .map(|_| Err(Error::InvalidInput(reason.clone())))
                    .collect();
            }
        };
        embed_in_batches(
            images,
            1,
            |source| side.processor.decode(source),
            |decoded| self.embed_decoded(decoded),
        )
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        embed_texts(&self.text, texts, TEXT_BATCH)
    }
}

/// A CLIP or SigLIP checkpoint as an embedding space.
pub struct ImageTextSpace {
    space: String,
    model: ImageTextModel,
}

impl Embedder for ImageTextSpace {
    fn space(&self) -> &str {
        &self.space
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn scoring(&self) -> Scoring {
        let (scale, bias) = self.model.logit_params();
        match self.model {
            ImageTextModel::Clip(_) => Scoring::Softmax { scale: scale.exp() },
            ImageTextModel::Siglip(_) => Scoring::Sigmoid {
                scale: scale.exp(),
                bias,
            },
        }
    }

    fn embed_images(&self, images: &[ImageSource]) -> Vec<Result<Vec<f32>>> {
        let processor = self.model.processor();
        embed_in_batches(
            images,
            VIT_BATCH,
            |source| processor.decode(source),
            |decoded| {
                let pixels = processor.tensor(decoded, &Device::Cpu)?;
                Ok(self
                    .model
                    .image_embeddings(&pixels, true)?
                    .to_vec2::<f32>()?)
            },
        )
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.text_embeddings(texts, true)?.to_vec2::<f32>()?)
    }
}
