//! Antialiased separable resampling of 8-bit images, as Pillow's `Image.resize`
//! (`libImaging/Resample.c`) and torch's uint8 `interpolate(..., antialias=True)`
//! (`UpSampleKernelAVXAntialias.h`, a port of Pillow-SIMD) compute it.
//!
//! Both compute the same filter weights in f64 (support scaled by the downscale factor,
//! so downscaling averages over all covered pixels), round them to fixed point, run a
//! horizontal pass into an 8-bit buffer and then a vertical pass. They differ only in the
//! fixed-point precision: Pillow uses 22 bits in i32, torch the most bits that keep every
//! weight in i16. transformers 5's default (torchvision) processors use torch's; the
//! `*ImageProcessorPil` ones use Pillow's. Either way the result is bit-exact.

use rayon::prelude::*;

use crate::{Error, Result};

/// A resampling filter, numbered as `PIL.Image.Resampling` (and HF's `resample` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Resampling.BOX` (4).
    Box,
    /// `Resampling.BILINEAR` (2): the triangle filter.
    Bilinear,
    /// `Resampling.HAMMING` (5).
    Hamming,
    /// `Resampling.BICUBIC` (3): Keys' cubic with a = -0.5.
    Bicubic,
    /// `Resampling.LANCZOS` (1): windowed sinc, 3 lobes.
    Lanczos,
}

impl Filter {
    /// The filter numbered `code` in `PIL.Image.Resampling`; nearest (0) is not offered.
    pub fn from_pil(code: u32) -> Result<Self> {
        Ok(match code {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unsupported resample filter {code} (supported: 1 lanczos, 2 bilinear, \
                     3 bicubic, 4 box, 5 hamming)"
                )));
            }
        })
    }

    /// Half-width of the filter at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    px.sin() / px * (0.54 + 0.46 * px.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Which fixed-point rounding of the weights to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// torch's uint8 antialiased kernel (torchvision, transformers 5 default processors).
    #[default]
    Torch,
    /// Pillow's `Image.resize` (transformers `*ImageProcessorPil`, transformers 4).
    Pil,
}

/// Fixed-point weights for resampling one axis from `in_size` to `out_size`.
struct Coeffs {
    /// Weights per output pixel (`ksize` each, zero padded).
    ksize: usize,
    /// First input index and number of taps per output pixel.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    precision: u32,
}

fn coeffs(in_size: usize, out_size: usize, filter: Filter, kernel: Kernel) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut real = vec![0.0f64; out_size * ksize];
    let mut w_max = 0.0f64;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `as` truncates toward zero, as C's (int) cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let k = &mut real[xx * ksize..xx * ksize + n];
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate() {
            *w = filter.eval(((x + xmin) as f64 - center + 0.5) * ss);
            total += *w;
        }
        if total != 0.0 {
            for w in k.iter_mut() {
                *w /= total;
                w_max = w_max.max(*w);
            }
        }
        bounds.push((xmin, n));
    }
    let precision = match kernel {
        Kernel::Pil => 22,
        Kernel::Torch => {
            let mut p = 0;
            while p < 22 {
                let next = (0.5 + w_max * f64::from(1u32 << (p + 1))) as i64;
                if next >= 1 << 15 {
                    break;
                }
                p += 1;
            }
            p
        }
    };
    let one = f64::from(1u32 << precision);
    let weights = real
        .iter()
        .map(|&w| {
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        })
        .collect();
    Coeffs {
        ksize,
        bounds,
        weights,
        precision,
    }
}

#[inline]
fn clip8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// The rounding offset every accumulator starts from.
fn start(c: &Coeffs) -> i32 {
    if c.precision > 0 {
        1i32 << (c.precision - 1).min(31)
    } else {
        0
    }
}

/// One row of the horizontal pass, `C` interleaved channels accumulated together.
fn horizontal_row<const C: usize>(row: &[u8], out_row: &mut [u8], c: &Coeffs) {
    for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
        let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
        let taps = &row[xmin * C..(xmin + n) * C];
        let mut acc = [start(c); C];
        for (px, &w) in taps.chunks_exact(C).zip(k) {
            for ch in 0..C {
                acc[ch] += i32::from(px[ch]) * w;
            }
        }
        for ch in 0..C {
            out_row[xx * C + ch] = clip8(acc[ch], c.precision);
        }
    }
}

