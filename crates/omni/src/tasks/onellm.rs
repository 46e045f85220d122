//! OneLLM (Han et al., "OneLLM: One Framework to Align All Modalities with Language",
//! CVPR 2024; reference code csuhan/OneLLM, `model/LLM/onellm.py`): eight modalities
//! through their light tokenizers into one frozen encoder, one mixture-of-experts
//! projection module, and a LLaMA decoder.
//!
//! ```text
//! signal ─► modality::universal stem ─► encoder::universal (frozen ViT) ─► projector::upm
//!        ─► [BOS, start_tag, Q tokens, end_tag, text…] ─► LLaMA ─► logits
//! ```
//!
//! A checkpoint directory holds `config.json` ([`OneLlmConfig`]) and `model.safetensors`
//! with the reference's tensor names (a leading `llma.` is accepted): `clip.visual.*`,
//! `conv1.*`, `positional_embedding.*`, the UPM's and the LLaMA decoder's
//! (`tok_embeddings`, `layers.{i}.attention.wq`, …, `norm`, `output`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::encoder::efficientnet::{EfficientNet, feature_tokens};
use crate::encoder::universal::{AudioInput, UniversalEncoder};
use crate::llm::{Arch, DenseCache, DenseLlama, GgufFile, LlmConfig, LlmTokenizer, RopeStyle};
use crate::modality::image::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::modality::universal::{AudioStem, FrameStem, Modality, Signal, StemConfig, Stems};
use crate::projector::upm::{Upm, UpmConfig, swiglu_hidden};
use crate::tasks::search_space::load_efficientnet;
use crate::train::init::seeded_builder;
use crate::{Error, Result};

/// A LLaMA decoder in Meta's layout (`params.json` of LLaMA-2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaLlamaConfig {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub vocab_size: usize,
    #[serde(default = "default_multiple_of")]
    pub multiple_of: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
}

fn default_multiple_of() -> usize {
    256
}

fn default_eps() -> f64 {
    1e-5
}

impl MetaLlamaConfig {
    fn llm_config(&self) -> LlmConfig {
        let head_dim = self.dim / self.n_heads.max(1);
        LlmConfig {
            arch: Arch::Llama,
            name: None,
            hidden_size: self.dim,
            n_layer: self.n_layers,
            n_head: self.n_heads,
            n_kv_head: self.n_heads,
            head_dim,
            ffn_dim: swiglu_hidden(self.dim, self.multiple_of),
            context_length: 2048,
            vocab_size: self.vocab_size,
            rope_dim: head_dim,
            rope_theta: 10000.0,
            rope_freq_scale: 1.0,
            rope_style: RopeStyle::Interleaved,
            rms_eps: self.norm_eps as f32,
            qkv_bias: false,
            tied_embeddings: false,
        }
    }
}

/// Where the frozen universal encoder comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EncoderSource {
    /// CLIP's ViT in the checkpoint (`clip.visual.*`), as OneLLM ships it, with its
    /// number of attention heads (open_clip: width / 64).
    OpenClip { heads: usize },
    /// The encoder blocks of an installed Whisper model (`omni models pull NAME`).
    Whisper { model: String },
}

/// The decoder: Meta-layout LLaMA tensors in the checkpoint (OneLLM's LLaMA-2), or an
/// installed GGUF model (`{"gguf": "smollm2-135m-instruct"}`), dequantized to f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LlmSource {
    Gguf { gguf: String },
    Meta(MetaLlamaConfig),
}

/// `config.json` of a OneLLM checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneLlmConfig {
    pub encoder: EncoderSource,
    #[serde(default)]
    pub stems: StemConfig,
    #[serde(default)]
    pub upm: UpmConfig,
    pub llm: LlmSource,
}

/// A loaded OneLLM.
#[derive(Debug, Clone)]
pub struct OneLlm {
    config: OneLlmConfig,
    encoder: UniversalEncoder,
    stems: Stems,
    upm: Upm,
    llm: DenseLlama,
    /// The frozen EfficientNet of `frame_stem = "efficientnet"`.
    frame_net: Option<std::sync::Arc<EfficientNet>>,
    /// The decoder's tokenizer (from its GGUF; none for Meta-layout tensors).
    tokenizer: Option<std::sync::Arc<LlmTokenizer>>,
}

