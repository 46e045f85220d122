//! Stable Diffusion's image autoencoder, diffusers' `AutoencoderKL`: the encoder maps a
//! picture to the mean and spread of its latent (a diagonal Gaussian), the decoder maps a
//! latent back to pixels. Built from the diffusers `config.json` and weight names.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, GroupNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::blocks::{Norms, ResnetBlock, conv, upsample};
use crate::{Error, Result};

/// The fields of a diffusers `AutoencoderKL` config this implementation reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub sample_size: usize,
    /// Latents are multiplied by this after encoding (and divided before decoding) by the
    /// sampling pipeline.
    pub scaling_factor: f64,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
    pub act_fn: String,
}

impl Default for VaeConfig {
    /// diffusers' defaults, with Stable Diffusion's scaling factor.
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![64],
            layers_per_block: 1,
            norm_num_groups: 32,
            sample_size: 32,
            scaling_factor: 0.18215,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            act_fn: "silu".into(),
        }
    }
}

impl VaeConfig {
    /// Reads a diffusers `config.json`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: not an autoencoder config: {e}",
                path.display()
            ))
        })?;
        if config.block_out_channels.is_empty() || config.act_fn != "silu" {
            return Err(Error::InvalidInput(format!(
                "{}: block widths and a SiLU activation expected",
                path.display()
            )));
        }
        Ok(config)
    }

    /// How many times the encoder halves the sides.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// The GroupNorms of the autoencoder (diffusers builds them with ε = 1e-6).
fn norms(c: &VaeConfig) -> Norms {
    Norms {
        groups: c.norm_num_groups,
        eps: 1e-6,
    }
}

