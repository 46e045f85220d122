//! Image decoding: any jpeg/png/webp/gif/bmp file (first frame) → 8-bit RGB, the way
//! transformers' `load_image` + `convert_to_rgb` see it (PIL `open`, `exif_transpose`,
//! transparency composited onto white).
//!
//! The format is taken from the file's content, never from its extension. Before any pixel
//! buffer is allocated the header's dimensions are checked against [`DecodeLimits`], so a
//! decompression bomb (a tiny file declaring a 30000×30000 image) is refused up front.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// The formats omni decodes.
pub const SUPPORTED_FORMATS: &str = "jpeg, png, webp, gif, bmp";

/// Upper bounds checked against an image's header before decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height accepted, in pixels.
    pub max_side: u32,
    /// Largest width × height accepted. PIL refuses images above 2 × `MAX_IMAGE_PIXELS`
    /// (178,956,970 pixels) as decompression bombs; so do we by default.
    pub max_pixels: u64,
    /// Largest buffer the decoder may allocate, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: 65_500,
            max_pixels: 178_956_970,
            max_alloc: 1 << 30,
        }
    }
}

/// How transparency becomes RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlphaMode {
    /// Composite onto a white background (transformers' `convert_to_rgb`, i.e. PIL
    /// `alpha_composite` over white), the default of CLIP/SigLIP processors.
    #[default]
    CompositeWhite,
    /// Drop the alpha channel (PIL's `Image.convert("RGB")`).
    Drop,
}

/// Decodes the image file at `path` into RGB with the default limits.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    load_rgb_with(path, DecodeLimits::default(), AlphaMode::CompositeWhite)
}

/// Decodes the image file at `path` into RGB.
pub fn load_rgb_with(path: &Path, limits: DecodeLimits, alpha: AlphaMode) -> Result<RgbImage> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let image = decode_reader(BufReader::new(file), limits, path)?;
    Ok(to_rgb(image, alpha))
}

/// Where an image comes from: a file, or bytes in memory (an upload) with a name for
/// error messages.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    File(&'a Path),
    Bytes { name: &'a str, data: &'a [u8] },
}

impl<'a> From<&'a Path> for ImageSource<'a> {
    fn from(path: &'a Path) -> Self {
        Self::File(path)
    }
}

impl ImageSource<'_> {
    /// The file path, or the name given to the bytes: what error messages call it.
    pub fn name(&self) -> &Path {
        match self {
            Self::File(path) => path,
            Self::Bytes { name, .. } => Path::new(name),
        }
    }

    /// Decodes the image into RGB.
    pub fn decode(&self, limits: DecodeLimits, alpha: AlphaMode) -> Result<RgbImage> {
        match *self {
            Self::File(path) => load_rgb_with(path, limits, alpha),
            Self::Bytes { name, data } => {
                let image = decode_reader(Cursor::new(data), limits, Path::new(name))?;
                Ok(to_rgb(image, alpha))
            }
        }
    }
}

/// The `(width, height)` an image's header declares, without decoding its pixels.
pub fn image_dimensions(data: &[u8], name: &Path) -> Result<(u32, u32)> {
    let media = |reason: String| Error::Media {
        path: name.to_path_buf(),
        reason,
    };
    ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?
        .into_dimensions()
        .map_err(|e| media(describe("image", e)))
}

/// Decodes an in-memory image; `name` is used in error messages.
pub fn decode_bytes(bytes: &[u8], name: &Path, alpha: AlphaMode) -> Result<RgbImage> {
    let image = decode_reader(Cursor::new(bytes), DecodeLimits::default(), name)?;
    Ok(to_rgb(image, alpha))
}

/// Decodes the first frame, with EXIF orientation applied.
pub fn decode_reader<R: BufRead + Seek>(
    reader: R,
    limits: DecodeLimits,
    path: &Path,
) -> Result<DynamicImage> {
    let media = |reason: String| Error::Media {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let format = reader.format().ok_or_else(|| {
        media(format!(
            "not a recognised image file (omni reads {SUPPORTED_FORMATS})"
        ))
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    ) {
        return Err(media(format!(
            "unsupported image format {format:?} (omni reads {SUPPORTED_FORMATS})"
        )));
    }
    let mut image_limits = Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(image_limits);
    let what = format!("{format:?}").to_lowercase();
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| media(describe(&what, e)))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels || width > limits.max_side || height > limits.max_side {
        return Err(media(format!(
            "{what} header declares {width}×{height} pixels, above the limit of {} pixels \
             ({} per side): refusing a possible decompression bomb",
            limits.max_pixels, limits.max_side
        )));
    }
    if width == 0 || height == 0 {
        return Err(media(format!("{what} image is empty ({width}×{height})")));
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| media(describe(&what, e)))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| media(describe(&what, e)))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// One line saying what went wrong while decoding a `what` image.
fn describe(what: &str, error: ImageError) -> String {
    match error {
        ImageError::Limits(e) => format!("{what} image exceeds the decoding limits: {e}"),
        ImageError::Unsupported(e) => format!("unsupported {what} variant: {e}"),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated {what} file")
        }
        e => format!("corrupt {what} file: {e}"),
    }
}

/// Converts any decoded image to 8-bit RGB as transformers' `convert_to_rgb` does.
pub fn to_rgb(image: DynamicImage, alpha: AlphaMode) -> RgbImage {
    if !image.color().has_alpha() || alpha == AlphaMode::Drop {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut out = RgbImage::new(width, height);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = composite_over_white(u32::from(src[c]), a);
        }
    }
    out
}

/// PIL's `alpha_composite` (AlphaComposite.c, 7-bit fixed point) of one channel value
/// with alpha `a` over an opaque white background.
fn composite_over_white(value: u32, a: u32) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return 255;
    }
    // With an opaque destination outa255 = 255 * 255, so coef1 = a << 7 exactly.
    let coef1 = a << PRECISION_BITS;
    let coef2 = (255 << PRECISION_BITS) - coef1;
    let tmp = value * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS).min(255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_matches_pil_corners() {
        assert_eq!(composite_over_white(0, 0), 255);
        assert_eq!(composite_over_white(0, 255), 0);
        assert_eq!(composite_over_white(200, 255), 200);
        // PIL: alpha_composite(white, (0, 0, 0, 128)) → 127
        assert_eq!(composite_over_white(0, 128), 127);
    }
}