impl OneLlm {
    /// Loads `dir/config.json` and `dir/model.safetensors`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config: OneLlmConfig = crate::encoder::clip::read_config(dir)?;
        let weights = dir.join("model.safetensors");
        let tensors: HashMap<String, Tensor> =
            crate::formats::safetensors::read_tensors(&weights, &Device::Cpu)?
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        k.strip_prefix("llma.").unwrap_or(&k).to_string(),
                        v.to_dtype(DType::F32)?,
                    ))
                })
                .collect::<Result<_>>()?;
        Self::from_tensors(config, tensors).map_err(|e| Error::model_file(&weights, e.to_string()))
    }

    /// Builds the model from reference-named f32 tensors.
    pub fn from_tensors(config: OneLlmConfig, tensors: HashMap<String, Tensor>) -> Result<Self> {
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        Self::build(config, &tensors, vb)
    }

    /// A model to train: the encoder and the LLM pretrained and frozen, the stems and the
    /// UPM fresh variables of `vars`, drawn as the reference initialises them from a
    /// stream fixed by `seed`.
    pub fn trainable(config: OneLlmConfig, vars: &VarMap, seed: u64) -> Result<Self> {
        Self::trainable_over(config, &HashMap::new(), vars, seed)
    }

    /// [`Self::trainable`] with the frozen encoder and LLM tensors a checkpoint holds
    /// (`clip.visual.*`, Meta-layout LLaMA) taken from `frozen`.
    pub fn trainable_over(
        config: OneLlmConfig,
        frozen: &HashMap<String, Tensor>,
        vars: &VarMap,
        seed: u64,
    ) -> Result<Self> {
        Self::build(config, frozen, seeded_builder(vars, seed))
    }

    fn build(
        config: OneLlmConfig,
        tensors: &HashMap<String, Tensor>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let encoder = match &config.encoder {
            EncoderSource::OpenClip { heads } => {
                let clip: HashMap<String, Tensor> = tensors
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.strip_prefix("clip.visual.")?.to_string(), v.clone()))
                    })
                    .collect();
                UniversalEncoder::from_open_clip(&clip, *heads)?
            }
            EncoderSource::Whisper { model } => {
                UniversalEncoder::from_whisper(&crate::models::resolve(model)?.join("model.bin"))?
            }
        };
        let (llm, tokenizer) = match &config.llm {
            LlmSource::Meta(meta) => {
                let llm = DenseLlama::from_named(meta.llm_config(), DType::F32, &mut |name| {
                    let meta = meta_name(name);
                    tensors
                        .get(&meta)
                        .cloned()
                        .ok_or_else(|| Error::InvalidInput(format!("no LLaMA tensor `{meta}`")))
                })?;
                (llm, None)
            }
            LlmSource::Gguf { gguf } => {
                let path = crate::llm::find_gguf(&crate::models::resolve(gguf)?)?;
                let mut file = GgufFile::open(&path)?;
                let c = LlmConfig::from_metadata(&path, file.metadata(), |n| file.has_tensor(n))?;
                let tokenizer = LlmTokenizer::from_gguf(&file.meta())?;
                (
                    DenseLlama::from_gguf(&mut file, c, DType::F32)?,
                    Some(std::sync::Arc::new(tokenizer)),
                )
            }
        };
        if config.stems.audio_stem == AudioStem::Encoder {
            let bins = config.stems.audio_mel_bins;
            match encoder.audio() {
                Some(a) if a.mel_bins == bins => {}
                Some(a) => {
                    return Err(Error::InvalidInput(format!(
                        "audio_stem = \"encoder\" reads {} mel bins, but the stems are set to {bins}",
                        a.mel_bins
                    )));
                }
                None => {
                    return Err(Error::InvalidInput(
                        "audio_stem = \"encoder\" needs a Whisper universal encoder".into(),
                    ));
                }
            }
        }
        let frame_net = match config.stems.frame_stem {
            FrameStem::Patch => None,
            FrameStem::Efficientnet if encoder.vit().is_some() => {
                return Err(Error::InvalidInput(
                    "frame_stem = \"efficientnet\" is for encoders without a ViT; a ViT embeds \
                     frames itself"
                        .into(),
                ));
            }
            FrameStem::Efficientnet => Some(std::sync::Arc::new(load_efficientnet()?)),
        };
        let width = encoder.width();
        let stems = Stems::new(
            config.stems.clone(),
            width,
            encoder.vit().is_none(),
            encoder.class_embedding().is_none(),
            vb.clone(),
        )?;
        let upm = Upm::new(
            config.upm.clone(),
            width,
            llm.config().hidden_size,
            &Modality::ALL,
            vb,
        )?;
        Ok(Self {
            config,
            encoder,
            stems,
            upm,
            llm,
            frame_net,
            tokenizer,
        })
    }

    pub fn config(&self) -> &OneLlmConfig {
        &self.config
    }

    pub fn upm(&self) -> &Upm {
        &self.upm
    }

    pub fn llm(&self) -> &DenseLlama {
        &self.llm
    }

    /// The decoder's tokenizer; an error for a checkpoint whose LLaMA came without one.
    pub fn tokenizer(&self) -> Result<&LlmTokenizer> {
        self.tokenizer.as_deref().ok_or_else(|| {
            Error::InvalidInput(
                "this OneLLM's decoder has no tokenizer (Meta-layout tensors); use a GGUF decoder"
                    .into(),
            )
        })
    }

    /// Stem, encoder and UPM sizes as `signal` of one sample would have: the expected
    /// per-sample shape of a modality's input (frames: `frames` of them).
    pub fn input_shape(&self, m: Modality, frames: usize) -> Vec<usize> {
        let c = &self.config.stems;
        let s = self.stems.frame_size(self.encoder.vit());
        match m {
            Modality::Image => vec![3, s, s],
            Modality::Video | Modality::Rgbd | Modality::Rgbn => vec![frames, 3, s, s],
            Modality::Audio => vec![c.audio_mel_bins, c.audio_frames],
            Modality::Point => vec![c.points, crate::modality::universal::POINT_CHANNELS],
            Modality::Imu => vec![crate::modality::universal::IMU_CHANNELS, c.imu_samples],
            Modality::Fmri => vec![c.fmri_voxels],
        }
    }

    /// The encoder's own audio input when the stems leave audio to it.
    fn encoder_audio(&self) -> Option<&AudioInput> {
        match self.config.stems.audio_stem {
            AudioStem::Encoder => self.encoder.audio(),
            AudioStem::Patch => None,
        }
    }

    /// The stem's tokens `(B, L, W)` (frames: `(B·T, L, W)`), the input checked first.
    pub fn tokenize(&self, signal: &Signal) -> Result<Tensor> {
        let vit = self.encoder.vit();
        let c = &self.config.stems;
        signal.validate(c, self.stems.frame_size(vit))?;
        match (signal.modality, self.encoder_audio(), &self.frame_net) {
            (Modality::Audio, Some(audio), _) => {
                audio.tokens(&signal.data, signal.batch(), c.audio_frames)
            }
            (m, _, Some(net)) if m.is_visual() => {
                let s = c.image_size;
                let frames = signal.data.len() / (3 * s * s);
                let pixels = Tensor::from_vec(
                    clip_to_efficientnet(&signal.data, s * s),
                    (frames, 3, s, s),
                    &Device::Cpu,
                )?;
                let features = feature_tokens(&net.forward(&pixels)?.feature_map)?;
                self.stems.frame_feature_tokens(&features)
            }
            _ => self.stems.tokens(signal, vit),
        }
    }

    /// Universal-encoder features `(B, 1 + L, W)`: the class token and the stem's tokens
    /// plus positions through the encoder, frames averaged.
    pub fn encode(&self, signal: &Signal) -> Result<Tensor> {
        let tokens = self.tokenize(signal)?;
        let m = signal.modality;
        let (n, l, w) = tokens.dims3()?;
        let class = self
            .encoder
            .class_embedding()
            .or(self.stems.class_embedding());
        let audio_positions = match (m, self.encoder_audio()) {
            (Modality::Audio, Some(audio)) => Some(audio.position_table(l)?),
            _ => None,
        };
        let positions = audio_positions
            .as_ref()
            .or(self.stems.positions(m))
            .or(self.encoder.vit().map(|v| &v.position_embedding));
        let (Some(class), Some(positions)) = (class, positions) else {
            return Err(Error::InvalidInput(format!(
                "no class token or position table for {} input",
                m.name()
            )));
        };
        if positions.dims() != [l + 1, w] {
            return Err(Error::InvalidInput(format!(
                "{l} {} tokens of width {w} need a ({}, {w}) position table, not {:?}",
                m.name(),
                l + 1,
                positions.dims()
            )));
        }
        let x = Tensor::cat(&[&class.broadcast_as((n, 1, w))?, &tokens], 1)?
            .broadcast_add(positions)?;
        let features = self.encoder.forward(&x)?;
        let b = signal.batch();
        Ok(features.reshape((b, n / b, l + 1, w))?.mean(1)?)
    }

    /// LLM-width modality tokens `(B, Q, D)`.
    pub fn project(&self, m: Modality, features: &Tensor) -> Result<Tensor> {
        Ok(self.upm.forward(m, features)?)
    }

    /// One decoder input row: `[BOS, start_tag, Q modality tokens, end_tag, text…]` for
    /// `modal` `(Q, D)` and `tokens` (which start with BOS).
    pub fn sequence(&self, m: Modality, modal: &Tensor, tokens: &[u32]) -> Result<Tensor> {
        self.mixed_sequence(&[(m, modal.clone())], tokens)
    }

    /// [`Self::sequence`] with several inputs (e.g. a video and its audio), each between
    /// its own tags, one after the other.
    pub fn mixed_sequence(&self, inputs: &[(Modality, Tensor)], tokens: &[u32]) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::InvalidInput(
                "a token row is empty (it must start with BOS)".into(),
            ));
        }
        let text = self.llm.embed_tokens(tokens)?;
        let mut parts = vec![text.narrow(0, 0, 1)?];
        for (m, modal) in inputs {
            let (start, end) = self.upm.tags(*m)?;
            parts.extend([start.clone(), modal.clone(), end.clone()]);
        }
        parts.push(text.narrow(0, 1, tokens.len() - 1)?);
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// The decoder input of the reference's training forward: [`Self::sequence`] for each
    /// row of `tokens` (of equal length), and the prefix length `Q + 2`.
    pub fn llm_inputs(
        &self,
        m: Modality,
        modal: &Tensor,
        tokens: &[Vec<u32>],
    ) -> Result<(Tensor, usize)> {
        let rows = tokens
            .iter()
            .enumerate()
            .map(|(i, row)| self.sequence(m, &modal.get(i)?, row))
            .collect::<Result<Vec<_>>>()?;
        Ok((Tensor::stack(&rows, 0)?, modal.dim(1)? + 2))
    }

    /// The greedy answer to `prompt` about signals of batch 1 (one, or several of
    /// different modalities: a video and its audio): at most `max_tokens` tokens, up to
    /// the end of the turn or of the line.
    pub fn answer(&self, signals: &[Signal], prompt: &str, max_tokens: usize) -> Result<String> {
        let tokenizer = self.tokenizer()?;
        let mut inputs = Vec::with_capacity(signals.len());
        for signal in signals {
            let m = signal.modality;
            if signal.batch() != 1 {
                return Err(Error::InvalidInput(format!(
                    "answering takes one {} input at a time, not {}",
                    m.name(),
                    signal.batch()
                )));
            }
            inputs.push((m, self.project(m, &self.encode(signal)?)?.get(0)?.detach()));
        }
        let x = self.mixed_sequence(&inputs, &prompt_tokens(tokenizer, prompt)?)?;
        let mut cache = DenseCache::default();
        let mut hidden = self.llm.forward_cached(&x.unsqueeze(0)?, &mut cache)?;
        let mut out = Vec::new();
        for _ in 0..max_tokens {
            let last = hidden.get(0)?.get(hidden.dim(1)? - 1)?.unsqueeze(0)?;
            let logits: Vec<f32> = self.llm.logits(&last)?.flatten_all()?.to_vec1()?;
            let next = crate::llm::argmax(&logits);
            if tokenizer.is_eog(next) || tokenizer.decode(&[next]).contains('\n') {
                break;
            }
            out.push(next);
            let x = self.llm.embed_tokens(&[next])?.unsqueeze(0)?;
            hidden = self.llm.forward_cached(&x, &mut cache)?;
        }
        Ok(tokenizer.decode(&out).trim().to_string())
    }

    /// The reference's `Transformer.forward(tokens, signal, modal)`: logits `(B, T', vocab)`
    /// from the end tag onward (rows of `tokens` of equal length, starting with BOS).
    pub fn logits(&self, signal: &Signal, tokens: &[Vec<u32>]) -> Result<Tensor> {
        let m = signal.modality;
        let modal = self.project(m, &self.encode(signal)?)?;
        let (x, prefix) = self.llm_inputs(m, &modal, tokens)?;
        let hidden = self.llm.forward_embeds(&x)?;
        let (b, t, d) = hidden.dims3()?;
        let tail = hidden
            .narrow(1, prefix, t - prefix)?
            .reshape((b * (t - prefix), d))?;
        Ok(self.llm.logits(&tail)?.reshape((b, t - prefix, ()))?)
    }
}

