//! Images described in words for a text-only chat model: EfficientNet-Lite0's most
//! likely ImageNet classes ("Socratic models", Zeng et al. 2022: a vision model's output
//! handed to the LLM as text). The bridge used until a trained projector feeds image
//! features to the LLM directly.

use candle_core::{D, Device};

use super::search_space::{efficientnet_processor, load_efficientnet};
use crate::Result;
use crate::encoder::efficientnet::{EfficientNet, imagenet_classes};
use crate::modality::image::{ImageProcessor, ImageSource};

/// EfficientNet-Lite0 and its preprocessing.
pub struct ImageTagger {
    net: EfficientNet,
    processor: ImageProcessor,
}

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tag {
    pub label: &'static str,
    pub probability: f32,
}

impl ImageTagger {
    /// Loads EfficientNet-Lite0 from the store (fetching it if needed).
    pub fn load() -> Result<Self> {
        Ok(Self {
            net: load_efficientnet()?,
            processor: efficientnet_processor(),
        })
    }

    /// The `k` most likely ImageNet classes of an image, most likely first.
    pub fn tags(&self, image: &ImageSource, k: usize) -> Result<Vec<Tag>> {
        let rgb = self.processor.decode(image)?;
        let pixels = self.processor.tensor(&[rgb], &Device::Cpu)?;
        let logits = self.net.forward(&pixels)?.logits;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let classes = imagenet_classes();
        Ok(order
            .into_iter()
            .take(k)
            .filter_map(|i| {
                classes.get(i).map(|c| Tag {
                    label: c.name(),
                    probability: probs[i],
                })
            })
            .collect())
    }

    /// The image as a sentence for a chat model:
    /// `[image: probably a tabby cat (62%), or a tiger cat (20%), …]`.
    pub fn describe(&self, image: &ImageSource) -> Result<String> {
        let tags = self.tags(image, 3)?;
        let parts: Vec<String> = tags
            .iter()
            .map(|t| format!("{} ({:.0}%)", t.label, 100.0 * t.probability))
            .collect();
        Ok(format!("[image: probably {}]", parts.join(", or ")))
    }
}
