//! OneLLM's modality tokenizers (Han et al., "OneLLM: One Framework to Align All
//! Modalities with Language", CVPR 2024, §3.1): one light layer per modality turns a raw
//! signal into tokens of the universal encoder's width.
//!
//! | modality | input | layer | tokens |
//! |---|---|---|---|
//! | image | (3, S, S) pixels | a ViT encoder's own patch convolution, else a trainable one (`conv1.image`) | (S/P)² |
//! | video, depth, normal | (T, 3, S, S) frames | the same, per frame (averaged after the encoder) | (S/P)² |
//! | frames, `frame_stem = "efficientnet"` | (T, 3, S, S) frames | frozen EfficientNet-Lite0, then a trainable 1×1 conv of its 1280 channels | (S/32)² |
//! | audio | (mel bins, frames) log-mel map | 2-D conv, kernel 16, stride 10 (or a Whisper encoder's own frozen convolutions) | ⌊(m−16)/10+1⌋·⌊(f−16)/10+1⌋ (Whisper: ⌈f/2⌉) |
//! | point | (N, 6) points | FPS centres, kNN groups, 1×1 conv, max over the group | centres |
//! | IMU | (6, samples) accelerometer + gyroscope | 1-D conv, kernel 10, no bias | samples − 9 |
//! | fMRI | (voxels) | linear to tokens × width, viewed as (width, tokens) | tokens |
//!
//! Every stem is a patch extraction from the raw signal (plain Rust: the signal never
//! needs a gradient) followed by one linear map, which is what the reference's
//! convolutions compute; so the trainable part is an ordinary differentiable matmul.
//! Weight names are the reference's (`conv1.{audio,point,fmri,imu}`,
//! `positional_embedding.{m}`), and a convolution's weight `(W, C, k…)` is used flattened
//! to `(W, C·k…)` with patches in the same order. [`readers`] reads the files of each
//! modality into these shapes.

mod point;
pub mod readers;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use point::{farthest_point_sample, k_nearest};

use crate::encoder::universal::VitInput;
use crate::{Error, Result};

/// The eight modalities of OneLLM, by the reference's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image,
    Video,
    Audio,
    Point,
    /// An image and its depth map (two frames, averaged after the encoder).
    Rgbd,
    /// An image and its surface-normal map.
    Rgbn,
    Fmri,
    Imu,
}

impl Modality {
    /// In the reference's order.
    pub const ALL: [Modality; 8] = [
        Modality::Image,
        Modality::Video,
        Modality::Audio,
        Modality::Point,
        Modality::Rgbd,
        Modality::Rgbn,
        Modality::Fmri,
        Modality::Imu,
    ];

    /// The reference's key (`image`, `video`, … `imu`).
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Video => "video",
            Modality::Audio => "audio",
            Modality::Point => "point",
            Modality::Rgbd => "rgbd",
            Modality::Rgbn => "rgbn",
            Modality::Fmri => "fmri",
            Modality::Imu => "imu",
        }
    }

    /// Whether the input is frames of the image stem (image, video, depth, normal).
    pub fn is_visual(self) -> bool {
        matches!(
            self,
            Modality::Image | Modality::Video | Modality::Rgbd | Modality::Rgbn
        )
    }
}

impl std::str::FromStr for Modality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Modality::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown modality `{s}` (known: image, video, audio, point, rgbd, rgbn, fmri, imu)"
                ))
            })
    }
}

/// Where audio tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioStem {
    /// OneLLM's trainable 16×16 patch convolution of the log-mel map (`conv1.audio`).
    #[default]
    Patch,
    /// The universal encoder's own pretrained audio input (a Whisper encoder's two GELU
    /// convolutions and sinusoidal positions), frozen with the encoder.
    Encoder,
}

/// Where frame tokens come from when the encoder is not a ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameStem {
    /// A trainable patch convolution of the pixels (`conv1.image`, `(W, 3, P, P)`).
    #[default]
    Patch,
    /// The feature map of a frozen pretrained EfficientNet-Lite0 (1280 channels at
    /// stride 32) through a trainable 1×1 convolution (`conv1.image`, `(W, 1280, 1, 1)`):
    /// an encoder pretrained on sound (Whisper) then gets visual features to work on.
    Efficientnet,
}