/// Frames normalised with CLIP's statistics (as the readers and the synthetic worlds give
/// them) → EfficientNet-Lite's normalisation ((v − 127) / 128 on 0–255 values).
fn clip_to_efficientnet(data: &[f32], plane: usize) -> Vec<f32> {
    data.chunks_exact(plane)
        .enumerate()
        .flat_map(|(i, values)| {
            let (mean, std) = (OPENAI_CLIP_MEAN[i % 3], OPENAI_CLIP_STD[i % 3]);
            values
                .iter()
                .map(move |v| ((v * std + mean) * 255.0 - 127.0) / 128.0)
        })
        .collect()
}

/// The Meta-layout name of a GGUF-named LLaMA tensor.
fn meta_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => "tok_embeddings.weight".into(),
        "output_norm.weight" => "norm.weight".into(),
        "output.weight" => "output.weight".into(),
        _ => {
            let Some((layer, tensor)) = gguf.strip_prefix("blk.").and_then(|r| r.split_once('.'))
            else {
                return gguf.to_string();
            };
            let meta = match tensor {
                "attn_norm.weight" => "attention_norm.weight",
                "ffn_norm.weight" => "ffn_norm.weight",
                "attn_q.weight" => "attention.wq.weight",
                "attn_k.weight" => "attention.wk.weight",
                "attn_v.weight" => "attention.wv.weight",
                "attn_output.weight" => "attention.wo.weight",
                "ffn_gate.weight" => "feed_forward.w1.weight",
                "ffn_up.weight" => "feed_forward.w3.weight",
                "ffn_down.weight" => "feed_forward.w2.weight",
                other => other,
            };
            format!("layers.{layer}.{meta}")
        }
    }
}

