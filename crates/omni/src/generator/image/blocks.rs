//! The pieces diffusers' UNet and VAE share: convolutions, `ResnetBlock2D` and the
//! 2× resampling convs.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, Linear, VarBuilder};

use crate::Result;

/// A `k`×`k` convolution from `vb` (`weight`, `bias`).
pub(crate) fn conv(
    inp: usize,
    out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding,
        stride,
        ..Default::default()
    };
    Ok(candle_nn::conv2d(inp, out, k, cfg, vb)?)
}

/// How a block's GroupNorms are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Norms {
    pub groups: usize,
    pub eps: f64,
}

/// diffusers' `ResnetBlock2D`: GroupNorm → SiLU → conv, plus the projected time embedding
/// (UNet; the VAE has none), GroupNorm → SiLU → conv, plus the (projected) input, over
/// `scale`.
#[derive(Debug)]
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    scale: f64,
}

impl ResnetBlock {
    /// `inp` → `out` channels; `temb`: the time embedding's width, if any.
    pub fn new(
        norms: Norms,
        inp: usize,
        out: usize,
        temb: Option<usize>,
        scale: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let Norms { groups, eps } = norms;
        Ok(Self {
            norm1: candle_nn::group_norm(groups, inp, eps, vb.pp("norm1"))?,
            conv1: conv(inp, out, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: temb
                .map(|t| candle_nn::linear(t, out, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: candle_nn::group_norm(groups, out, eps, vb.pp("norm2"))?,
            conv2: conv(out, out, 3, 1, 1, vb.pp("conv2"))?,
            shortcut: match inp == out {
                true => None,
                false => Some(conv(inp, out, 1, 1, 0, vb.pp("conv_shortcut"))?),
            },
            scale,
        })
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&temb.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok(((skip + h)? / self.scale)?)
    }
}

/// 2× nearest-neighbour upsampling, then a 3×3 conv (diffusers' `Upsample2D`).
pub(crate) fn upsample(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    Ok(conv.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)?)
}
