//! Images: decode common formats, then resize, crop, rescale and normalize exactly as the
//! model's Hugging Face image processor (`CLIPImageProcessor`, `SiglipImageProcessor`)
//! does, configured from its `preprocessor_config.json`.
//!
//! ```text
//! file ─► decode (image crate: jpeg/png/webp/gif/bmp, first frame, EXIF orientation,
//!                 header-size limits against decompression bombs)
//!      ─► RGB (transparency composited onto white, as transformers' convert_to_rgb)
//!      ─► resize (shortest edge or exact; antialiased bicubic/bilinear, bit-exact with
//!                 torchvision's uint8 kernel or Pillow's)
//!      ─► center crop ─► rescale + normalize ─► (N, 3, H, W) f32 tensor
//! ```

mod config;
mod decode;
mod processor;
mod resize;
#[cfg(target_arch = "x86_64")]
mod resize_avx2;
mod tiles;

pub use config::{
    IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD,
    ImageProcessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ResizeTo, resized_size,
};
pub use decode::{
    AlphaMode, DecodeLimits, ImageSource, SUPPORTED_FORMATS, decode_bytes, decode_reader,
    image_dimensions, load_rgb, load_rgb_with, to_rgb,
};
pub use image::{Rgb, RgbImage};
pub use processor::{ImageProcessor, center_crop, resize};
pub use resize::{Filter, Kernel, resize_u8};
pub use tiles::{Tiles, TilingProcessor};