/// Channels of the EfficientNet-Lite0 feature map and its stride.
pub const EFFICIENTNET_CHANNELS: usize = 1280;
pub const EFFICIENTNET_STRIDE: usize = 32;

/// Sizes of the non-visual stems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StemConfig {
    /// Frames (image, video, depth, normal) when the encoder is not a ViT with its own
    /// patch embedding: side and patch size of the trainable one.
    pub image_size: usize,
    pub image_patch: usize,
    /// The trainable frame stem: a patch convolution or EfficientNet features.
    pub frame_stem: FrameStem,
    /// Audio: mel bins × frames of the log-mel map (OneLLM: 128 × 1024).
    pub audio_mel_bins: usize,
    pub audio_frames: usize,
    /// The audio stem: OneLLM's patch convolution or the encoder's own (Whisper only).
    pub audio_stem: AudioStem,
    /// Points per cloud, centres sampled, neighbours per centre (8192, 1024, 32).
    pub points: usize,
    pub point_centres: usize,
    pub point_neighbours: usize,
    /// First of the three columns that FPS and kNN measure distances on. The released
    /// OneLLM uses 3 (the colour columns of its data); 0 uses x, y, z.
    pub point_distance_column: usize,
    /// IMU samples per window (OneLLM: 400, 2 s at 200 Hz).
    pub imu_samples: usize,
    /// fMRI voxels and the tokens they become (15724 → 8).
    pub fmri_voxels: usize,
    pub fmri_tokens: usize,
}

impl Default for StemConfig {
    fn default() -> Self {
        Self {
            image_size: 224,
            image_patch: 14,
            frame_stem: FrameStem::Patch,
            audio_mel_bins: 128,
            audio_frames: 1024,
            audio_stem: AudioStem::Patch,
            points: 8192,
            point_centres: 1024,
            point_neighbours: 32,
            point_distance_column: 3,
            imu_samples: 400,
            fmri_voxels: 15724,
            fmri_tokens: 8,
        }
    }
}

/// Audio: 16×16 patches at stride 10 of the (mel bins, frames) map.
pub const AUDIO_KERNEL: usize = 16;
pub const AUDIO_STRIDE: usize = 10;
/// IMU: windows of 10 samples over the 6 channels.
pub const IMU_KERNEL: usize = 10;
pub const IMU_CHANNELS: usize = 6;
/// Point features: x, y, z, r, g, b.
pub const POINT_CHANNELS: usize = 6;

impl StemConfig {
    /// Token count of the audio stem: (frequency patches, time patches).
    pub fn audio_grid(&self) -> (usize, usize) {
        let n = |len: usize| (len.saturating_sub(AUDIO_KERNEL)) / AUDIO_STRIDE + 1;
        (n(self.audio_mel_bins), n(self.audio_frames))
    }

    /// Pixels per frame token along a side: the patch, or EfficientNet's stride.
    pub fn frame_stride(&self) -> usize {
        match self.frame_stem {
            FrameStem::Patch => self.image_patch,
            FrameStem::Efficientnet => EFFICIENTNET_STRIDE,
        }
    }

    /// Input channels and kernel side of the trainable frame convolution.
    fn frame_kernel(&self) -> (usize, usize) {
        match self.frame_stem {
            FrameStem::Patch => (3, self.image_patch),
            FrameStem::Efficientnet => (EFFICIENTNET_CHANNELS, 1),
        }
    }

    /// Tokens a modality makes before the class token (frames: with the trainable patch
    /// embedding).
    pub fn tokens(&self, modality: Modality) -> Option<usize> {
        match modality {
            // Whisper's second convolution: kernel 3, stride 2, padding 1.
            Modality::Audio if self.audio_stem == AudioStem::Encoder => {
                Some(self.audio_frames.div_ceil(2))
            }
            Modality::Audio => {
                let (f, t) = self.audio_grid();
                Some(f * t)
            }
            Modality::Point => Some(self.point_centres),
            Modality::Imu => Some(self.imu_samples + 1 - IMU_KERNEL),
            Modality::Fmri => Some(self.fmri_tokens),
            _ => Some((self.image_size / self.frame_stride()).pow(2)),
        }
    }
}

/// A modality's raw input, batched: `data` is row-major in `shape`.
#[derive(Debug, Clone)]
pub struct Signal {
    pub modality: Modality,
    pub data: Vec<f32>,
    /// image: (B, 3, S, S); video/rgbd/rgbn: (B, T, 3, S, S); audio: (B, mel bins, frames);
    /// point: (B, N, 6); IMU: (B, 6, samples); fMRI: (B, voxels).
    pub shape: Vec<usize>,
}

