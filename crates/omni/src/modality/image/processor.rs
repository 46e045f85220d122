//! The image processor: RGB image → resized, cropped, rescaled, normalized CHW floats, in
//! the order of transformers' `BaseImageProcessor._preprocess` (resize and crop on 8-bit
//! pixels, then one float pass for rescale + normalize).

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::config::{ImageProcessorConfig, ResizeTo, resized_size};
use super::decode::{AlphaMode, DecodeLimits, ImageSource};
use super::resize::{Filter, Kernel, resize_u8};
use crate::{Error, Result};

/// Resizes `image` as transformers does (`size` → new size, antialiased `filter`).
pub fn resize(image: &RgbImage, to: ResizeTo, filter: Filter, kernel: Kernel) -> RgbImage {
    let (width, height) = image.dimensions();
    let (out_h, out_w) = resized_size(to, height, width);
    if (out_h, out_w) == (height, width) {
        return image.clone();
    }
    let pixels = resize_u8(
        image.as_raw(),
        width as usize,
        height as usize,
        3,
        out_w as usize,
        out_h as usize,
        filter,
        kernel,
    );
    RgbImage::from_raw(out_w, out_h, pixels).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// Crops the central `height`×`width` window (torchvision's `center_crop`: top-left at
/// `int((H - h) / 2)`, zero padding when the image is smaller than the crop).
pub fn center_crop(image: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if (w, h) == (width, height) {
        return image.clone();
    }
    // Padding (if any) puts the image at (pad_left, pad_top) in a larger canvas.
    let pad_left = width.saturating_sub(w) / 2;
    let pad_top = height.saturating_sub(h) / 2;
    let canvas_w = w.max(width);
    let canvas_h = h.max(height);
    let left = (canvas_w - width) / 2;
    let top = (canvas_h - height) / 2;
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        let cy = y + top;
        if cy < pad_top || cy - pad_top >= h {
            continue;
        }
        for x in 0..width {
            let cx = x + left;
            if cx < pad_left || cx - pad_left >= w {
                continue;
            }
            out.put_pixel(x, y, *image.get_pixel(cx - pad_left, cy - pad_top));
        }
    }
    out
}

/// Turns images into model input as one model's `preprocessor_config.json` says.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: ImageProcessorConfig,
    limits: DecodeLimits,
}

impl ImageProcessor {
    pub fn new(config: ImageProcessorConfig) -> Self {
        Self {
            config,
            limits: DecodeLimits::default(),
        }
    }

    /// Reads `dir/preprocessor_config.json`.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Ok(Self::new(ImageProcessorConfig::from_file(
            &dir.join("preprocessor_config.json"),
        )?))
    }

    /// Replaces the decoding limits (decompression-bomb guard).
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn config(&self) -> &ImageProcessorConfig {
        &self.config
    }

    /// Decodes an image file to RGB (EXIF orientation applied, alpha as configured).
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        self.decode(&ImageSource::File(path))
    }

    /// Decodes an image file or in-memory image to RGB, as [`Self::load`].
    pub fn decode(&self, source: &ImageSource) -> Result<RgbImage> {
        let alpha = if self.config.convert_rgb {
            AlphaMode::CompositeWhite
        } else {
            AlphaMode::Drop
        };
        source.decode(self.limits, alpha)
    }

    /// The 8-bit steps: resize, then center crop.
    pub fn resize_and_crop(&self, image: &RgbImage) -> RgbImage {
        let resized = match self.config.resize {
            Some(to) => resize(image, to, self.config.filter, self.config.kernel),
            None => image.clone(),
        };
        match self.config.crop {
            Some((h, w)) => center_crop(&resized, h, w),
            None => resized,
        }
    }

    /// The float steps: rescale and normalize, into channel-first `[3, H, W]` order.
    pub fn to_chw(&self, image: &RgbImage) -> Vec<f32> {
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let scale = self.config.rescale.unwrap_or(1.0);
        let (mean, std) = self.config.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in image.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (f32::from(px[c]) * scale - mean[c]) / std[c];
            }
        }
        out
    }

    /// One image → `[3, H, W]` floats and its `(H, W)`.
    pub fn preprocess(&self, image: &RgbImage) -> (Vec<f32>, (u32, u32)) {
        let ready = self.resize_and_crop(image);
        let (w, h) = ready.dimensions();
        (self.to_chw(&ready), (h, w))
    }

    /// Images → a `(N, 3, H, W)` f32 tensor, preprocessed in parallel. All images must
    /// come out the same size (always true with a center crop or an exact resize).
    pub fn tensor(&self, images: &[RgbImage], device: &Device) -> Result<Tensor> {
        let ready: Vec<_> = images
            .par_iter()
            .map(|image| self.preprocess(image))
            .collect();
        stack(ready, device)
    }

    /// Decodes and preprocesses image files into a `(N, 3, H, W)` f32 tensor, one image
    /// per thread at a time.
    pub fn load_batch<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        device: &Device,
    ) -> Result<Tensor> {
        let ready = paths
            .par_iter()
            .map(|p| Ok(self.preprocess(&self.load(p.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        stack(ready, device)
    }
}

/// Preprocessed images (`[3, H, W]` floats and `(H, W)` each) → one `(N, 3, H, W)` tensor.
fn stack(ready: Vec<(Vec<f32>, (u32, u32))>, device: &Device) -> Result<Tensor> {
    let (h, w) = ready.first().map_or((0, 0), |r| r.1);
    if let Some((_, other)) = ready.iter().find(|r| r.1 != (h, w)) {
        return Err(Error::InvalidInput(format!(
            "images of different sizes after preprocessing ({:?} and {other:?}); \
             batch them separately",
            (h, w)
        )));
    }
    let n = ready.len();
    let mut data = Vec::with_capacity(n * 3 * (h * w) as usize);
    for (chw, _) in ready {
        data.extend_from_slice(&chw);
    }
    Ok(Tensor::from_vec(
        data,
        (n, 3, h as usize, w as usize),
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_crop_takes_the_middle_and_pads() {
        let mut img = RgbImage::new(5, 4);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([x as u8, y as u8, 1]);
        }
        let c = center_crop(&img, 2, 3);
        assert_eq!(c.get_pixel(0, 0).0, [1, 1, 1]);
        let p = center_crop(&img, 6, 5);
        assert_eq!(p.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(p.get_pixel(0, 1).0, [0, 0, 1]);
    }
}
