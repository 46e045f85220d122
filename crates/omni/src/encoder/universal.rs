//! OneLLM's universal encoder: one frozen pretrained ViT shared by every modality
//! (reference: `model/LLM/onellm.py`, `clip_encode_image`). A modality's tokens get the
//! ViT's class token in front, position embeddings (the ViT's own for frames, a learned
//! table per modality otherwise), `ln_pre`, every transformer block and `ln_post` on
//! every token; the projection to CLIP's joint space is not used.
//!
//! Weights are in open_clip's layout (`conv1`, `class_embedding`, `positional_embedding`,
//! `ln_pre`, `transformer.resblocks.{i}.{ln_1, attn.in_proj_*, attn.out_proj, ln_2,
//! mlp.c_fc, mlp.c_proj}`, `ln_post`), as OneLLM stores them under `clip.visual.`; the
//! blocks run on the CLIP encoder of [`crate::encoder::clip`] (QuickGELU, eps 1e-5).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use crate::encoder::clip::Activation;
use crate::encoder::clip::layers::{Encoder, EncoderDims};
use crate::modality::universal::image_patches;
use crate::projector::norm::Norm;
use crate::{Error, Result};

/// The shared ViT.
#[derive(Debug, Clone)]
pub struct UniversalEncoder {
    /// (W, 3·P·P): the patch convolution, flattened.
    patch_embedding: Tensor,
    class_embedding: Tensor,
    /// (1 + g², W)
    position_embedding: Tensor,
    ln_pre: Norm,
    encoder: Encoder,
    ln_post: Norm,
    width: usize,
    patch: usize,
    image_size: usize,
}

impl UniversalEncoder {
    /// Builds the encoder from open_clip-named `tensors` (without the `clip.visual.`
    /// prefix) and the number of attention heads (open_clip: width / 64).
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
        // The CLIP encoder's names: `layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj,
        // layer_norm2, mlp.fc{1,2}}`; open_clip packs q, k, v into one `in_proj`.
        let mut renamed = HashMap::new();
        for i in 0..layers {
            let from = |s: &str| get(&format!("transformer.resblocks.{i}.{s}"));
            let mut put = |s: &str, t: Tensor| renamed.insert(format!("layers.{i}.{s}"), t);
            for kind in ["weight", "bias"] {
                put(
                    &format!("layer_norm1.{kind}"),
                    from(&format!("ln_1.{kind}"))?,
                );
                put(
                    &format!("layer_norm2.{kind}"),
                    from(&format!("ln_2.{kind}"))?,
                );
                put(
                    &format!("mlp.fc1.{kind}"),
                    from(&format!("mlp.c_fc.{kind}"))?,
                );
                put(
                    &format!("mlp.fc2.{kind}"),
                    from(&format!("mlp.c_proj.{kind}"))?,
                );
                put(
                    &format!("self_attn.out_proj.{kind}"),
                    from(&format!("attn.out_proj.{kind}"))?,
                );
                let packed = from(&format!("attn.in_proj_{kind}"))?;
                for (j, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                    put(
                        &format!("self_attn.{name}.{kind}"),
                        packed.narrow(0, j * width, width)?,
                    );
                }
            }
        }
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
        let vb = VarBuilder::from_tensors(renamed, candle_core::DType::F32, &Device::Cpu);
        let build = || -> candle_core::Result<_> {
            Ok((
                Encoder::new(&dims, vb.clone())?,
                Norm::new(width, vb.pp("ln_pre"))?,
                Norm::new(width, vb.pp("ln_post"))?,
            ))
        };
        let (encoder, ln_pre, ln_post) =
            build().map_err(|e| Error::InvalidInput(format!("universal encoder: {e}")))?;
        Ok(Self {
            patch_embedding: conv.reshape((width, 3 * patch * patch))?,
            class_embedding: get("class_embedding")?.reshape((1, 1, width))?,
            position_embedding: positions,
            ln_pre,
            encoder,
            ln_post,
            width,
            patch,
            image_size: grid * patch,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Side of the square images (and frames) it takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The patch embedding of `b` images `(b, 3, S, S)` given as row-major pixels:
    /// `(b, g², W)`.
    pub fn patch_tokens(&self, pixels: &[f32], b: usize) -> Result<Tensor> {
        let (patches, l) = image_patches(pixels, b, self.image_size, self.patch);
        let x = Tensor::from_vec(patches, (b * l, 3 * self.patch * self.patch), &Device::Cpu)?;
        Ok(x.matmul(&self.patch_embedding.t()?)?
            .reshape((b, l, self.width))?)
    }

    /// The ViT's own position table `(1 + g², W)`, for frames.
    pub fn image_positions(&self) -> &Tensor {
        &self.position_embedding
    }

    /// Tokens `(B, L, W)` with position table `(1 + L, W)` → features `(B, 1 + L, W)`,
    /// class token first.
    pub fn forward(&self, tokens: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (b, l, w) = tokens.dims3()?;
        if positions.dims() != [l + 1, w] {
            return Err(Error::InvalidInput(format!(
                "{l} tokens of width {w} need a ({}, {w}) position table, not {:?}",
                l + 1,
                positions.dims()
            )));
        }
        let cls = self.class_embedding.broadcast_as((b, 1, w))?;
        let x = Tensor::cat(&[&cls, tokens], 1)?.broadcast_add(positions)?;
        let x = self.ln_pre.forward(&x)?;
        let x = self.encoder.forward(&x, None)?;
        Ok(self.ln_post.forward(&x)?)
    }
}
