//! Stable Diffusion's denoiser, diffusers' `UNet2DConditionModel`: a time embedding,
//! down blocks of ResNet blocks (with cross-attention transformers in the `CrossAttn…`
//! ones), a middle block, up blocks fed the down path's skips. Built from the diffusers
//! `config.json` and weight names through a `VarBuilder`, so the same code loads a
//! checkpoint or trains from a `VarMap` (every op here has a backward pass).

use candle_core::{D, Module, Tensor};
use candle_nn::{Conv2d, GroupNorm, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::blocks::{Norms, ResnetBlock, conv, upsample};
use crate::encoder::clip::layers::differentiable_layer_norm as layer_norm;
use crate::{Error, Result};

/// An int for every block, or one list entry per block (diffusers allows both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    All(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::All(n) => *n,
            PerBlock::Each(v) => v.get(i).or(v.last()).copied().unwrap_or(1),
        }
    }
}

/// The fields of a diffusers `UNet2DConditionModel` config that this implementation
/// reads; configs asking for parts it lacks are refused by [`UNetConfig::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    pub sample_size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub layers_per_block: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub cross_attention_dim: usize,
    /// Heads per block in SD 1.x/2.x configs (diffusers' historical naming), unless
    /// `num_attention_heads` is given.
    pub attention_head_dim: PerBlock,
    pub num_attention_heads: Option<PerBlock>,
    pub transformer_layers_per_block: PerBlock,
    pub use_linear_projection: bool,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub act_fn: String,
    pub downsample_padding: usize,
    pub mid_block_scale_factor: f64,
    pub center_input_sample: bool,
    pub class_embed_type: Option<String>,
    pub addition_embed_type: Option<String>,
    pub time_cond_proj_dim: Option<usize>,
    pub only_cross_attention: bool,
    pub dual_cross_attention: bool,
    pub resnet_time_scale_shift: String,
    pub time_embedding_type: String,
}

impl Default for UNetConfig {
    /// diffusers' defaults (Stable Diffusion 1.x's shape).
    fn default() -> Self {
        Self {
            sample_size: 64,
            in_channels: 4,
            out_channels: 4,
            layers_per_block: 2,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_block_types: [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            up_block_types: [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            cross_attention_dim: 1280,
            attention_head_dim: PerBlock::All(8),
            num_attention_heads: None,
            transformer_layers_per_block: PerBlock::All(1),
            use_linear_projection: false,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            act_fn: "silu".into(),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            center_input_sample: false,
            class_embed_type: None,
            addition_embed_type: None,
            time_cond_proj_dim: None,
            only_cross_attention: false,
            dual_cross_attention: false,
            resnet_time_scale_shift: "default".into(),
            time_embedding_type: "positional".into(),
        }
    }
}

impl UNetConfig {
    /// Reads a diffusers `config.json`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidInput(format!("{}: not a UNet config: {e}", path.display()))
        })?;
        config
            .check()
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    /// Refuses what this UNet does not implement.
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(format!(
                "{n} block widths for {} down and {} up blocks",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        let unsupported = [
            (self.class_embed_type.is_some(), "class embeddings"),
            (
                self.addition_embed_type.is_some(),
                "added embeddings (SDXL)",
            ),
            (
                self.time_cond_proj_dim.is_some(),
                "time-conditioning projections",
            ),
            (self.only_cross_attention, "cross-attention-only blocks"),
            (self.dual_cross_attention, "dual cross-attention"),
            (
                self.resnet_time_scale_shift != "default",
                "scale-shift time embedding",
            ),
            (
                self.time_embedding_type != "positional",
                "Fourier time embedding",
            ),
            (self.act_fn != "silu", "activations other than SiLU"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(format!("{what} are not supported"));
        }
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if !matches!(
                t.as_str(),
                "CrossAttnDownBlock2D" | "DownBlock2D" | "CrossAttnUpBlock2D" | "UpBlock2D"
            ) {
                return Err(format!("block type {t} is not supported"));
            }
        }
        match self.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => Ok(()),
            Some(other) => Err(format!("mid block type {other} is not supported")),
        }
    }

