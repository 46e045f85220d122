//! LLaVA-1.5-style checkpoints in the Hugging Face layout (`LlavaForConditionalGeneration`):
//! a CLIP vision tower read at an inner layer, an `mlp2x_gelu` projector, and a LLaMA or
//! Qwen2 decoder whose embeddings at the image-token positions are replaced by the
//! projected patch features, in order.
//!
//! Reference: Liu et al., "Improved Baselines with Visual Instruction Tuning" (2024);
//! transformers `models/llava/modeling_llava.py` (`get_image_features`, the
//! `masked_scatter` of image features into `inputs_embeds`). Config-driven: the vision
//! tower's size, `vision_feature_layer`, `vision_feature_select_strategy`,
//! `image_token_id`, `text_config`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::encoder::clip::{ClipVisionConfig, ClipVisionTransformer, Towers};
use crate::llm::{ChatTemplate, DenseLlama, LlmConfig, Message, argmax, processor_chat_template};
use crate::modality::image::{ImageProcessor, ImageSource};
use crate::projector::{Projector, ProjectorConfig, ProjectorKind};
use crate::tasks::interleave::IMAGE_TOKEN;
use crate::{Error, Result};

/// A loaded LLaVA checkpoint.
pub struct Llava {
    vision: ClipVisionTransformer,
    projector: Projector,
    llm: DenseLlama,
    processor: ImageProcessor,
    image_token: u32,
    feature_layer: i64,
    /// `default` drops the class token; `full` keeps it.
    keep_class_token: bool,
    /// The processor's chat template (`chat_template.json`), if the checkpoint has one.
    chat_template: Option<ChatTemplate>,
}

impl Llava {
    /// Loads `config.json`, `model.safetensors` and `preprocessor_config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let (config, config_path) = read_model_config(dir, "llava")?;
        let bad = |reason: String| Error::model_file(&config_path, reason);
        let vision_config: ClipVisionConfig =
            serde_json::from_value(config["vision_config"].clone())
                .map_err(|e| bad(format!("vision_config: {e}")))?;
        let text_config = LlmConfig::from_hf(&config["text_config"], &config_path)?;
        let feature_layer = match &config["vision_feature_layer"] {
            serde_json::Value::Null => -2,
            v => v
                .as_i64()
                .ok_or_else(|| bad("only one vision_feature_layer is supported".into()))?,
        };
        let keep_class_token = match config["vision_feature_select_strategy"]
            .as_str()
            .unwrap_or("default")
        {
            "default" => false,
            "full" => true,
            other => {
                return Err(bad(format!(
                    "unknown vision_feature_select_strategy `{other}`"
                )));
            }
        };
        let image_token = config["image_token_id"]
            .as_u64()
            .or_else(|| config["image_token_index"].as_u64())
            .ok_or_else(|| bad("missing image_token_id".into()))? as u32;
        if config["projector_hidden_act"].as_str().unwrap_or("gelu") != "gelu" {
            return Err(bad(format!(
                "projector activation {} is not supported (gelu is)",
                config["projector_hidden_act"]
            )));
        }
        let (vb, weights) = crate::encoder::clip::load_weights(dir, &Device::Cpu, Towers::Both)?;
        let with_path = |e: candle_core::Error| Error::model_file(&weights, e.to_string());
        // transformers ≥ 4.52 nests everything under `model.`; older files do not.
        let nested = vb.contains_tensor("model.language_model.embed_tokens.weight");
        let (vision_vb, projector_vb, llm_prefix, head_prefix) = if nested {
            (
                vb.pp("model.vision_tower.vision_model"),
                vb.pp("model.multi_modal_projector"),
                "model.language_model.",
                "",
            )
        } else {
            (
                vb.pp("vision_tower.vision_model"),
                vb.pp("multi_modal_projector"),
                "language_model.model.",
                "language_model.",
            )
        };
        let vision = ClipVisionTransformer::new(&vision_config, vision_vb).map_err(with_path)?;
        let projector = Projector::with_names(
            ProjectorConfig::new(
                ProjectorKind::Mlp2xGelu,
                vision_config.hidden_size,
                text_config.hidden_size,
            ),
            projector_vb,
            ["linear_1", "linear_2"],
        )
        .map_err(|e| Error::model_file(&weights, e.to_string()))?;
        let llm = DenseLlama::from_hf(text_config, &vb, llm_prefix, head_prefix)
            .map_err(|e| Error::model_file(&weights, e.to_string()))?;
        let processor = crate::encoder::clip::image_processor(dir, vision_config.image_size)?;
        Ok(Self {
            vision,
            projector,
            llm,
            processor,
            image_token,
            feature_layer,
            keep_class_token,
            chat_template: processor_chat_template(dir)?,
        })
    }

    /// The prompt text of a conversation whose messages hold `<image>` placeholders,
    /// through the checkpoint's chat template (ending where the reply begins).
    pub fn chat_text(&self, messages: &[Message]) -> Result<String> {
        render_chat(self.chat_template.as_ref(), messages)
    }

    /// The image processor from `preprocessor_config.json`.
    pub fn pixels(&self, images: &[ImageSource]) -> Result<Tensor> {
        let rgb = images
            .iter()
            .map(|i| self.processor.decode(i))
            .collect::<Result<Vec<_>>>()?;
        self.processor.tensor(&rgb, &Device::Cpu)
    }

    /// Projected image features `(images, tokens, hidden)`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let states = self.vision.hidden_state(pixels, self.feature_layer)?;
        let states = if self.keep_class_token {
            states
        } else {
            let n = states.dim(1)?;
            states.narrow(1, 1, n - 1)?
        };
        self.projector.forward(&states)
    }

    /// Next-token logits `(seq, vocab)` of `input_ids`, whose image tokens (one per
    /// image feature, as the processor expands them) take the images' features in order.
    pub fn logits(&self, input_ids: &[u32], pixels: Option<&Tensor>) -> Result<Tensor> {
        let features = pixels.map(|p| self.image_features(p)).transpose()?;
        logits_with_features(&self.llm, input_ids, self.image_token, features)
    }

    /// Greedy continuation of `input_ids` by `max_new` tokens (the whole sequence is
    /// re-run each step: for checking against the reference, not for speed).
    pub fn generate_greedy(
        &self,
        input_ids: &[u32],
        pixels: Option<&Tensor>,
        max_new: usize,
    ) -> Result<Vec<u32>> {
        greedy(input_ids, max_new, |ids| self.logits(ids, pixels))
    }
}

