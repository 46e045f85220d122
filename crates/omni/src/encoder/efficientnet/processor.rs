//! EfficientNet-Lite input: the TensorFlow Lite models' evaluation preprocessing — resize so
//! the short side is 256 (bicubic), center crop 224, then `(x − 127) / 128` on 0..255, i.e.
//! mean 127/255 and std 128/255 on 0..1 for every channel (`MEAN_RGB`/`STDDEV_RGB` of
//! `efficientnet_lite_builder.py`). Decoding, resizing and cropping belong to
//! `modality::image`; this file holds the constants and the last step.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Input side in pixels.
pub const INPUT_SIZE: usize = 224;
/// Short side before the center crop.
pub const RESIZE_SHORT_SIDE: usize = 256;
/// Per-channel mean on 0..1.
pub const MEAN: f32 = 127.0 / 255.0;
/// Per-channel std on 0..1.
pub const STD: f32 = 128.0 / 255.0;

/// Normalizes interleaved RGB bytes `[h, w, 3]` into the network input `[3, h, w]` f32,
/// computing `(p / 255 − MEAN) / STD` in f32 as the reference does.
pub fn rgb_to_input(rgb: &[u8], h: usize, w: usize, device: &Device) -> Result<Tensor> {
    if rgb.len() != h * w * 3 {
        return Err(Error::InvalidInput(format!(
            "expected {h}×{w}×3 = {} RGB bytes, got {}",
            h * w * 3,
            rgb.len()
        )));
    }
    let mut out = vec![0f32; 3 * h * w];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = (px[c] as f32 / 255.0 - MEAN) / STD;
        }
    }
    Ok(Tensor::from_vec(out, (3, h, w), device)?)
}
