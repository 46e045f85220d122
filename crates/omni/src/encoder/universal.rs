//! OneLLM's universal encoder: one frozen pretrained ViT shared by every modality
//! (reference: `model/LLM/onellm.py`, `clip_encode_image`). A modality's tokens get the
//! ViT's class token in front, position embeddings (the ViT's own for frames, a learned
//! table per modality otherwise), `ln_pre`, every transformer block and `ln_post` on
//! every token; the projection to CLIP's joint space is not used.
//!
//! Two pretrained sources: CLIP's ViT in open_clip's layout (`conv1`, `class_embedding`,
//! `positional_embedding`, `ln_pre`, `transformer.resblocks.{i}.{ln_1, attn.in_proj_*,
//! attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_post`), as OneLLM stores it under
//! `clip.visual.`; or Whisper's audio encoder blocks (seed 003: any well-pretrained
//! transformer can serve as a universal cross-modal encoder), for machines without CLIP.
//! Either runs on the CLIP encoder of [`crate::encoder::clip`] (eps 1e-5).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::encoder::clip::Activation;
use crate::encoder::clip::layers::{Encoder, EncoderDims};
use crate::encoder::whisper::{ConvStem, Weights, WhisperConfig};
use crate::formats::ct2::Ct2File;
use crate::modality::universal::image_patches;
use crate::projector::norm::Norm;
use crate::{Error, Result};

/// CLIP's own frame input: its frozen patch convolution and position table.
#[derive(Debug, Clone)]
pub struct VitInput {
    /// (W, 3·P·P): the patch convolution, flattened.
    patch_embedding: Tensor,
    /// (1 + g², W)
    pub position_embedding: Tensor,
    pub patch: usize,
    pub image_size: usize,
}

impl VitInput {
    /// The patch embedding of `b` images `(b, 3, S, S)` given as row-major pixels:
    /// `(b, g², W)`.
    pub fn patch_tokens(&self, pixels: &[f32], b: usize) -> Result<Tensor> {
        let (patches, l) = image_patches(pixels, b, self.image_size, self.patch);
        let x = Tensor::from_vec(patches, (b * l, 3 * self.patch * self.patch), &Device::Cpu)?;
        let w = self.patch_embedding.dim(0)?;
        Ok(x.matmul(&self.patch_embedding.t()?)?.reshape((b, l, w))?)
    }
}

/// Whisper's own audio input: its frozen convolution stem and sinusoidal positions.
#[derive(Debug, Clone)]
pub struct AudioInput {
    stem: ConvStem,
    /// (context, W)
    positions: Tensor,
    pub mel_bins: usize,
}

impl AudioInput {
    /// Tokens `(b, ⌈frames/2⌉, W)` of `b` log-mel maps `(b, mel bins, frames)` given as
    /// row-major values, positions not yet added.
    pub fn tokens(&self, mel: &[f32], b: usize, frames: usize) -> Result<Tensor> {
        let context = self.positions.dim(0)?;
        if frames > 2 * context {
            return Err(Error::InvalidInput(format!(
                "the Whisper audio stem takes at most {} frames, not {frames}",
                2 * context
            )));
        }
        let x = Tensor::from_vec(mel.to_vec(), (b, self.mel_bins, frames), &Device::Cpu)?;
        Ok(self.stem.forward(&x)?.contiguous()?)
    }

    /// The position table `(1 + tokens, W)`: zeros for the class token, then Whisper's
    /// sinusoids.
    pub fn position_table(&self, tokens: usize) -> Result<Tensor> {
        let w = self.positions.dim(1)?;
        let class = Tensor::zeros((1, w), DType::F32, &Device::Cpu)?;
        Ok(Tensor::cat(
            &[&class, &self.positions.narrow(0, 0, tokens)?],
            0,
        )?)
    }
}

/// The shared encoder: a pretrained transformer's blocks with their final LayerNorm.
#[derive(Debug, Clone)]
pub struct UniversalEncoder {
    /// A ViT's frame input and class token (CLIP); other encoders have neither, and the
    /// model learns them with the stems.
    vit: Option<VitInput>,
    /// Whisper's audio input (Whisper encoders only).
    audio: Option<AudioInput>,
    class_embedding: Option<Tensor>,
    ln_pre: Option<Norm>,
    encoder: Encoder,
    ln_post: Norm,
    width: usize,
}