/// Single-head self-attention over a feature map, added to it (the mid block's).
#[derive(Debug)]
struct MapAttention {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl MapAttention {
    fn new(c: &VaeConfig, ch: usize, vb: VarBuilder) -> Result<Self> {
        let norms = norms(c);
        Ok(Self {
            norm: candle_nn::group_norm(norms.groups, ch, norms.eps, vb.pp("group_norm"))?,
            to_q: candle_nn::linear(ch, ch, vb.pp("to_q"))?,
            to_k: candle_nn::linear(ch, ch, vb.pp("to_k"))?,
            to_v: candle_nn::linear(ch, ch, vb.pp("to_v"))?,
            to_out: candle_nn::linear(ch, ch, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = x.dims4()?;
        let rows = self
            .norm
            .forward(x)?
            .flatten_from(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.to_q.forward(&rows)?;
        let k = self.to_k.forward(&rows)?;
        let v = self.to_v.forward(&rows)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = crate::train::fused::attention_softmax(&scores, (ch as f64).powf(-0.5), false)?;
        let y = self.to_out.forward(&probs.matmul(&v)?)?;
        Ok((y.transpose(1, 2)?.reshape((b, ch, h, w))? + x)?)
    }
}

/// ResNet block, attention, ResNet block (diffusers' `UNetMidBlock2D`).
#[derive(Debug)]
struct MidBlock {
    first: ResnetBlock,
    attention: Option<MapAttention>,
    second: ResnetBlock,
}

impl MidBlock {
    fn new(c: &VaeConfig, ch: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            first: ResnetBlock::new(norms(c), ch, ch, None, 1.0, vb.pp("resnets.0"))?,
            attention: match c.mid_block_add_attention {
                true => Some(MapAttention::new(c, ch, vb.pp("attentions.0"))?),
                false => None,
            },
            second: ResnetBlock::new(norms(c), ch, ch, None, 1.0, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.first.forward(x, None)?;
        if let Some(a) = &self.attention {
            x = a.forward(&x)?;
        }
        self.second.forward(&x, None)
    }
}

/// ResNet blocks then, except at the last resolution, a 2× resampling conv.
#[derive(Debug)]
struct Level {
    resnets: Vec<ResnetBlock>,
    resample: Option<Conv2d>,
}

/// diffusers' `AutoencoderKL`.
#[derive(Debug)]
pub struct Vae {
    config: VaeConfig,
    enc_conv_in: Conv2d,
    enc_down: Vec<Level>,
    enc_mid: MidBlock,
    enc_norm_out: GroupNorm,
    enc_conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    dec_conv_in: Conv2d,
    dec_mid: MidBlock,
    dec_up: Vec<Level>,
    dec_norm_out: GroupNorm,
    dec_conv_out: Conv2d,
}

impl Vae {
    /// The autoencoder of `config` with weights from `vb` (diffusers' names).
    pub fn new(config: VaeConfig, vb: VarBuilder) -> Result<Self> {
        let c = &config;
        let widths = &c.block_out_channels;
        let n = widths.len();
        let latent = c.latent_channels;
        let norms = norms(c);
        let (enc, dec) = (vb.pp("encoder"), vb.pp("decoder"));
        let mut enc_down = Vec::with_capacity(n);
        let mut inp = widths[0];
        for (i, &out) in widths.iter().enumerate() {
            let vb = enc.pp(format!("down_blocks.{i}"));
            let resnets = (0..c.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { inp } else { out };
                    ResnetBlock::new(norms, from, out, None, 1.0, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<_>>()?;
            // Padded on the right and bottom only, then a stride-2 conv without padding.
            let resample = (i + 1 < n)
                .then(|| conv(out, out, 3, 2, 0, vb.pp("downsamplers.0.conv")))
                .transpose()?;
            enc_down.push(Level { resnets, resample });
            inp = out;
        }
        let last = widths[n - 1];
        let mut dec_up = Vec::with_capacity(n);
        let mut prev = last;
        for (i, &out) in widths.iter().rev().enumerate() {
            let vb = dec.pp(format!("up_blocks.{i}"));
            let resnets = (0..=c.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { prev } else { out };
                    ResnetBlock::new(norms, from, out, None, 1.0, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<_>>()?;
            let resample = (i + 1 < n)
                .then(|| conv(out, out, 3, 1, 1, vb.pp("upsamplers.0.conv")))
                .transpose()?;
            dec_up.push(Level { resnets, resample });
            prev = out;
        }
        let group_norm =
            |ch: usize, vb: VarBuilder| candle_nn::group_norm(norms.groups, ch, norms.eps, vb);
        Ok(Self {
            enc_conv_in: conv(c.in_channels, widths[0], 3, 1, 1, enc.pp("conv_in"))?,
            enc_mid: MidBlock::new(c, last, enc.pp("mid_block"))?,
            enc_norm_out: group_norm(last, enc.pp("conv_norm_out"))?,
            enc_conv_out: conv(last, 2 * latent, 3, 1, 1, enc.pp("conv_out"))?,
            quant_conv: c
                .use_quant_conv
                .then(|| conv(2 * latent, 2 * latent, 1, 1, 0, vb.pp("quant_conv")))
                .transpose()?,
            post_quant_conv: c
                .use_post_quant_conv
                .then(|| conv(latent, latent, 1, 1, 0, vb.pp("post_quant_conv")))
                .transpose()?,
            dec_conv_in: conv(latent, last, 3, 1, 1, dec.pp("conv_in"))?,
            dec_mid: MidBlock::new(c, last, dec.pp("mid_block"))?,
            dec_norm_out: group_norm(widths[0], dec.pp("conv_norm_out"))?,
            dec_conv_out: conv(widths[0], c.out_channels, 3, 1, 1, dec.pp("conv_out"))?,
            enc_down,
            dec_up,
            config,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The latent distribution of `images` `(B, in_channels, H, W)` in [−1, 1]: its mean
    /// and standard deviation, each `(B, latent_channels, H / f, W / f)`.
    pub fn encode(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, ch, h, w) = images.dims4()?;
        let f = self.config.downscale();
        if ch != self.config.in_channels || h % f != 0 || w % f != 0 {
            return Err(Error::InvalidInput(format!(
                "images of shape {:?}: {} channels and sides divisible by {f} expected",
                images.dims(),
                self.config.in_channels
            )));
        }
        let mut x = self.enc_conv_in.forward(images)?;
        for level in &self.enc_down {
            for r in &level.resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(down) = &level.resample {
                x = down.forward(&x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?)?;
            }
        }
        x = self.enc_mid.forward(&x)?;
        let mut moments = self
            .enc_conv_out
            .forward(&self.enc_norm_out.forward(&x)?.silu()?)?;
        if let Some(q) = &self.quant_conv {
            moments = q.forward(&moments)?;
        }
        let latent = self.config.latent_channels;
        let mean = moments.narrow(1, 0, latent)?;
        let logvar = moments.narrow(1, latent, latent)?.clamp(-30f32, 20f32)?;
        Ok((mean, (logvar * 0.5)?.exp()?))
    }

    /// Pixels `(B, out_channels, H·f, W·f)` (about [−1, 1]) of `latents`
    /// `(B, latent_channels, H, W)` (unscaled: divide sampled latents by
    /// `scaling_factor` first).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        if latents.dims().len() != 4 || latents.dim(1)? != self.config.latent_channels {
            return Err(Error::InvalidInput(format!(
                "latents of shape {:?}: (B, {}, H, W) expected",
                latents.dims(),
                self.config.latent_channels
            )));
        }
        let mut z = latents.clone();
        if let Some(q) = &self.post_quant_conv {
            z = q.forward(&z)?;
        }
        let mut x = self.dec_mid.forward(&self.dec_conv_in.forward(&z)?)?;
        for level in &self.dec_up {
            for r in &level.resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(conv) = &level.resample {
                x = upsample(conv, &x)?;
            }
        }
        let x = self.dec_norm_out.forward(&x)?.silu()?;
        Ok(self.dec_conv_out.forward(&x)?.contiguous()?)
    }
}