impl Signal {
    /// Checks the shape against the stems and that every value is finite.
    pub fn validate(&self, c: &StemConfig, image_size: usize) -> Result<()> {
        let m = self.modality.name();
        let want: Vec<usize> = match self.modality {
            Modality::Image => vec![3, image_size, image_size],
            Modality::Video | Modality::Rgbd | Modality::Rgbn => {
                let t = self.shape.get(1).copied().unwrap_or(0);
                vec![t.max(1), 3, image_size, image_size]
            }
            Modality::Audio => vec![c.audio_mel_bins, c.audio_frames],
            Modality::Point => vec![c.points, POINT_CHANNELS],
            Modality::Imu => vec![IMU_CHANNELS, c.imu_samples],
            Modality::Fmri => vec![c.fmri_voxels],
        };
        if self.shape.len() != want.len() + 1 || self.shape[1..] != want[..] || self.shape[0] == 0 {
            return Err(Error::InvalidInput(format!(
                "{m} input has shape {:?}; expected (batch, {})",
                self.shape,
                want.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if self.data.len() != self.shape.iter().product::<usize>() {
            return Err(Error::InvalidInput(format!(
                "{m} input holds {} values, not the {} of shape {:?}",
                self.data.len(),
                self.shape.iter().product::<usize>(),
                self.shape
            )));
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "{m} input has a non-finite value ({}) at flat index {i}",
                self.data[i]
            )));
        }
        Ok(())
    }

    pub fn batch(&self) -> usize {
        self.shape[0]
    }
}

/// The trainable input side of the universal encoder: the stems of the non-visual
/// modalities (`conv1.{audio,point,imu,fmri}`) and their position tables
/// (`positional_embedding.{m}`); for an encoder that is not a ViT also a patch embedding
/// for frames (`conv1.image`, `positional_embedding.image`) and a class token
/// (`class_embedding`).
#[derive(Debug, Clone)]
pub struct Stems {
    config: StemConfig,
    width: usize,
    /// (W, 3·P·P) or (W, 1280) and (W), frames' embedding without a ViT.
    image: Option<(Tensor, Tensor)>,
    /// (1, 1, W), without a pretrained class token.
    class_embedding: Option<Tensor>,
    /// (1 + L, W) per modality with its own table (image: shared by every frame kind).
    positions: HashMap<Modality, Tensor>,
    /// (W, 1·16·16) and (W); none when the encoder tokenizes audio itself.
    audio: Option<(Tensor, Tensor)>,
    /// (W, 6) and (W)
    point: (Tensor, Tensor),
    /// (W, 6·10), no bias
    imu: Tensor,
    /// (tokens·W, voxels) and (tokens·W)
    fmri: (Tensor, Tensor),
}

impl Stems {
    /// Reads (or, on a `VarMap`, creates) the stems under `vb`: with `own_frames`, the
    /// frame patch embedding and its positions too; with `own_class`, a class token.
    pub fn new(
        config: StemConfig,
        width: usize,
        own_frames: bool,
        own_class: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        // PyTorch's default init for a conv or linear layer: U(±1/√fan_in).
        let init = |fan_in: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        let weight = |vb: &VarBuilder, shape: &[usize]| {
            let fan_in: usize = shape[1..].iter().product();
            vb.get_with_hints(shape, "weight", init(fan_in))?
                .reshape((shape[0], fan_in))
        };
        let bias = |vb: &VarBuilder, out: usize, fan_in: usize| {
            vb.get_with_hints(out, "bias", init(fan_in))
        };
        let k = AUDIO_KERNEL;
        let conv = vb.pp("conv1");
        let (audio, point, imu, fmri, image) = (
            conv.pp("audio"),
            conv.pp("point.conv1"),
            conv.pp("imu"),
            conv.pp("fmri"),
            conv.pp("image"),
        );
        let fmri_out = config.fmri_tokens * width;
        let normal = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let (channels, p) = config.frame_kernel();
        let image = match own_frames {
            true => Some((
                weight(&image, &[width, channels, p, p])?,
                bias(&image, width, channels * p * p)?,
            )),
            false => None,
        };
        let class_embedding = match own_class {
            true => Some(vb.get_with_hints((1, 1, width), "class_embedding", normal)?),
            false => None,
        };
        let mut positions = HashMap::new();
        let own_audio = config.audio_stem == AudioStem::Patch;
        let mut owned = vec![Modality::Point, Modality::Imu, Modality::Fmri];
        if own_audio {
            owned.push(Modality::Audio);
        }
        if own_frames {
            owned.push(Modality::Image);
        }
        for m in owned {
            let l = config.tokens(m).unwrap_or(0) + 1;
            let name = format!("positional_embedding.{}", m.name());
            positions.insert(m, vb.get_with_hints((l, width), &name, normal)?);
        }
        Ok(Self {
            image,
            class_embedding,
            positions,
            audio: match own_audio {
                true => Some((
                    weight(&audio, &[width, 1, k, k])?,
                    bias(&audio, width, k * k)?,
                )),
                false => None,
            },
            point: (
                weight(&point, &[width, POINT_CHANNELS, 1, 1])?,
                bias(&point, width, POINT_CHANNELS)?,
            ),
            imu: weight(&imu, &[width, IMU_CHANNELS, IMU_KERNEL])?,
            fmri: (
                weight(&fmri, &[fmri_out, config.fmri_voxels])?,
                bias(&fmri, fmri_out, config.fmri_voxels)?,
            ),
            config,
            width,
        })
    }