/// Next-token logits `(seq, vocab)` of `input_ids` whose `image_token` positions take the
/// rows of `features` `(images, tokens, hidden)` in order (transformers' `masked_scatter`
/// of image features into `inputs_embeds`).
pub(crate) fn logits_with_features(
    llm: &DenseLlama,
    input_ids: &[u32],
    image_token: u32,
    features: Option<Tensor>,
) -> Result<Tensor> {
    let mut embeds = llm.embed_tokens(input_ids)?;
    let slots: Vec<u32> = (0..input_ids.len() as u32)
        .filter(|&i| input_ids[i as usize] == image_token)
        .collect();
    let features = match features {
        Some(f) => {
            let (n, t, d) = f.dims3()?;
            f.reshape((n * t, d))?
        }
        None => Tensor::zeros((0, llm.config().hidden_size), DType::F32, &Device::Cpu)?,
    };
    if features.dim(0)? != slots.len() {
        return Err(Error::InvalidInput(format!(
            "the prompt has {} image tokens but the images give {} features",
            slots.len(),
            features.dim(0)?
        )));
    }
    if !slots.is_empty() {
        let index = Tensor::new(slots.as_slice(), &Device::Cpu)?;
        embeds = embeds.index_add(&index, &(features - embeds.index_select(&index, 0)?)?, 0)?;
    }
    let hidden = llm.forward_embeds(&embeds.unsqueeze(0)?)?.squeeze(0)?;
    llm.logits(&hidden)
}

/// A checkpoint's `config.json` (and its path), which must be of `model_type`.
pub(crate) fn read_model_config(
    dir: &Path,
    model_type: &str,
) -> Result<(serde_json::Value, std::path::PathBuf)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))?;
    if config["model_type"].as_str() != Some(model_type) {
        return Err(Error::model_file(
            &path,
            format!("model_type is {}, not {model_type}", config["model_type"]),
        ));
    }
    Ok((config, path))
}

/// `messages` through a processor's chat template, images as content parts.
pub(crate) fn render_chat(template: Option<&ChatTemplate>, messages: &[Message]) -> Result<String> {
    template
        .ok_or_else(|| {
            Error::InvalidInput("this checkpoint has no chat template (chat_template.json)".into())
        })?
        .render_with_parts(messages, IMAGE_TOKEN, true)
}

/// Greedy decoding by re-running `logits` on the growing sequence.
pub(crate) fn greedy(
    input_ids: &[u32],
    max_new: usize,
    logits: impl Fn(&[u32]) -> Result<Tensor>,
) -> Result<Vec<u32>> {
    let mut ids = input_ids.to_vec();
    for _ in 0..max_new {
        let last = logits(&ids)?.get(ids.len() - 1)?.to_vec1::<f32>()?;
        ids.push(argmax(&last));
    }
    Ok(ids[input_ids.len()..].to_vec())
}
