//! Idefics3 / SmolVLM checkpoints in the Hugging Face layout
//! (`Idefics3ForConditionalGeneration`): each image is split into tiles plus a global
//! view ([`TilingProcessor`]), every tile goes through a SigLIP vision tower, the patch
//! states are pixel-shuffled (each `s`×`s` block of patches becomes one token `s²` times
//! as wide) and projected by one bias-free linear layer into a LLaMA decoder, whose
//! `<image>` tokens take the features in order. The prompt's `<image>` is expanded to the
//! tile layout (`<fake_token_around_image><row_r_col_c>` + the tile's tokens, …, then
//! `<global-img>`), as `Idefics3Processor` does.
//!
//! Reference: Laurençon et al., "Building and better understanding vision-language
//! models" (Idefics3, 2024); Marafioti et al., "SmolVLM" (2025); transformers
//! `models/idefics3/{modeling,processing,image_processing}_idefics3.py`.

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, linear_no_bias};
use tokenizers::Tokenizer;

use crate::encoder::clip::Towers;
use crate::encoder::siglip::{SiglipVisionConfig, SiglipVisionTransformer};
use crate::llm::{ChatTemplate, DenseLlama, LlmConfig, Message, processor_chat_template};
use crate::modality::image::{ImageSource, TilingProcessor};
use crate::tasks::interleave::IMAGE_TOKEN;
use crate::tasks::llava::{greedy, logits_with_features, read_model_config, render_chat};
use crate::{Error, Result};

const FAKE_TOKEN: &str = "<fake_token_around_image>";
const GLOBAL_TOKEN: &str = "<global-img>";

/// A prompt ready for the model: token ids with the images' tokens expanded, and the
/// tiles of every image in order.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub input_ids: Vec<u32>,
    /// `(tiles, 3, S, S)`, `None` for a text-only prompt.
    pub pixels: Option<Tensor>,
    /// `(rows, cols)` of each image's split (`(0, 0)`: one global tile only).
    pub grids: Vec<(usize, usize)>,
}

/// A loaded Idefics3 checkpoint.
pub struct Idefics3 {
    vision: SiglipVisionTransformer,
    projection: Linear,
    scale_factor: usize,
    llm: DenseLlama,
    tokenizer: Tokenizer,
    processor: TilingProcessor,
    image_token: u32,
    /// Tokens per tile after the pixel shuffle.
    tile_tokens: usize,
    /// The processor's chat template (`chat_template.json`), if the checkpoint has one.
    chat_template: Option<ChatTemplate>,
}

impl Idefics3 {
    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and
    /// `preprocessor_config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let (config, config_path) = read_model_config(dir, "idefics3")?;
        let bad = |reason: String| Error::model_file(&config_path, reason);
        let vision_config = vision_config(&config["vision_config"])
            .map_err(|e| bad(format!("vision_config: {e}")))?;
        let text_config = LlmConfig::from_hf(&config["text_config"], &config_path)?;
        let scale_factor = config["scale_factor"].as_u64().unwrap_or(2) as usize;
        let grid = vision_config.image_size / vision_config.patch_size;
        if scale_factor == 0 || !grid.is_multiple_of(scale_factor) {
            return Err(bad(format!(
                "scale_factor {scale_factor} does not divide the {grid}×{grid} patch grid"
            )));
        }
        let image_token = config["image_token_id"]
            .as_u64()
            .ok_or_else(|| bad("missing image_token_id".into()))? as u32;
        let (vb, weights) = crate::encoder::clip::load_weights(dir, &Device::Cpu, Towers::Both)?;
        let with_path = |e: candle_core::Error| Error::model_file(&weights, e.to_string());
        let vision = SiglipVisionTransformer::new(&vision_config, vb.pp("model.vision_model"))
            .map_err(with_path)?;
        let projection = linear_no_bias(
            vision_config.hidden_size * scale_factor * scale_factor,
            text_config.hidden_size,
            vb.pp("model.connector.modality_projection.proj"),
        )
        .map_err(with_path)?;
        let llm = DenseLlama::from_hf(text_config, &vb, "model.text_model.", "")
            .map_err(|e| Error::model_file(&weights, e.to_string()))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::model_file(&tokenizer_path, e.to_string()))?;
        for token in [IMAGE_TOKEN, FAKE_TOKEN, GLOBAL_TOKEN] {
            if tokenizer.token_to_id(token).is_none() {
                return Err(Error::model_file(
                    &tokenizer_path,
                    format!("the tokenizer has no `{token}` token"),
                ));
            }
        }
        let processor = TilingProcessor::from_file(&dir.join("preprocessor_config.json"))?;
        if processor.tile_size() as usize != vision_config.image_size {
            return Err(bad(format!(
                "tiles of {} pixels but a vision tower of {}",
                processor.tile_size(),
                vision_config.image_size
            )));
        }
        Ok(Self {
            vision,
            projection,
            scale_factor,
            llm,
            tokenizer,
            processor,
            image_token,
            tile_tokens: grid * grid / (scale_factor * scale_factor),
            chat_template: processor_chat_template(dir)?,
        })
    }

    /// The prompt text of a conversation whose messages hold `<image>` placeholders,
    /// through the checkpoint's chat template (ending where the reply begins); give it
    /// to [`Self::prompt`] with the images.
    pub fn chat_text(&self, messages: &[Message]) -> Result<String> {
        render_chat(self.chat_template.as_ref(), messages)
    }

    /// Expands each `<image>` of `text` to its image's tile layout, tokenizes the result
    /// (with the tokenizer's special tokens, e.g. BOS) and preprocesses the images.
    pub fn prompt(&self, text: &str, images: &[ImageSource]) -> Result<Prompt> {
        let parts: Vec<&str> = text.split(IMAGE_TOKEN).collect();
        if parts.len() - 1 != images.len() {
            return Err(Error::InvalidInput(format!(
                "the prompt has {} `{IMAGE_TOKEN}` placeholders but {} images were given",
                parts.len() - 1,
                images.len()
            )));
        }
        let mut expanded = parts[0].to_string();
        let mut tiles = Vec::with_capacity(images.len());
        let mut grids = Vec::with_capacity(images.len());
        for (image, rest) in images.iter().zip(&parts[1..]) {
            let rgb = image.decode(Default::default(), Default::default())?;
            let split = self.processor.tiles(&rgb)?;
            expanded += &image_prompt(split.rows, split.cols, self.tile_tokens);
            expanded += rest;
            grids.push((split.rows, split.cols));
            tiles.push(split.pixels);
        }
        let encoding = self
            .tokenizer
            .encode(expanded, true)
            .map_err(|e| Error::InvalidInput(format!("tokenizing the prompt: {e}")))?;
        let pixels = match tiles.is_empty() {
            true => None,
            false => Some(Tensor::cat(&tiles, 0)?),
        };
        Ok(Prompt {
            input_ids: encoding.get_ids().to_vec(),
            pixels,
            grids,
        })
    }

    /// Projected features of tiles `(tiles, 3, S, S)` → `(tiles, tokens, hidden)`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let states = self.vision.last_hidden_state(pixels)?;
        let shuffled = pixel_shuffle(&states, self.scale_factor)?;
        Ok(self.projection.forward(&shuffled)?)
    }

    /// Next-token logits `(seq, vocab)` of a prompt.
    pub fn logits(&self, input_ids: &[u32], pixels: Option<&Tensor>) -> Result<Tensor> {
        let features = pixels.map(|p| self.image_features(p)).transpose()?;
        logits_with_features(&self.llm, input_ids, self.image_token, features)
    }

    /// Greedy continuation by `max_new` tokens (re-runs the sequence each step: for
    /// checking against the reference, not for speed).
    pub fn generate_greedy(
        &self,
        input_ids: &[u32],
        pixels: Option<&Tensor>,
        max_new: usize,
    ) -> Result<Vec<u32>> {
        greedy(input_ids, max_new, |ids| self.logits(ids, pixels))
    }
}