    pub fn config(&self) -> &StemConfig {
        &self.config
    }

    /// Side of the frames: the ViT's when the encoder has one, else the trainable patch
    /// embedding's.
    pub fn frame_size(&self, vit: Option<&VitInput>) -> usize {
        vit.map_or(self.config.image_size, |v| v.image_size)
    }

    /// The stem's tokens `(B, L, W)` of a validated signal (frames: `(B·T, L, W)`),
    /// before the class token and positions; frames go through the ViT's patch
    /// embedding when there is one.
    pub fn tokens(&self, signal: &Signal, vit: Option<&VitInput>) -> Result<Tensor> {
        let b = signal.batch();
        let c = &self.config;
        let cpu = Device::Cpu;
        let tokens = match signal.modality {
            Modality::Audio => {
                let Some((w, bias)) = &self.audio else {
                    return Err(Error::InvalidInput(
                        "audio goes through the encoder's own stem, not these stems".into(),
                    ));
                };
                let (patches, l) = audio_patches(&signal.data, b, c);
                let x = Tensor::from_vec(patches, (b * l, AUDIO_KERNEL * AUDIO_KERNEL), &cpu)?;
                affine(&x, w, Some(bias))?.reshape((b, l, self.width))?
            }
            Modality::Imu => {
                let (patches, l) = imu_patches(&signal.data, b, c.imu_samples);
                let x = Tensor::from_vec(patches, (b * l, IMU_CHANNELS * IMU_KERNEL), &cpu)?;
                affine(&x, &self.imu, None)?.reshape((b, l, self.width))?
            }
            Modality::Fmri => {
                let x = Tensor::from_vec(signal.data.clone(), (b, c.fmri_voxels), &cpu)?;
                // (B, tokens·W) viewed as (B, W, tokens), as the reference's reshape.
                affine(&x, &self.fmri.0, Some(&self.fmri.1))?
                    .reshape((b, self.width, c.fmri_tokens))?
                    .transpose(1, 2)?
            }
            Modality::Point => self.point_tokens(signal)?,
            Modality::Image | Modality::Video | Modality::Rgbd | Modality::Rgbn => {
                let s = self.frame_size(vit);
                let frames = signal.data.len() / (3 * s * s);
                match (vit, &self.image) {
                    (Some(vit), _) => vit.patch_tokens(&signal.data, frames)?,
                    (None, Some(_)) if c.frame_stem == FrameStem::Efficientnet => {
                        return Err(Error::InvalidInput(
                            "frames go through EfficientNet first: use frame_feature_tokens".into(),
                        ));
                    }
                    (None, Some((w, bias))) => {
                        let p = c.image_patch;
                        let (patches, l) = image_patches(&signal.data, frames, s, p);
                        let x = Tensor::from_vec(patches, (frames * l, 3 * p * p), &cpu)?;
                        affine(&x, w, Some(bias))?.reshape((frames, l, self.width))?
                    }
                    (None, None) => {
                        return Err(Error::InvalidInput(
                            "frames need a patch embedding: the encoder is not a ViT and the \
                             stems were built without one"
                                .into(),
                        ));
                    }
                }
            }
        };
        Ok(tokens.contiguous()?)
    }

