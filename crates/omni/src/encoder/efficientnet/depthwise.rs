//! Depthwise 2-D convolution on the CPU with TensorFlow "SAME" padding, bias and an optional
//! ReLU6, one rayon task per (image, channel) plane. candle runs a grouped convolution as one
//! convolution per group, which is far too slow for depthwise layers with ~1000 groups.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::Result;

/// TensorFlow "SAME" padding for one spatial axis: `(output size, pad before, pad after)`.
/// The extra pixel of an odd total goes after, as in TF and lukemelas' `Conv2dSamePadding`.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(size);
    (out, total / 2, total - total / 2)
}

/// Depthwise convolution.
///
/// # Shapes
/// `x`: `[b, c, h, w]`, `weight`: `[c, k, k]` (flattened), `bias`: `[c]` →
/// `[b, c, ceil(h / stride), ceil(w / stride)]`.
pub fn depthwise_same(
    x: &Tensor,
    weight: &[f32],
    bias: &[f32],
    kernel: usize,
    stride: usize,
    relu6: bool,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, pt, _) = same_padding(h, kernel, stride);
    let (wo, pl, _) = same_padding(w, kernel, stride);
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; b * c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, o)| {
            let ch = plane % c;
            let inp = &input[plane * h * w..(plane + 1) * h * w];
            let kw = &weight[ch * kernel * kernel..(ch + 1) * kernel * kernel];
            plane_conv(
                inp,
                o,
                kw,
                bias[ch],
                Geometry {
                    h,
                    w,
                    ho,
                    wo,
                    kernel,
                    stride,
                    pt,
                    pl,
                },
            );
            if relu6 {
                o.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
        });
    Ok(Tensor::from_vec(out, (b, c, ho, wo), &Device::Cpu)?)
}

#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kernel: usize,
    stride: usize,
    pt: usize,
    pl: usize,
}

/// [`plane_conv_impl`] compiled for the widest vectors the CPU has.
fn plane_conv(inp: &[f32], out: &mut [f32], kw: &[f32], bias: f32, g: Geometry) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA).
            return unsafe { plane_conv_avx512(inp, out, kw, bias, g) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { plane_conv_avx2(inp, out, kw, bias, g) };
        }
    }
    plane_conv_impl(inp, out, kw, bias, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn plane_conv_avx512(inp: &[f32], out: &mut [f32], kw: &[f32], bias: f32, g: Geometry) {
    plane_conv_impl(inp, out, kw, bias, g);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn plane_conv_avx2(inp: &[f32], out: &mut [f32], kw: &[f32], bias: f32, g: Geometry) {
    plane_conv_impl(inp, out, kw, bias, g);
}

/// One plane: row by row, each kernel tap adds `weight × input row` to the output row (the
/// inner loop is a contiguous axpy for stride 1).
#[inline(always)]
fn plane_conv_impl(inp: &[f32], out: &mut [f32], kw: &[f32], bias: f32, g: Geometry) {
    for oy in 0..g.ho {
        let row = &mut out[oy * g.wo..(oy + 1) * g.wo];
        row.fill(bias);
        for ky in 0..g.kernel {
            let Some(iy) = (oy * g.stride + ky).checked_sub(g.pt) else {
                continue;
            };
            if iy >= g.h {
                continue;
            }
            let irow = &inp[iy * g.w..(iy + 1) * g.w];
            for kx in 0..g.kernel {
                let wv = kw[ky * g.kernel + kx];
                // ix = ox * stride + kx - pl must lie in [0, w).
                let lo = g.pl.saturating_sub(kx).div_ceil(g.stride);
                let hi = ((g.w + g.pl).saturating_sub(kx))
                    .div_ceil(g.stride)
                    .min(g.wo);
                if lo >= hi {
                    continue;
                }
                let start = lo * g.stride + kx - g.pl;
                if g.stride == 1 {
                    let src = &irow[start..start + (hi - lo)];
                    for (o, &v) in row[lo..hi].iter_mut().zip(src) {
                        *o += wv * v;
                    }
                } else {
                    for (j, o) in row[lo..hi].iter_mut().enumerate() {
                        *o += wv * irow[start + j * g.stride];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (112, 0, 1));
        assert_eq!(same_padding(56, 5, 2), (28, 1, 2));
        assert_eq!(same_padding(14, 5, 1), (14, 2, 2));
        assert_eq!(same_padding(7, 3, 2), (4, 1, 1));
    }

    #[test]
    fn matches_candle_grouped_conv() {
        let dev = Device::Cpu;
        for (h, w, k, s) in [(9, 7, 3, 1), (8, 8, 5, 2), (7, 10, 3, 2), (2, 3, 5, 1)] {
            let c = 3;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
            let got = depthwise_same(
                &x,
                &wt.flatten_all().unwrap().to_vec1().unwrap(),
                &bias.to_vec1().unwrap(),
                k,
                s,
                false,
            )
            .unwrap();
            let (_, pt, pb) = same_padding(h, k, s);
            let (_, pl, pr) = same_padding(w, k, s);
            let xp = x
                .pad_with_zeros(2, pt, pb)
                .unwrap()
                .pad_with_zeros(3, pl, pr)
                .unwrap();
            let want = xp
                .conv2d(&wt, 0, s, 1, c)
                .unwrap()
                .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-5, "{h}x{w} k{k} s{s}: {d}");
        }
    }
}
