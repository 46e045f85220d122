//! Image splitting for high-resolution vision-language models (Idefics3 / SmolVLM): the
//! image is resized so its longest edge is `size`, then to a grid of `tile`×`tile`
//! squares, cut into those tiles (row-major) and followed by the whole image squashed to
//! one tile — the "global" view. Every tile is then rescaled and normalized.
//!
//! Reference: transformers `Idefics3ImageProcessor` (`models/idefics3/
//! image_processing_idefics3.py`: `_resize_output_size_rescale_to_max_len`,
//! `resize_for_vision_encoder`, `split_image`), whose resizes are Pillow's (8-bit,
//! LANCZOS by default) — matched here bit for bit ([`Kernel::Pil`]).

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Deserialize;

use super::ImageProcessorConfig;
use super::config::{IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, ResizeTo};
use super::processor::{ImageProcessor, resize};
use super::resize::{Filter, Kernel};
use crate::{Error, Result};

/// transformers' `MAX_IMAGE_SIZE`: no side is resized beyond this.
const MAX_SIDE: u32 = 4096;

/// An image cut into tiles: `rows`×`cols` crops then the global view, or just the global
/// view (`rows = cols = 0`) when the image fits in one tile or splitting is off.
#[derive(Debug, Clone)]
pub struct Tiles {
    pub rows: usize,
    pub cols: usize,
    /// `(rows·cols + 1, 3, tile, tile)` pixel values.
    pub pixels: Tensor,
}

/// The `preprocessor_config.json` of an `Idefics3ImageProcessor`.
#[derive(Debug, Clone)]
pub struct TilingProcessor {
    /// Longest edge after the first resize (`size.longest_edge`); `None` skips it.
    longest_edge: Option<u32>,
    /// Side of a tile (`max_image_size.longest_edge`): the vision encoder's input.
    tile: u32,
    split: bool,
    filter: Filter,
    floats: ImageProcessor,
}

#[derive(Deserialize)]
struct Edge {
    longest_edge: u32,
}

#[derive(Deserialize)]
struct RawConfig {
    image_processor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<Edge>,
    max_image_size: Option<Edge>,
    do_image_splitting: Option<bool>,
    resample: Option<u32>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f32>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

impl TilingProcessor {
    /// Reads `preprocessor_config.json` (transformers' defaults for absent fields: longest
    /// edge 4·364, tiles of 364, splitting on, LANCZOS, 1/255, mean = std = 0.5).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: RawConfig =
            serde_json::from_str(&text).map_err(|e| Error::model_file(path, e.to_string()))?;
        let bad = |reason: String| Error::model_file(path, reason);
        if let Some(class) = &raw.image_processor_type
            && !class.starts_with("Idefics3ImageProcessor")
        {
            return Err(bad(format!(
                "image processor `{class}` does not split images (Idefics3ImageProcessor does)"
            )));
        }
        let channels = |v: Option<Vec<f32>>, default: [f32; 3], name: &str| match v {
            None => Ok(default),
            Some(v) => <[f32; 3]>::try_from(v.as_slice())
                .map_err(|_| bad(format!("{name} must have 3 values"))),
        };
        let mean = channels(raw.image_mean, IMAGENET_STANDARD_MEAN, "image_mean")?;
        let std = channels(raw.image_std, IMAGENET_STANDARD_STD, "image_std")?;
        let tile = raw.max_image_size.map_or(364, |e| e.longest_edge);
        if tile == 0 {
            return Err(bad("max_image_size.longest_edge must be positive".into()));
        }
        let floats = ImageProcessor::new(ImageProcessorConfig {
            resize: None,
            filter: Filter::Lanczos,
            kernel: Kernel::Pil,
            crop: None,
            rescale: (raw.do_rescale != Some(false))
                .then_some(raw.rescale_factor.unwrap_or(1.0 / 255.0)),
            normalize: (raw.do_normalize != Some(false)).then_some((mean, std)),
            convert_rgb: true,
        });
        Ok(Self {
            longest_edge: (raw.do_resize != Some(false))
                .then_some(raw.size.map_or(4 * 364, |e| e.longest_edge)),
            tile,
            split: raw.do_image_splitting.unwrap_or(true),
            filter: Filter::from_pil(raw.resample.unwrap_or(1)).map_err(|e| bad(e.to_string()))?,
            floats,
        })
    }