/// The text an image's placeholder becomes: per tile, a fake token, its row/column tag
/// and its tokens (a newline after each row), then the global view between fake tokens.
fn image_prompt(rows: usize, cols: usize, tokens: usize) -> String {
    let images = IMAGE_TOKEN.repeat(tokens);
    let global = format!("{FAKE_TOKEN}{GLOBAL_TOKEN}{images}{FAKE_TOKEN}");
    if rows == 0 && cols == 0 {
        return global;
    }
    let mut out = String::new();
    for r in 1..=rows {
        for c in 1..=cols {
            out += &format!("{FAKE_TOKEN}<row_{r}_col_{c}>{images}");
        }
        out.push('\n');
    }
    out + "\n" + &global
}

/// Idefics3's `pixel_shuffle`: each `s`×`s` block of the square patch grid becomes one
/// token holding the block's states side by side (row-major within the block).
///
/// # Shapes
/// `(n, seq, d)` → `(n, seq / s², d · s²)`.
fn pixel_shuffle(x: &Tensor, s: usize) -> Result<Tensor> {
    let (n, seq, d) = x.dims3()?;
    let side = (seq as f64).sqrt() as usize;
    if side * side != seq || !side.is_multiple_of(s) {
        return Err(Error::InvalidInput(format!(
            "cannot pixel-shuffle {seq} patches by {s}"
        )));
    }
    Ok(x.reshape((n, side, side / s, d * s))?
        .permute((0, 2, 1, 3))?
        .reshape((n, side / s, side / s, d * s * s))?
        .permute((0, 2, 1, 3))?
        .reshape((n, seq / (s * s), d * s * s))?)
}

/// `vision_config` with `Idefics3VisionConfig`'s defaults for absent fields and no pooling
/// head.
fn vision_config(value: &serde_json::Value) -> serde_json::Result<SiglipVisionConfig> {
    let mut merged = serde_json::json!({
        "hidden_size": 1152,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 16,
        "num_channels": 3,
        "image_size": 224,
        "patch_size": 32,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    });
    if let (Some(out), Some(given)) = (merged.as_object_mut(), value.as_object()) {
        out.extend(given.clone());
        out.insert("vision_use_head".into(), false.into());
    }
    serde_json::from_value(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_shuffle_groups_blocks() {
        // A 4×4 grid of 1-wide states numbered 0..16 → 2×2 tokens of 4.
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 16, 1))
            .unwrap();
        let y: Vec<Vec<f32>> = pixel_shuffle(&x, 2)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(y[0], [0.0, 1.0, 4.0, 5.0]);
        assert_eq!(y[1], [2.0, 3.0, 6.0, 7.0]);
        assert_eq!(y[2], [8.0, 9.0, 12.0, 13.0]);
    }

    #[test]
    fn the_placeholder_becomes_the_tile_layout() {
        let one = image_prompt(0, 0, 2);
        assert_eq!(
            one,
            "<fake_token_around_image><global-img><image><image><fake_token_around_image>"
        );
        let grid = image_prompt(1, 2, 1);
        assert_eq!(
            grid,
            "<fake_token_around_image><row_1_col_1><image>\
             <fake_token_around_image><row_1_col_2><image>\n\n\
             <fake_token_around_image><global-img><image><fake_token_around_image>"
        );
    }
}