    /// Frame tokens `(N, L, W)` from EfficientNet feature tokens `(N, L, 1280)`, through
    /// the trainable 1×1 convolution.
    pub fn frame_feature_tokens(&self, features: &Tensor) -> Result<Tensor> {
        let Some((w, bias)) = &self.image else {
            return Err(Error::InvalidInput(
                "these stems have no frame convolution".into(),
            ));
        };
        let (n, l, c) = features.dims3()?;
        let x = features.reshape((n * l, c))?;
        Ok(affine(&x, w, Some(bias))?.reshape((n, l, self.width))?)
    }

    /// The learned class token `(1, 1, W)`, for an encoder without one.
    pub fn class_embedding(&self) -> Option<&Tensor> {
        self.class_embedding.as_ref()
    }

    /// The learned position table `(1 + L, W)` of `m` (frames share the image's), if the
    /// stems own one.
    pub fn positions(&self, m: Modality) -> Option<&Tensor> {
        let key = if m.is_visual() { Modality::Image } else { m };
        self.positions.get(&key)
    }

    /// FPS centres, their kNN groups, the 1×1 convolution of every point and the max
    /// over each group: `(B, centres, W)`.
    fn point_tokens(&self, signal: &Signal) -> Result<Tensor> {
        let c = &self.config;
        let (b, n, m, k) = (
            signal.batch(),
            c.points,
            c.point_centres,
            c.point_neighbours,
        );
        let mut groups = Vec::with_capacity(b * m * k);
        for i in 0..b {
            let cloud = &signal.data[i * n * POINT_CHANNELS..(i + 1) * n * POINT_CHANNELS];
            let coords: Vec<[f32; 3]> = cloud
                .chunks_exact(POINT_CHANNELS)
                .map(|p| {
                    let o = c.point_distance_column;
                    [p[o], p[o + 1], p[o + 2]]
                })
                .collect();
            let centres = farthest_point_sample(&coords, m)?;
            let centre_coords: Vec<[f32; 3]> = centres.iter().map(|&j| coords[j]).collect();
            for group in k_nearest(&coords, &centre_coords, k)? {
                groups.extend(group.into_iter().map(|j| (i * n + j) as u32));
            }
        }
        let cpu = Device::Cpu;
        let points = Tensor::from_vec(signal.data.clone(), (b * n, POINT_CHANNELS), &cpu)?;
        let h = affine(&points, &self.point.0, Some(&self.point.1))?;
        let idx = Tensor::from_vec(groups, b * m * k, &cpu)?;
        Ok(h.index_select(&idx, 0)?
            .reshape((b, m, k, self.width))?
            .max(2)?)
    }

    /// Every parameter, by its reference name (for saving).
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let w = self.width;
        let k = AUDIO_KERNEL;
        let mut out: Vec<(String, Tensor)> = self
            .positions
            .iter()
            .map(|(m, t)| (format!("positional_embedding.{}", m.name()), t.clone()))
            .collect();
        if let Some(cls) = &self.class_embedding {
            out.push(("class_embedding".into(), cls.clone()));
        }
        if let Some((weight, bias)) = &self.image {
            let (channels, p) = self.config.frame_kernel();
            out.push((
                "conv1.image.weight".into(),
                weight.reshape((w, channels, p, p))?,
            ));
            out.push(("conv1.image.bias".into(), bias.clone()));
        }
        if let Some((weight, bias)) = &self.audio {
            out.push(("conv1.audio.weight".into(), weight.reshape((w, 1, k, k))?));
            out.push(("conv1.audio.bias".into(), bias.clone()));
        }
        out.extend([
            (
                "conv1.point.conv1.weight".into(),
                self.point.0.reshape((w, POINT_CHANNELS, 1, 1))?,
            ),
            ("conv1.point.conv1.bias".into(), self.point.1.clone()),
            (
                "conv1.imu.weight".into(),
                self.imu.reshape((w, IMU_CHANNELS, IMU_KERNEL))?,
            ),
            ("conv1.fmri.weight".into(), self.fmri.0.clone()),
            ("conv1.fmri.bias".into(), self.fmri.1.clone()),
        ]);
        Ok(out)
    }
}

