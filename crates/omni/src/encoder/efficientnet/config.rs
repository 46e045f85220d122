//! EfficientNet-Lite architecture, read from the checkpoint's tensor shapes.
//!
//! A `.pth` state dict carries no config, so the block list is recovered from its keys
//! (`_blocks.N._expand_conv`, `_depthwise_conv` kernel size, channel counts). Only strides
//! are not in the weights: they come from the stage definition of
//! `efficientnet/lite/efficientnet_lite_builder.py` (TensorFlow TPU models), whose seven
//! stages `r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, r2_k5_s22_e6_i24_o40,
//! r3_k3_s22_e6_i40_o80, r3_k5_s11_e6_i80_o112, r4_k5_s22_e6_i112_o192,
//! r1_k3_s11_e6_i192_o320` have strides 1, 2, 2, 2, 1, 2, 1; a stage's stride applies to its
//! first block. Lite0–Lite4 differ only in widths and repeats, which the shapes give.

use super::weights::Weights;
use crate::{Error, Result};

/// Strides of the seven EfficientNet stages (the same for B0–B7 and Lite0–Lite4).
pub const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];

/// One inverted-residual (MBConv) block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    pub in_channels: usize,
    /// Channels after the 1×1 expansion (`None`: expand ratio 1, no expansion conv).
    pub expanded: Option<usize>,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl BlockConfig {
    /// Whether the block adds its input (stride 1 and same channels, as `id_skip`).
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

/// EfficientNet-Lite dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct EfficientNetConfig {
    pub stem_channels: usize,
    pub blocks: Vec<BlockConfig>,
    pub head_channels: usize,
    pub num_classes: usize,
    /// BatchNorm epsilon (`batch_norm_epsilon` = 1e-3 in the Lite builder).
    pub bn_eps: f64,
}

impl EfficientNetConfig {
    /// Recovers the architecture from a lukemelas-style state dict.
    pub(crate) fn from_weights(w: &Weights) -> Result<Self> {
        let bad = |reason: String| Error::model_file(w.path(), reason);
        if w.contains("_blocks.0._se_reduce.weight") {
            return Err(Error::UnsupportedArchitecture {
                path: w.path().into(),
                arch: "EfficientNet with squeeze-excitation (B0–B7)".into(),
                supported: "EfficientNet-Lite0–Lite4".into(),
            });
        }
        let stem = w.dims("_conv_stem.weight", 4)?;
        if stem[1] != 3 || stem[2] != 3 || stem[3] != 3 {
            return Err(bad(format!(
                "_conv_stem.weight has shape {stem:?}, expected [C, 3, 3, 3]"
            )));
        }
        let mut blocks = Vec::new();
        let mut in_channels = stem[0];
        let mut stage = 0;
        let mut stage_out = None;
        for i in 0.. {
            let p = format!("_blocks.{i}");
            if !w.contains(&format!("{p}._depthwise_conv.weight")) {
                break;
            }
            let expanded = if w.contains(&format!("{p}._expand_conv.weight")) {
                Some(w.dims(&format!("{p}._expand_conv.weight"), 4)?[0])
            } else {
                None
            };
            let dw = w.dims(&format!("{p}._depthwise_conv.weight"), 4)?;
            let out_channels = w.dims(&format!("{p}._project_conv.weight"), 4)?[0];
            if dw[2] != dw[3] || dw[2] % 2 == 0 {
                return Err(bad(format!(
                    "{p}._depthwise_conv.weight has shape {dw:?}, expected an odd square kernel"
                )));
            }
            let first_of_stage = stage_out != Some(out_channels);
            if first_of_stage && stage_out.is_some() {
                stage += 1;
            }
            stage_out = Some(out_channels);
            let stride = match STAGE_STRIDES.get(stage) {
                Some(&s) if first_of_stage => s,
                Some(_) => 1,
                None => {
                    return Err(bad(format!(
                        "block {i} starts stage {} but EfficientNet-Lite has {} stages",
                        stage + 1,
                        STAGE_STRIDES.len()
                    )));
                }
            };
            blocks.push(BlockConfig {
                in_channels,
                expanded,
                out_channels,
                kernel: dw[2],
                stride,
            });
            in_channels = out_channels;
        }
        if blocks.is_empty() || stage + 1 != STAGE_STRIDES.len() {
            return Err(bad(format!(
                "found {} blocks in {} stages; EfficientNet-Lite has {} stages of `_blocks.N` (is this an EfficientNet-Lite state dict?)",
                blocks.len(),
                if blocks.is_empty() { 0 } else { stage + 1 },
                STAGE_STRIDES.len()
            )));
        }
        let head = w.dims("_conv_head.weight", 4)?;
        let fc = w.dims("_fc.weight", 2)?;
        Ok(Self {
            stem_channels: stem[0],
            blocks,
            head_channels: head[0],
            num_classes: fc[0],
            bn_eps: 1e-3,
        })
    }
}