    /// The GroupNorms of the ResNet blocks.
    fn norms(&self) -> Norms {
        Norms {
            groups: self.norm_num_groups,
            eps: self.norm_eps,
        }
    }

    fn heads(&self) -> &PerBlock {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
    }
}

/// Multi-head attention of diffusers' `Attention` (q, k, v without bias, output with).
#[derive(Debug)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    fn new(dim: usize, context: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            to_q: candle_nn::linear_no_bias(dim, dim, vb.pp("to_q"))?,
            to_k: candle_nn::linear_no_bias(context, dim, vb.pp("to_k"))?,
            to_v: candle_nn::linear_no_bias(context, dim, vb.pp("to_v"))?,
            to_out: candle_nn::linear(dim, dim, vb.pp("to_out.0"))?,
            heads,
        })
    }

    /// `x` (B, L, dim) attending to `context` (B, S, context dim), or to itself.
    fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let ctx = context.unwrap_or(x);
        let (b, l, dim) = x.dims3()?;
        let s = ctx.dim(1)?;
        let hd = dim / self.heads;
        let split = |t: Tensor, len: usize| -> Result<Tensor> {
            Ok(t.reshape((b, len, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.to_q.forward(x)?, l)?;
        let k = split(self.to_k.forward(ctx)?, s)?;
        let v = split(self.to_v.forward(ctx)?, s)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = crate::train::fused::attention_softmax(&scores, (hd as f64).powf(-0.5), false)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, dim))?;
        Ok(self.to_out.forward(&y)?)
    }
}

/// Self-attention, cross-attention and a GEGLU feed-forward, each after a LayerNorm and
/// added to the stream (diffusers' `BasicTransformerBlock`).
#[derive(Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    geglu: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn new(dim: usize, context: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, vb.pp("attn1"))?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, context, heads, vb.pp("attn2"))?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            geglu: candle_nn::linear(dim, 2 * inner, vb.pp("ff.net.0.proj"))?,
            ff_out: candle_nn::linear(inner, dim, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&layer_norm(&self.norm1, x)?, None)? + x)?;
        let x = (self
            .attn2
            .forward(&layer_norm(&self.norm2, &x)?, Some(context))?
            + &x)?;
        let projected = self.geglu.forward(&layer_norm(&self.norm3, &x)?)?;
        let inner = projected.dim(D::Minus1)? / 2;
        let gated = (projected.narrow(D::Minus1, 0, inner)?
            * projected.narrow(D::Minus1, inner, inner)?.gelu_erf()?)?;
        Ok((self.ff_out.forward(&gated)? + x)?)
    }
}