/// [`horizontal_row`] for any channel count.
fn horizontal_row_any(row: &[u8], out_row: &mut [u8], channels: usize, c: &Coeffs) {
    for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
        let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
        for ch in 0..channels {
            let mut acc = start(c);
            for (x, &w) in k.iter().enumerate() {
                acc += i32::from(row[(xmin + x) * channels + ch]) * w;
            }
            out_row[xx * channels + ch] = clip8(acc, c.precision);
        }
    }
}

/// Output row `yy` of the vertical pass over `source` rows of `stride` bytes.
fn vertical_row(source: &[u8], stride: usize, yy: usize, out_row: &mut [u8], c: &Coeffs) {
    let (ymin, n) = c.bounds[yy];
    let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
    // In chunks that keep the accumulators in L1.
    const CHUNK: usize = 1024;
    let mut acc = [0i32; CHUNK];
    for (part, out) in out_row.chunks_mut(CHUNK).enumerate() {
        let (from, acc) = (part * CHUNK, &mut acc[..out.len()]);
        acc.fill(start(c));
        for (y, &w) in k.iter().enumerate() {
            let at = (ymin + y) * stride + from;
            for (a, &p) in acc.iter_mut().zip(&source[at..at + out.len()]) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = clip8(a, c.precision);
        }
    }
}

/// Resizes an interleaved 8-bit image of `channels` channels from `width`×`height` to
/// `out_width`×`out_height`. Returns the new pixel buffer (`out_height` rows of
/// `out_width * channels` bytes).
#[allow(clippy::too_many_arguments)]
pub fn resize_u8(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
    kernel: Kernel,
) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), width * height * channels);
    let mut current: std::borrow::Cow<[u8]> = pixels.into();
    let mut cur_width = width;
    if out_width != width {
        let c = coeffs(width, out_width, filter, kernel);
        let mut out = vec![0u8; out_width * height * channels];
        #[cfg(target_arch = "x86_64")]
        let fast = std::arch::is_x86_feature_detected!("avx2")
            .then(|| super::resize_avx2::Weights16::new(&c.weights, c.ksize, &c.bounds))
            .flatten();
        // Rows are independent: split across threads (a large image alone keeps both busy).
        out.par_chunks_mut(out_width * channels)
            .zip(pixels.par_chunks(width * channels))
            .for_each_init(Vec::new, |_planes, (out_row, row)| {
                #[cfg(target_arch = "x86_64")]
                if let Some(w16) = &fast {
                    use super::resize_avx2::horizontal_row as simd;
                    let (b, s, p) = (&c.bounds, start(&c), c.precision);
                    // SAFETY: AVX2 was detected above.
                    match channels {
                        3 => return unsafe { simd::<3>(row, out_row, w16, b, s, p, _planes) },
                        4 => return unsafe { simd::<4>(row, out_row, w16, b, s, p, _planes) },
                        1 => return unsafe { simd::<1>(row, out_row, w16, b, s, p, _planes) },
                        _ => {}
                    }
                }
                match channels {
                    3 => horizontal_row::<3>(row, out_row, &c),
                    4 => horizontal_row::<4>(row, out_row, &c),
                    1 => horizontal_row::<1>(row, out_row, &c),
                    _ => horizontal_row_any(row, out_row, channels, &c),
                }
            });
        current = out.into();
        cur_width = out_width;
    }
    if out_height != height {
        let c = coeffs(height, out_height, filter, kernel);
        let stride = cur_width * channels;
        let mut out = vec![0u8; out_height * stride];
        let source = &current[..];
        out.par_chunks_mut(stride)
            .enumerate()
            .for_each(|(yy, out_row)| vertical_row(source, stride, yy, out_row, &c));
        current = out.into();
    }
    current.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        let out = resize_u8(&px, 4, 3, 3, 4, 3, Filter::Bicubic, Kernel::Pil);
        assert_eq!(out, px);
    }

    #[test]
    fn constant_image_stays_constant() {
        let px = vec![77u8; 50 * 40 * 3];
        for kernel in [Kernel::Pil, Kernel::Torch] {
            for filter in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
                let out = resize_u8(&px, 50, 40, 3, 17, 23, filter, kernel);
                assert!(out.iter().all(|&v| v == 77), "{filter:?} {kernel:?}");
                let out = resize_u8(&px, 50, 40, 3, 120, 90, filter, kernel);
                assert!(out.iter().all(|&v| v == 77), "{filter:?} {kernel:?}");
            }
        }
    }
}