    /// Side of one tile.
    pub fn tile_size(&self) -> u32 {
        self.tile
    }

    /// Splits and preprocesses one decoded image.
    pub fn tiles(&self, image: &RgbImage) -> Result<Tiles> {
        let mut image = image.clone();
        if let Some(edge) = self.longest_edge {
            let (h, w) = longest_edge_size(image.height(), image.width(), edge);
            image = self.resize(&image, h, w);
        }
        let mut crops = Vec::new();
        let (mut rows, mut cols) = (0, 0);
        if self.split {
            let (h, w) = tile_multiple_size(image.height(), image.width(), self.tile);
            image = self.resize(&image, h, w);
            let (h, w) = (image.height(), image.width());
            if h > self.tile || w > self.tile {
                rows = h.div_ceil(self.tile);
                cols = w.div_ceil(self.tile);
                let (step_h, step_w) = (h.div_ceil(rows), w.div_ceil(cols));
                for r in 0..rows {
                    for c in 0..cols {
                        let (x, y) = (c * step_w, r * step_h);
                        let view = image::imageops::crop_imm(
                            &image,
                            x,
                            y,
                            step_w.min(w - x),
                            step_h.min(h - y),
                        );
                        crops.push(view.to_image());
                    }
                }
            }
        }
        crops.push(self.resize(&image, self.tile, self.tile));
        if crops
            .iter()
            .any(|c| c.dimensions() != (self.tile, self.tile))
        {
            return Err(Error::InvalidInput(format!(
                "image of {}×{} did not split into {}-pixel tiles",
                image.width(),
                image.height(),
                self.tile
            )));
        }
        let data: Vec<f32> = crops.iter().flat_map(|c| self.floats.to_chw(c)).collect();
        let t = self.tile as usize;
        Ok(Tiles {
            rows: rows as usize,
            cols: cols as usize,
            pixels: Tensor::from_vec(data, (crops.len(), 3, t, t), &Device::Cpu)?,
        })
    }

    fn resize(&self, image: &RgbImage, height: u32, width: u32) -> RgbImage {
        resize(
            image,
            ResizeTo::Exact { height, width },
            self.filter,
            Kernel::Pil,
        )
    }
}

/// `_resize_output_size_rescale_to_max_len` then `_scale_below_upper_bound`: the longest
/// side becomes `edge` (up or down), the other keeps the aspect ratio, rounded down then
/// up to even.
fn longest_edge_size(height: u32, width: u32, edge: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let even = |v: u32| if v.is_multiple_of(2) { v } else { v + 1 };
    let (mut h, mut w) = if width >= height {
        (even((f64::from(edge) / aspect) as u32), edge)
    } else {
        (edge, even((f64::from(edge) * aspect) as u32))
    };
    h = h.max(1);
    w = w.max(1);
    let aspect = f64::from(w) / f64::from(h);
    if w >= h && w > MAX_SIDE {
        (((f64::from(MAX_SIDE) / aspect) as u32).max(1), MAX_SIDE)
    } else if h > w && h > MAX_SIDE {
        (MAX_SIDE, ((f64::from(MAX_SIDE) * aspect) as u32).max(1))
    } else {
        (h, w)
    }
}

/// `resize_for_vision_encoder`: both sides up to multiples of `tile`, the shorter one
/// derived from the longer through the aspect ratio.
fn tile_multiple_size(height: u32, width: u32, tile: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let up = |v: u32| v.div_ceil(tile) * tile;
    if width >= height {
        let w = up(width);
        (up((f64::from(w) / aspect) as u32), w)
    } else {
        let h = up(height);
        (h, up((f64::from(h) * aspect) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_transformers() {
        // 80×50 → 96×60 → 96×64 (3×2 tiles of 32).
        assert_eq!(longest_edge_size(50, 80, 96), (60, 96));
        assert_eq!(tile_multiple_size(60, 96, 32), (64, 96));
        // Portrait, odd result rounded up to even.
        assert_eq!(longest_edge_size(100, 33, 96), (96, 32));
        assert_eq!(longest_edge_size(100, 34, 96), (96, 32));
        assert_eq!(tile_multiple_size(96, 34, 32), (96, 64));
    }
}
