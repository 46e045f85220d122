//! EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
//! Convolutional Neural Networks"; the Lite variants of the TensorFlow TPU models repo: no
//! squeeze-excitation, ReLU6, fixed stem and head). Loads the legacy `.pth` state dicts of
//! `efficientnet_lite_pytorch` (ml-illustrated's fork of lukemelas' EfficientNet-PyTorch,
//! key names `_conv_stem`, `_blocks.N._expand_conv`, `_fc`, …) and matches its
//! `EfficientNet.from_pretrained('efficientnet-lite0')` in eval mode: TensorFlow "SAME"
//! padding, BatchNorm ε = 1e-3 (folded into the convolutions here).
//!
//! ```text
//! image [b, 3, 224, 224] ─► stem 3×3/2 ─► 16 MBConv blocks ─► 1×1 head ─► [b, 1280, 7, 7]
//!       ─► global mean ─► pooled [b, 1280] ─► fc ─► ImageNet-1k logits [b, 1000]
//! ```

mod config;
mod depthwise;
mod labels;
mod layers;
pub mod processor;
mod weights;

use std::path::{Path, PathBuf};

use candle_core::{D, Device, Tensor};
use candle_nn::{Linear, Module};

pub use config::{BlockConfig, EfficientNetConfig, STAGE_STRIDES};
pub use labels::{ImageNetClass, imagenet_classes};

use crate::formats::torch_legacy::read_state_dict;
use crate::{Error, Result};
use layers::{Block, Pointwise, Stem, relu6};
use weights::Weights;

/// What one forward pass gives.
#[derive(Debug, Clone)]
pub struct EfficientNetOutput {
    /// Final feature map after the head conv, `[b, 1280, 7, 7]` for 224×224 inputs
    /// (channels first; [`feature_tokens`] gives `[b, 49, 1280]`).
    pub feature_map: Tensor,
    /// Global average of the feature map, `[b, 1280]`.
    pub pooled: Tensor,
    /// ImageNet-1k logits, `[b, num_classes]`.
    pub logits: Tensor,
}

/// `[b, c, h, w]` → `[b, h·w, c]`: one token per position, for a projector.
pub fn feature_tokens(feature_map: &Tensor) -> Result<Tensor> {
    Ok(feature_map.flatten_from(2)?.transpose(1, 2)?.contiguous()?)
}

/// Images per pass through the network (larger batches are split).
const SUB_BATCH: usize = 8;

/// A loaded EfficientNet-Lite classifier / image feature extractor.
#[derive(Debug)]
pub struct EfficientNet {
    pub config: EfficientNetConfig,
    stem: Stem,
    blocks: Vec<Block>,
    head: Pointwise,
    fc: Linear,
    device: Device,
    path: PathBuf,
}

impl EfficientNet {
    /// Loads a `.pth` checkpoint, or the single `.pth` in a model directory.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            find_pth(path)?
        } else {
            path.to_path_buf()
        };
        if !file.exists() {
            return Err(Error::model_file(
                &file,
                "no such file (an EfficientNet-Lite .pth)",
            ));
        }
        let device = Device::Cpu;
        let w = Weights::new(read_state_dict(&file, &device)?, &file);
        let config = EfficientNetConfig::from_weights(&w)?;
        let eps = config.bn_eps;
        let stem = Stem::load(&w, config.stem_channels, eps)?;
        let blocks = config
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| Block::load(&w, i, b, eps))
            .collect::<Result<Vec<_>>>()?;
        let last = config
            .blocks
            .last()
            .map_or(config.stem_channels, |b| b.out_channels);
        let head = Pointwise::load(&w, "_conv_head", "_bn1", last, config.head_channels, eps)?;
        let fc = Linear::new(
            w.get("_fc.weight", &[config.num_classes, config.head_channels])?,
            Some(w.get("_fc.bias", &[config.num_classes])?),
        );
        let unused = w.unused();
        if !unused.is_empty() {
            return Err(Error::model_file(
                &file,
                format!(
                    "{} unexpected tensors (e.g. `{}`): not an EfficientNet-Lite state dict",
                    unused.len(),
                    unused[0]
                ),
            ));
        }
        Ok(Self {
            config,
            stem,
            blocks,
            head,
            fc,
            device,
            path: file,
        })
    }

    /// The checkpoint this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the network on normalized images.
    ///
    /// # Shapes
    /// `images`: `[b, 3, h, w]` f32 (224×224 for the trained resolution) →
    /// feature map `[b, 1280, h/32, w/32]`, pooled `[b, 1280]`, logits `[b, 1000]`.
    pub fn forward(&self, images: &Tensor) -> Result<EfficientNetOutput> {
        let (_, c, h, w) = images.dims4()?;
        if c != 3 || h < 2 || w < 2 {
            return Err(Error::InvalidInput(format!(
                "EfficientNet expects [batch, 3, h, w] images, got {:?}",
                images.dims()
            )));
        }
        // Sub-batches keep each activation under glibc's 32 MB mmap threshold and in cache:
        // at batch 32, page faults of freshly mapped buffers cost ~15% of the time.
        let b = images.dim(0)?;
        let maps = (0..b)
            .step_by(SUB_BATCH)
            .map(|i| {
                let part = images.narrow(0, i, SUB_BATCH.min(b - i))?.contiguous()?;
                let mut x = self.stem.forward(&part)?;
                for block in &self.blocks {
                    x = block.forward(&x)?;
                }
                relu6(&self.head.forward(&x)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let feature_map = Tensor::cat(&maps, 0)?;
        let pooled = feature_map.flatten_from(2)?.mean(D::Minus1)?;
        let logits = self.classify(&pooled)?;
        Ok(EfficientNetOutput {
            feature_map,
            pooled,
            logits,
        })
    }

    /// The classifier head alone: pooled features `[b, 1280]` → logits `[b, 1000]`
    /// (for features computed earlier).
    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        Ok(self.fc.forward(pooled)?)
    }
}

fn find_pth(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pth" || e == "pt"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::model_file(
            dir,
            "no .pth checkpoint in this directory",
        )),
        n => Err(Error::model_file(
            dir,
            format!("{n} .pth files in this directory; pass one"),
        )),
    }
}
