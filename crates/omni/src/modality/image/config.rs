//! `preprocessor_config.json`: the fields of transformers' `CLIPImageProcessor` and
//! `SiglipImageProcessor` (and their `*Fast` / `*Pil` variants), with each class's
//! defaults for the fields a file leaves out.
//!
//! Old files write sizes as plain integers (`"size": 224, "crop_size": 224`); transformers'
//! `get_size_dict` reads an integer `size` as the shortest edge (CLIP's
//! `default_to_square = False`) and an integer `crop_size` as a square. So do we.

use std::path::Path;

use serde::Deserialize;

use super::resize::{Filter, Kernel};
use crate::{Error, Result};

/// `size` / `crop_size` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Int(u32),
    Dict {
        shortest_edge: Option<u32>,
        height: Option<u32>,
        width: Option<u32>,
    },
}

/// The file's fields; absent ones are `None` and take the class default.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawConfig {
    image_processor_type: Option<String>,
    feature_extractor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<RawSize>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<RawSize>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
    do_convert_rgb: Option<bool>,
}

/// Target size of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// Scale so the shorter side is this long; the longer side is `int(s * long / short)`.
    ShortestEdge(u32),
    /// Exactly this size, aspect ratio not kept.
    Exact { height: u32, width: u32 },
}

/// A resolved image-processor configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    /// `None` when `do_resize` is false.
    pub resize: Option<ResizeTo>,
    pub filter: Filter,
    /// Which fixed-point resampler to match (torchvision's, or Pillow's for `*Pil` classes).
    pub kernel: Kernel,
    /// `(height, width)` of the center crop, `None` when `do_center_crop` is false.
    pub crop: Option<(u32, u32)>,
    /// Multiplier applied to 0–255 values, `None` when `do_rescale` is false.
    pub rescale: Option<f32>,
    /// Per-channel `(mean, std)`, `None` when `do_normalize` is false.
    pub normalize: Option<([f32; 3], [f32; 3])>,
    /// Composite transparency onto white (true) or drop the alpha channel (false).
    pub convert_rgb: bool,
}