/// The text after the modality tokens for a question (`""`: a caption follows).
pub fn prompt_text(question: &str) -> String {
    if question.is_empty() {
        String::new()
    } else {
        format!("{question}\nAnswer:")
    }
}

/// BOS (or, for a tokenizer without one, end-of-text) and the tokens of
/// [`prompt_text`]`(question)`.
pub fn prompt_tokens(tokenizer: &LlmTokenizer, question: &str) -> Result<Vec<u32>> {
    let bos = tokenizer.bos_id().or(tokenizer.eos_id()).ok_or_else(|| {
        Error::InvalidInput("the decoder's tokenizer has neither BOS nor EOS".into())
    })?;
    let mut tokens = vec![bos];
    tokens.extend(tokenizer.encode(&prompt_text(question), false, false)?);
    Ok(tokens)
}

/// The tokens an answer is trained as: ` answer` (a caption: `caption`) then EOS.
pub fn target_tokens(tokenizer: &LlmTokenizer, question: &str, answer: &str) -> Result<Vec<u32>> {
    let text = if question.is_empty() {
        answer.to_string()
    } else {
        format!(" {answer}")
    };
    let mut tokens = tokenizer.encode(&text, false, false)?;
    tokens.extend(tokenizer.eos_id());
    Ok(tokens)
}