/// The input or output projection of a spatial transformer: a 1×1 conv on the map, or a
/// linear layer on the flattened positions (`use_linear_projection`).
#[derive(Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel` over a feature map: GroupNorm, project in, transformer
/// blocks over the h·w positions, project out, plus the input.
#[derive(Debug)]
struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    fn new(
        c: &UNetConfig,
        channels: usize,
        heads: usize,
        layers: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let projection = |vb: VarBuilder| -> Result<Projection> {
            Ok(match c.use_linear_projection {
                true => Projection::Linear(candle_nn::linear(channels, channels, vb)?),
                false => Projection::Conv(conv(channels, channels, 1, 1, 0, vb)?),
            })
        };
        Ok(Self {
            norm: candle_nn::group_norm(c.norm_num_groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: projection(vb.pp("proj_in"))?,
            blocks: (0..layers)
                .map(|i| {
                    TransformerBlock::new(
                        channels,
                        c.cross_attention_dim,
                        heads,
                        vb.pp(format!("transformer_blocks.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            proj_out: projection(vb.pp("proj_out"))?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = x.dims4()?;
        let to_rows =
            |t: Tensor| -> Result<Tensor> { Ok(t.flatten_from(2)?.transpose(1, 2)?.contiguous()?) };
        let to_map =
            |t: Tensor| -> Result<Tensor> { Ok(t.transpose(1, 2)?.reshape((b, ch, h, w))?) };
        let n = self.norm.forward(x)?;
        let mut rows = match &self.proj_in {
            Projection::Conv(p) => to_rows(p.forward(&n)?)?,
            Projection::Linear(p) => p.forward(&to_rows(n)?)?,
        };
        for block in &self.blocks {
            rows = block.forward(&rows, context)?;
        }
        let out = match &self.proj_out {
            Projection::Conv(p) => p.forward(&to_map(rows)?)?,
            Projection::Linear(p) => to_map(p.forward(&rows)?)?,
        };
        Ok((out + x)?)
    }
}

/// One resolution of the down or up path: ResNet blocks, each optionally followed by a
/// spatial transformer, then a 2× down- or upsampling conv.
#[derive(Debug)]
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    resample: Option<Conv2d>,
}

impl Level {
    /// ResNet blocks from `inputs[j]` to `out` channels, each followed by a spatial
    /// transformer when `cross` (heads and depth of down block `block`); no resampling.
    fn new(
        c: &UNetConfig,
        vb: &VarBuilder,
        inputs: &[usize],
        out: usize,
        block: usize,
        cross: bool,
        temb: usize,
    ) -> Result<Self> {
        let norms = c.norms();
        let mut level = Level {
            resnets: Vec::new(),
            attentions: Vec::new(),
            resample: None,
        };
        for (j, &inp) in inputs.iter().enumerate() {
            let vb_resnet = vb.pp(format!("resnets.{j}"));
            level.resnets.push(ResnetBlock::new(
                norms,
                inp,
                out,
                Some(temb),
                1.0,
                vb_resnet,
            )?);
            if cross {
                level.attentions.push(SpatialTransformer::new(
                    c,
                    out,
                    c.heads().get(block),
                    c.transformer_layers_per_block.get(block),
                    vb.pp(format!("attentions.{j}")),
                )?);
            }
        }
        Ok(level)
    }
}

/// diffusers' `UNet2DConditionModel`.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    time_linear_1: Linear,
    time_linear_2: Linear,
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: Option<(ResnetBlock, SpatialTransformer, ResnetBlock)>,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// The UNet of `config` with weights from `vb` (diffusers' names).
    pub fn new(config: UNetConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(Error::InvalidInput)?;
        let c = &config;
        let widths = &c.block_out_channels;
        let n = widths.len();
        let temb = 4 * widths[0];
        let heads = c.heads();
        let norms = c.norms();
        let mut down = Vec::with_capacity(n);
        let mut inp = widths[0];
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let out = widths[i];
            let vb = vb.pp(format!("down_blocks.{i}"));
            let cross = kind.starts_with("CrossAttn");
            let inputs: Vec<usize> = (0..c.layers_per_block)
                .map(|j| if j == 0 { inp } else { out })
                .collect();
            let mut level = Level::new(c, &vb, &inputs, out, i, cross, temb)?;
            if i + 1 < n {
                level.resample = Some(conv(
                    out,
                    out,
                    3,
                    2,
                    c.downsample_padding,
                    vb.pp("downsamplers.0.conv"),
                )?);
            }
            down.push(level);
            inp = out;
        }
        let last = widths[n - 1];
        let mid = match c.mid_block_type {
            Some(_) => {
                let vb = vb.pp("mid_block");
                let s = c.mid_block_scale_factor;
                Some((
                    ResnetBlock::new(norms, last, last, Some(temb), s, vb.pp("resnets.0"))?,
                    SpatialTransformer::new(
                        c,
                        last,
                        heads.get(n - 1),
                        c.transformer_layers_per_block.get(n - 1),
                        vb.pp("attentions.0"),
                    )?,
                    ResnetBlock::new(norms, last, last, Some(temb), s, vb.pp("resnets.1"))?,
                ))
            }
            None => None,
        };
        let mut up = Vec::with_capacity(n);
        let mut prev = last;
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let block = n - 1 - i; // the down block this one mirrors
            let out = widths[block];
            let skip_in = widths[block.saturating_sub(1)];
            let vb = vb.pp(format!("up_blocks.{i}"));
            let cross = kind.starts_with("CrossAttn");
            let layers = c.layers_per_block + 1;
            let inputs: Vec<usize> = (0..layers)
                .map(|j| {
                    let skip = if j + 1 == layers { skip_in } else { out };
                    let from = if j == 0 { prev } else { out };
                    from + skip
                })
                .collect();
            let mut level = Level::new(c, &vb, &inputs, out, block, cross, temb)?;
            if i + 1 < n {
                level.resample = Some(conv(out, out, 3, 1, 1, vb.pp("upsamplers.0.conv"))?);
            }
            up.push(level);
            prev = out;
        }
        Ok(Self {
            time_linear_1: candle_nn::linear(widths[0], temb, vb.pp("time_embedding.linear_1"))?,
            time_linear_2: candle_nn::linear(temb, temb, vb.pp("time_embedding.linear_2"))?,
            conv_in: conv(c.in_channels, widths[0], 3, 1, 1, vb.pp("conv_in"))?,
            norm_out: candle_nn::group_norm(
                c.norm_num_groups,
                widths[0],
                c.norm_eps,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv(widths[0], c.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
            down,
            mid,
            up,
            config,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The sinusoidal embedding `(B, width)` of `timesteps` `(B)` (diffusers'
    /// `get_timestep_embedding`).
    fn timestep_embedding(&self, timesteps: &Tensor) -> Result<Tensor> {
        let dim = self.config.block_out_channels[0];
        let half = dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| {
                (-(10000f64.ln()) * i as f64 / (half as f64 - self.config.freq_shift)).exp() as f32
            })
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, half), timesteps.device())?;
        let angles = timesteps
            .to_dtype(candle_core::DType::F32)?
            .unsqueeze(1)?
            .broadcast_mul(&freqs)?;
        let (sin, cos) = (angles.sin()?, angles.cos()?);
        Ok(match self.config.flip_sin_to_cos {
            true => Tensor::cat(&[cos, sin], 1)?,
            false => Tensor::cat(&[sin, cos], 1)?,
        })
    }

    /// The model's output `(B, out_channels, H, W)` for noisy latents `sample`
    /// `(B, in_channels, H, W)` at `timesteps` `(B)`, conditioned on `context`
    /// `(B, S, cross_attention_dim)`.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = sample.dims4()?;
        let stride = 1 << (self.config.block_out_channels.len() - 1);
        if ch != self.config.in_channels || h % stride != 0 || w % stride != 0 {
            return Err(Error::InvalidInput(format!(
                "latents of shape {:?}: {} channels and sides divisible by {stride} expected",
                sample.dims(),
                self.config.in_channels
            )));
        }
        if timesteps.dims() != [b]
            || context.dim(0)? != b
            || context.dim(2)? != self.config.cross_attention_dim
        {
            return Err(Error::InvalidInput(format!(
                "timesteps {:?} and context {:?} for a batch of {b} (context width {})",
                timesteps.dims(),
                context.dims(),
                self.config.cross_attention_dim
            )));
        }
        let temb = self.time_linear_2.forward(
            &self
                .time_linear_1
                .forward(&self.timestep_embedding(timesteps)?)?
                .silu()?,
        )?;
        let sample = match self.config.center_input_sample {
            true => ((sample * 2.0)? - 1.0)?,
            false => sample.clone(),
        };
        let mut x = self.conv_in.forward(&sample)?;
        let mut skips = vec![x.clone()];
        for level in &self.down {
            for (j, resnet) in level.resnets.iter().enumerate() {
                x = resnet.forward(&x, Some(&temb))?;
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(&x, context)?;
                }
                skips.push(x.clone());
            }
            if let Some(down) = &level.resample {
                x = down.forward(&x)?;
                skips.push(x.clone());
            }
        }
        if let Some((r0, attn, r1)) = &self.mid {
            x = r0.forward(&x, Some(&temb))?;
            x = r1.forward(&attn.forward(&x, context)?, Some(&temb))?;
        }
        for level in &self.up {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| {
                    Error::InvalidInput("the UNet's up path ran out of skips".into())
                })?;
                x = resnet.forward(&Tensor::cat(&[&x, &skip], 1)?, Some(&temb))?;
                if let Some(attn) = level.attentions.get(j) {
                    x = attn.forward(&x, context)?;
                }
            }
            if let Some(conv) = &level.resample {
                x = upsample(conv, &x)?;
            }
        }
        Ok(self.conv_out.forward(&self.norm_out.forward(&x)?.silu()?)?)
    }
}