/// OpenAI CLIP's channel statistics (transformers' `OPENAI_CLIP_MEAN` / `_STD`).
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// transformers' `IMAGENET_STANDARD_MEAN` / `_STD` (SigLIP).
pub const IMAGENET_STANDARD_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
pub const IMAGENET_STANDARD_STD: [f32; 3] = [0.5, 0.5, 0.5];
/// torchvision's ImageNet statistics (`IMAGENET_DEFAULT_MEAN` / `_STD`).
pub const IMAGENET_DEFAULT_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_DEFAULT_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ImageProcessorConfig {
    /// `CLIPImageProcessor`'s defaults (openai/clip-vit-base-patch32).
    pub fn clip() -> Self {
        Self {
            resize: Some(ResizeTo::ShortestEdge(224)),
            filter: Filter::Bicubic,
            kernel: Kernel::Torch,
            crop: Some((224, 224)),
            rescale: Some(1.0 / 255.0),
            normalize: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
            convert_rgb: true,
        }
    }

    /// `SiglipImageProcessor`'s defaults (google/siglip-base-patch16-224).
    pub fn siglip() -> Self {
        Self {
            resize: Some(ResizeTo::Exact {
                height: 224,
                width: 224,
            }),
            crop: None,
            normalize: Some((IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD)),
            ..Self::clip()
        }
    }

    /// Reads a model's `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|reason| Error::model_file(path, reason))
    }

    /// Parses the JSON text of a `preprocessor_config.json`.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let class = raw
            .image_processor_type
            .clone()
            .or(raw.feature_extractor_type.clone())
            .unwrap_or_else(|| "CLIPImageProcessor".into());
        let defaults = if class.starts_with("Siglip") {
            Self::siglip()
        } else if class.starts_with("CLIP") {
            Self::clip()
        } else {
            return Err(format!(
                "unsupported image processor `{class}` (supported: CLIPImageProcessor, \
                 SiglipImageProcessor)"
            ));
        };
        let kernel = if class.ends_with("Pil") {
            Kernel::Pil
        } else {
            Kernel::Torch
        };
        let resize = match (raw.do_resize.unwrap_or(true), &raw.size) {
            (false, _) => None,
            (true, None) => defaults.resize,
            (true, Some(RawSize::Int(s))) => Some(ResizeTo::ShortestEdge(*s)),
            (
                true,
                Some(RawSize::Dict {
                    shortest_edge: Some(s),
                    ..
                }),
            ) => Some(ResizeTo::ShortestEdge(*s)),
            (
                true,
                Some(RawSize::Dict {
                    height: Some(height),
                    width: Some(width),
                    ..
                }),
            ) => Some(ResizeTo::Exact {
                height: *height,
                width: *width,
            }),
            (true, Some(other)) => {
                return Err(format!(
                    "`size` must be an integer, {{\"shortest_edge\"}} or {{\"height\", \"width\"}}, got {other:?}"
                ));
            }
        };
        let do_crop = raw.do_center_crop.unwrap_or(defaults.crop.is_some());
        let crop = match (do_crop, &raw.crop_size) {
            (false, _) => None,
            (true, None) => Some(defaults.crop.unwrap_or((224, 224))),
            (true, Some(RawSize::Int(s))) => Some((*s, *s)),
            (
                true,
                Some(RawSize::Dict {
                    height: Some(h),
                    width: Some(w),
                    ..
                }),
            ) => Some((*h, *w)),
            (true, Some(other)) => {
                return Err(format!(
                    "`crop_size` must be an integer or {{\"height\", \"width\"}}, got {other:?}"
                ));
            }
        };
        let rescale = match raw.do_rescale.unwrap_or(true) {
            false => None,
            true => Some(raw.rescale_factor.map_or(1.0 / 255.0, |f| f as f32)),
        };
        let channels = |v: Option<Vec<f32>>, default: [f32; 3], name: &str| match v {
            None => Ok(default),
            Some(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
            Some(v) if v.len() == 1 => Ok([v[0]; 3]),
            Some(v) => Err(format!("`{name}` must have 3 values, got {}", v.len())),
        };
        let normalize = match (raw.do_normalize.unwrap_or(true), defaults.normalize) {
            (true, Some((mean, std))) => Some((
                channels(raw.image_mean, mean, "image_mean")?,
                channels(raw.image_std, std, "image_std")?,
            )),
            _ => None,
        };
        if let Some((_, std)) = normalize
            && std.iter().any(|&s| s == 0.0 || !s.is_finite())
        {
            return Err(format!(
                "`image_std` must be finite and non-zero, got {std:?}"
            ));
        }
        let filter = Filter::from_pil(raw.resample.unwrap_or(3)).map_err(|e| e.to_string())?;
        Ok(Self {
            resize,
            filter,
            kernel,
            crop,
            rescale,
            normalize,
            convert_rgb: raw.do_convert_rgb.unwrap_or(true),
        })
    }

    /// `(height, width)` of the tensors this configuration produces for a `height`×`width`
    /// input: the crop size when cropping, else the resized size.
    pub fn output_size(&self, height: u32, width: u32) -> (u32, u32) {
        if let Some(crop) = self.crop {
            return crop;
        }
        match self.resize {
            Some(r) => resized_size(r, height, width),
            None => (height, width),
        }
    }
}

/// `(height, width)` after resizing a `height`×`width` image (transformers'
/// `get_resize_output_image_size` with `default_to_square=False`).
pub fn resized_size(to: ResizeTo, height: u32, width: u32) -> (u32, u32) {
    match to {
        ResizeTo::Exact { height, width } => (height, width),
        ResizeTo::ShortestEdge(s) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            // Python: int(s * long / short), a float division truncated.
            let new_long = (f64::from(s) * f64::from(long) / f64::from(short)) as u32;
            if width <= height {
                (new_long, s)
            } else {
                (s, new_long)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_clip_file_with_integer_sizes() {
        let c = ImageProcessorConfig::from_json(
            r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true,
                "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#,
        )
        .unwrap();
        assert_eq!(c, ImageProcessorConfig::clip());
    }

    #[test]
    fn siglip_defaults_and_sizes() {
        let c =
            ImageProcessorConfig::from_json(r#"{"image_processor_type": "SiglipImageProcessor"}"#)
                .unwrap();
        assert_eq!(c, ImageProcessorConfig::siglip());
        assert_eq!(
            resized_size(ResizeTo::ShortestEdge(224), 512, 768),
            (224, 336)
        );
        assert_eq!(
            resized_size(ResizeTo::ShortestEdge(224), 300, 451),
            (224, 336)
        );
        assert!(ImageProcessorConfig::from_json(r#"{"image_std": [0, 1, 1]}"#).is_err());
        assert!(ImageProcessorConfig::from_json(r#"{"resample": 0}"#).is_err());
    }
}
