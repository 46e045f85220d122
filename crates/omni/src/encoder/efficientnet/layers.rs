//! EfficientNet layers with their BatchNorm folded into the convolution:
//! `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)` (inference only; the folded result equals
//! conv → BN up to float rounding).

use candle_core::{D, Tensor};

use super::config::BlockConfig;
use super::depthwise::{depthwise_same, same_padding};
use super::weights::Weights;
use crate::Result;

/// Folds BatchNorm `bn` (prefix of `weight`, `bias`, `running_mean`, `running_var`) into a
/// convolution weight `[o, …]`; returns the folded weight and bias.
fn fold_bn(w: &Weights, conv: Tensor, bn: &str, eps: f64) -> Result<(Tensor, Tensor)> {
    let o = conv.dim(0)?;
    let gamma = w.get(&format!("{bn}.weight"), &[o])?;
    let beta = w.get(&format!("{bn}.bias"), &[o])?;
    let mean = w.get(&format!("{bn}.running_mean"), &[o])?;
    let var = w.get(&format!("{bn}.running_var"), &[o])?;
    let scale = (gamma / (var + eps)?.sqrt()?)?; // [o]
    let mut shape = vec![1; conv.rank()];
    shape[0] = o;
    let weight = conv.broadcast_mul(&scale.reshape(shape)?)?;
    let bias = (beta - (mean * &scale)?)?;
    Ok((weight, bias))
}

/// `x.clamp(0, 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0f32, 6f32)?)
}

/// A 1×1 convolution + BN as a matrix product.
#[derive(Debug)]
pub struct Pointwise {
    weight: Tensor, // [o, i]
    bias: Tensor,   // [o, 1]
}

impl Pointwise {
    pub(crate) fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        i: usize,
        o: usize,
        eps: f64,
    ) -> Result<Self> {
        let c = w.get(&format!("{conv}.weight"), &[o, i, 1, 1])?;
        let (weight, bias) = fold_bn(w, c, bn, eps)?;
        Ok(Self {
            weight: weight.reshape((o, i))?,
            bias: bias.reshape((o, 1))?,
        })
    }

    /// # Shapes
    /// `[b, i, h, w]` → `[b, o, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, i, h, w) = x.dims4()?;
        let x = x.reshape((b, i, h * w))?;
        let y = self
            .weight
            .broadcast_matmul(&x)?
            .broadcast_add(&self.bias)?;
        Ok(y.reshape((b, (), h, w))?)
    }
}

/// A depthwise k×k convolution + BN (+ ReLU6).
#[derive(Debug)]
pub struct Depthwise {
    weight: Vec<f32>, // [c, k, k]
    bias: Vec<f32>,   // [c]
    kernel: usize,
    stride: usize,
}

impl Depthwise {
    pub(crate) fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        c: usize,
        k: usize,
        stride: usize,
        eps: f64,
    ) -> Result<Self> {
        let t = w.get(&format!("{conv}.weight"), &[c, 1, k, k])?;
        let (weight, bias) = fold_bn(w, t, bn, eps)?;
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            kernel: k,
            stride,
        })
    }

    /// # Shapes
    /// `[b, c, h, w]` → `[b, c, ceil(h / s), ceil(w / s)]`, with ReLU6.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        depthwise_same(x, &self.weight, &self.bias, self.kernel, self.stride, true)
    }
}

/// The stem: 3×3 stride-2 convolution + BN + ReLU6 with TF "SAME" padding.
#[derive(Debug)]
pub struct Stem {
    weight: Tensor, // [o, 3, 3, 3]
    bias: Tensor,   // [1, o, 1, 1]
}

impl Stem {
    pub(crate) fn load(w: &Weights, o: usize, eps: f64) -> Result<Self> {
        let c = w.get("_conv_stem.weight", &[o, 3, 3, 3])?;
        let (weight, bias) = fold_bn(w, c, "_bn0", eps)?;
        Ok(Self {
            weight,
            bias: bias.reshape((1, o, 1, 1))?,
        })
    }

    /// # Shapes
    /// `[b, 3, h, w]` → `[b, o, ceil(h / 2), ceil(w / 2)]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (_, pt, pb) = same_padding(h, 3, 2);
        let (_, pl, pr) = same_padding(w, 3, 2);
        let x = x
            .pad_with_zeros(D::Minus2, pt, pb)?
            .pad_with_zeros(D::Minus1, pl, pr)?;
        relu6(
            &x.conv2d(&self.weight, 0, 2, 1, 1)?
                .broadcast_add(&self.bias)?,
        )
    }
}

/// An MBConv block without squeeze-excitation: [1×1 expand + ReLU6] → depthwise + ReLU6 →
/// 1×1 project (linear) [+ input].
#[derive(Debug)]
pub struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

impl Block {
    pub(crate) fn load(w: &Weights, i: usize, c: &BlockConfig, eps: f64) -> Result<Self> {
        let p = format!("_blocks.{i}");
        let hidden = c.expanded.unwrap_or(c.in_channels);
        let expand = match c.expanded {
            Some(e) => Some(Pointwise::load(
                w,
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
                c.in_channels,
                e,
                eps,
            )?),
            None => None,
        };
        Ok(Self {
            expand,
            depthwise: Depthwise::load(
                w,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                hidden,
                c.kernel,
                c.stride,
                eps,
            )?,
            project: Pointwise::load(
                w,
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                hidden,
                c.out_channels,
                eps,
            )?,
            residual: c.residual(),
        })
    }

    /// # Shapes
    /// `[b, in, h, w]` → `[b, out, h / stride, w / stride]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => relu6(&e.forward(x)?)?,
            None => x.clone(),
        };
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        Ok(if self.residual { (h + x)? } else { h })
    }
}