/// Blocks in the CLIP encoder's names (`layers.{i}.…`) from a lookup of open_clip-style
/// block tensors, by block index and open_clip suffix.
fn clip_blocks(
    layers: usize,
    width: usize,
    get: &dyn Fn(usize, &str) -> Result<Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let mut renamed = HashMap::new();
    for i in 0..layers {
        let mut put = |s: &str, t: Tensor| renamed.insert(format!("layers.{i}.{s}"), t);
        for kind in ["weight", "bias"] {
            put(
                &format!("layer_norm1.{kind}"),
                get(i, &format!("ln_1.{kind}"))?,
            );
            put(
                &format!("layer_norm2.{kind}"),
                get(i, &format!("ln_2.{kind}"))?,
            );
            put(
                &format!("mlp.fc1.{kind}"),
                get(i, &format!("mlp.c_fc.{kind}"))?,
            );
            put(
                &format!("mlp.fc2.{kind}"),
                get(i, &format!("mlp.c_proj.{kind}"))?,
            );
            put(
                &format!("self_attn.out_proj.{kind}"),
                get(i, &format!("attn.out_proj.{kind}"))?,
            );
            // q, k and v are packed in one projection.
            let packed = get(i, &format!("attn.in_proj_{kind}"))?;
            for (j, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                put(
                    &format!("self_attn.{name}.{kind}"),
                    packed.narrow(0, j * width, width)?,
                );
            }
        }
    }
    Ok(renamed)
}

impl UniversalEncoder {
    /// CLIP's ViT from open_clip-named `tensors` (without the `clip.visual.` prefix) and
    /// its number of attention heads (open_clip: width / 64), as OneLLM uses it.
    pub fn from_open_clip(tensors: &HashMap<String, Tensor>, heads: usize) -> Result<Self> {
        let get = |name: &str| {
            tensors.get(name).cloned().ok_or_else(|| {
                Error::InvalidInput(format!("the universal encoder has no tensor `{name}`"))
            })
        };
        let conv = get("conv1.weight")?;
        let (width, channels, patch, _) = conv.dims4()?;
        let positions = get("positional_embedding")?;
        let grid = ((positions.dim(0)?.saturating_sub(1)) as f64).sqrt() as usize;
        if channels != 3 || grid * grid + 1 != positions.dim(0)? {
            return Err(Error::InvalidInput(format!(
                "the universal encoder's patch convolution {:?} and {} positions do not make \
                 a square RGB ViT",
                conv.dims(),
                positions.dim(0)?
            )));
        }
        let layers = (0..)
            .take_while(|i| tensors.contains_key(&format!("transformer.resblocks.{i}.ln_1.weight")))
            .count();
        let intermediate = get("transformer.resblocks.0.mlp.c_fc.weight")?.dim(0)?;
        let mut renamed = clip_blocks(layers, width, &|i, s| {
            get(&format!("transformer.resblocks.{i}.{s}"))
        })?;
        for name in ["ln_pre", "ln_post"] {
            for kind in ["weight", "bias"] {
                renamed.insert(format!("{name}.{kind}"), get(&format!("{name}.{kind}"))?);
            }
        }
        let dims = EncoderDims {
            hidden: width,
            intermediate,
            heads,
            layers,
            eps: 1e-5,
            act: Activation::QuickGelu,
        };
        let vit = VitInput {
            patch_embedding: conv.reshape((width, 3 * patch * patch))?,
            position_embedding: positions,
            patch,
            image_size: grid * patch,
        };
        let class = get("class_embedding")?.reshape((1, 1, width))?;
        Self::build(renamed, dims, true, Some(vit), Some(class))
    }