/// `x W^T + b` for `x` (R, in), `w` (out, in).
fn affine(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// 16×16 patches at stride 10 of each (mel bins, frames) map, frequency-major, as the
/// reference's `Conv2d(1, W, 16, stride=10)` reads them: (B·L, 256) and L.
fn audio_patches(data: &[f32], b: usize, c: &StemConfig) -> (Vec<f32>, usize) {
    let (gf, gt) = c.audio_grid();
    let (h, w, k, s) = (c.audio_mel_bins, c.audio_frames, AUDIO_KERNEL, AUDIO_STRIDE);
    let mut out = Vec::with_capacity(b * gf * gt * k * k);
    for map in data.chunks_exact(h * w).take(b) {
        for pf in 0..gf {
            for pt in 0..gt {
                for i in 0..k {
                    let row = (pf * s + i) * w + pt * s;
                    out.extend_from_slice(&map[row..row + k]);
                }
            }
        }
    }
    (out, gf * gt)
}

/// Windows of 10 samples over the 6 channels at stride 1, channel-major within a window,
/// as `Conv1d(6, W, 10)` reads them: (B·L, 60) and L.
fn imu_patches(data: &[f32], b: usize, samples: usize) -> (Vec<f32>, usize) {
    let l = samples + 1 - IMU_KERNEL;
    let mut out = Vec::with_capacity(b * l * IMU_CHANNELS * IMU_KERNEL);
    for window in data.chunks_exact(IMU_CHANNELS * samples).take(b) {
        for t in 0..l {
            for ch in 0..IMU_CHANNELS {
                let start = ch * samples + t;
                out.extend_from_slice(&window[start..start + IMU_KERNEL]);
            }
        }
    }
    (out, l)
}

/// Pixels `(B, 3, S, S)` → patches `(B·g², 3·P·P)` in the order of a stride-P convolution
/// with weight `(W, 3, P, P)`, and g².
pub fn image_patches(data: &[f32], b: usize, size: usize, patch: usize) -> (Vec<f32>, usize) {
    let g = size / patch;
    let mut out = Vec::with_capacity(b * 3 * size * size);
    for image in data.chunks_exact(3 * size * size).take(b) {
        for py in 0..g {
            for px in 0..g {
                for ch in 0..3 {
                    for i in 0..patch {
                        let row = ch * size * size + (py * patch + i) * size + px * patch;
                        out.extend_from_slice(&image[row..row + patch]);
                    }
                }
            }
        }
    }
    (out, g * g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_patches_follow_the_convolution() {
        let c = StemConfig {
            audio_mel_bins: 26,
            audio_frames: 36,
            ..Default::default()
        };
        assert_eq!(c.audio_grid(), (2, 3));
        let data: Vec<f32> = (0..26 * 36).map(|v| v as f32).collect();
        let (p, l) = audio_patches(&data, 1, &c);
        assert_eq!(l, 6);
        // Patch (1, 2): rows 10.., columns 20..; its first row starts at 10·36 + 20.
        let patch = &p[5 * 256..6 * 256];
        assert_eq!(patch[0], (10 * 36 + 20) as f32);
        assert_eq!(patch[16], (11 * 36 + 20) as f32);
    }

    #[test]
    fn imu_windows_are_channel_major() {
        let data: Vec<f32> = (0..6 * 12).map(|v| v as f32).collect();
        let (p, l) = imu_patches(&data, 1, 12);
        assert_eq!(l, 3);
        assert_eq!(&p[60..63], &[1.0, 2.0, 3.0]);
        assert_eq!(p[60 + 10], 13.0);
    }

    #[test]
    fn bad_signals_are_named() {
        let c = StemConfig::default();
        let imu = Signal {
            modality: Modality::Imu,
            data: vec![0.0; 5 * 400],
            shape: vec![1, 5, 400],
        };
        let err = imu.validate(&c, 224).unwrap_err().to_string();
        assert!(err.contains("imu input has shape [1, 5, 400]") && err.contains("6, 400"));
        let mut point = Signal {
            modality: Modality::Point,
            data: vec![0.0; 8192 * 6],
            shape: vec![1, 8192, 6],
        };
        point.data[7] = f32::NAN;
        let err = point.validate(&c, 224).unwrap_err().to_string();
        assert!(
            err.contains("non-finite value (NaN) at flat index 7"),
            "{err}"
        );
    }
}