    /// The encoder of a CTranslate2 Whisper checkpoint (`model.bin`): its pre-LN blocks
    /// (exact GELU) and final LayerNorm, and apart from them its audio input (the
    /// convolutions and sinusoidal positions), for audio alone.
    pub fn from_whisper(model_bin: &Path) -> Result<Self> {
        let file = Ct2File::open(model_bin)?;
        let c = WhisperConfig::from_ct2(&file)?;
        let cpu = Device::Cpu;
        let width = c.n_audio_state;
        let get = |name: &str| file.tensor(name, &cpu);
        // open_clip's block names → CTranslate2's.
        let ct2 = |i: usize, s: &str| -> Result<Tensor> {
            let (module, kind) = s.rsplit_once('.').unwrap_or(("", s));
            let (module, kind) = match (module, kind) {
                ("ln_1", "weight") => ("self_attention/layer_norm", "gamma"),
                ("ln_1", _) => ("self_attention/layer_norm", "beta"),
                ("ln_2", "weight") => ("ffn/layer_norm", "gamma"),
                ("ln_2", _) => ("ffn/layer_norm", "beta"),
                ("attn", "in_proj_weight") => ("self_attention/linear_0", "weight"),
                ("attn", _) => ("self_attention/linear_0", "bias"),
                ("attn.out_proj", k) => ("self_attention/linear_1", k),
                ("mlp.c_fc", k) => ("ffn/linear_0", k),
                (_, k) => ("ffn/linear_1", k),
            };
            get(&format!("encoder/layer_{i}/{module}/{kind}"))
        };
        let mut renamed = clip_blocks(c.n_audio_layer, width, &ct2)?;
        renamed.insert("ln_post.weight".into(), get("encoder/layer_norm/gamma")?);
        renamed.insert("ln_post.bias".into(), get("encoder/layer_norm/beta")?);
        let dims = EncoderDims {
            hidden: width,
            intermediate: get("encoder/layer_0/ffn/linear_0/weight")?.dim(0)?,
            heads: c.n_audio_head,
            layers: c.n_audio_layer,
            eps: 1e-5,
            act: Activation::Gelu,
        };
        let weights = Weights {
            file: &file,
            device: &cpu,
            keep_f16: false,
        };
        let audio = AudioInput {
            stem: ConvStem::load(&weights, &c)?,
            positions: weights.tensor(
                "encoder/position_encodings/encodings",
                &[c.n_audio_ctx, width],
            )?,
            mel_bins: c.n_mels,
        };
        let mut encoder = Self::build(renamed, dims, false, None, None)
            .map_err(|e| Error::model_file(model_bin, e.to_string()))?;
        encoder.audio = Some(audio);
        Ok(encoder)
    }

    fn build(
        tensors: HashMap<String, Tensor>,
        dims: EncoderDims,
        ln_pre: bool,
        vit: Option<VitInput>,
        class_embedding: Option<Tensor>,
    ) -> Result<Self> {
        let width = dims.hidden;
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let build = || -> candle_core::Result<_> {
            Ok((
                Encoder::new(&dims, vb.clone())?,
                match ln_pre {
                    true => Some(Norm::new(width, vb.pp("ln_pre"))?),
                    false => None,
                },
                Norm::new(width, vb.pp("ln_post"))?,
            ))
        };
        let (encoder, ln_pre, ln_post) =
            build().map_err(|e| Error::InvalidInput(format!("universal encoder: {e}")))?;
        Ok(Self {
            vit,
            audio: None,
            class_embedding,
            ln_pre,
            encoder,
            ln_post,
            width,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// The ViT's frame input, if the encoder is a ViT.
    pub fn vit(&self) -> Option<&VitInput> {
        self.vit.as_ref()
    }

    /// The encoder's own audio input, if it has one (Whisper).
    pub fn audio(&self) -> Option<&AudioInput> {
        self.audio.as_ref()
    }

    /// The pretrained class token `(1, 1, W)`, if the encoder has one.
    pub fn class_embedding(&self) -> Option<&Tensor> {
        self.class_embedding.as_ref()
    }

    /// Embedded tokens `(B, L, W)` (class token and positions added) → features
    /// `(B, L, W)`: `ln_pre` (if any), every block, `ln_post` on every token.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.ln_pre {
            Some(norm) => norm.forward(x)?,
            None => x.clone(),
        };
        let x = self.encoder.forward(&x, None)?;
        Ok(self.ln_post.forward(&x)?)
    }
}
