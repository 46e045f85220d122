//! Image → LLM: EfficientNet-Lite0 features, a trained projector into the LLM's
//! embedding space, and the LLM reading them in place of the `<image>` placeholders.
//! The seeds' five stages, end to end: modality → encoder → projector → LLM → text.
//!
//! A model directory holds `vlm.json` ([`VlmInfo`]: which LLM, which features, the
//! system prompt), `projector.json` and `model.safetensors` (the projector).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::interleave::{Interleaved, MediaKind, Segment};
use super::search_space::{efficientnet_processor, load_efficientnet};
use crate::encoder::efficientnet::{EfficientNet, feature_tokens};
use crate::llm::{Decoding, GenerateOptions, Generation, GenerationStats, KvCache, Llm, Message};
use crate::modality::image::{ImageProcessor, ImageSource};
use crate::projector::Projector;
use crate::train::manifest::IMAGE_TOKEN;
use crate::{Error, Result};

/// Which EfficientNet features become the image's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageTokens {
    /// The 7×7 feature map: 49 tokens of 1280 values (positions kept).
    Spatial,
    /// Its global mean: one token.
    Pooled,
}

/// Image features in the encoder's width: `(tokens, 1280)`.
pub fn image_features(net: &EfficientNet, pixels: &Tensor, kind: ImageTokens) -> Result<Tensor> {
    let out = net.forward(pixels)?;
    Ok(match kind {
        ImageTokens::Spatial => feature_tokens(&out.feature_map)?.squeeze(0)?,
        ImageTokens::Pooled => out.pooled,
    })
}

/// What a trained image → LLM model is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmInfo {
    /// The LLM (a store name or path).
    pub llm: String,
    pub image_tokens: ImageTokens,
    /// The system prompt the model was trained with.
    pub system: Option<String>,
    /// How it was made and how well it does, for the record.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl VlmInfo {
    pub const FILE: &str = "vlm.json";

    /// Reads `vlm.json` from a model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))
    }
}

/// A chat model that sees images.
pub struct Vlm {
    pub llm: Llm,
    net: EfficientNet,
    processor: ImageProcessor,
    projector: Projector,
    info: VlmInfo,
    /// Projected image tokens by content hash.
    cache: Mutex<HashMap<[u8; 32], Tensor>>,
}

impl Vlm {
    /// Loads a model directory (see the module docs), its LLM and EfficientNet-Lite0.
    pub fn load(dir: &Path) -> Result<Self> {
        let info = VlmInfo::load(dir)?;
        let llm = Llm::load(
            &crate::models::resolve(&info.llm)?,
            &crate::llm::LoadOptions::default(),
        )?;
        let projector = Projector::load(dir, &Device::Cpu)?;
        Self::from_parts(llm, load_efficientnet()?, projector, info)
    }

    /// Puts loaded parts together; the projector must map 1280 → the LLM's width.
    pub fn from_parts(
        llm: Llm,
        net: EfficientNet,
        projector: Projector,
        info: VlmInfo,
    ) -> Result<Self> {
        let c = projector.config();
        if c.output_dim != llm.config().hidden_size {
            return Err(Error::DimensionMismatch {
                what: "projector output vs LLM width".into(),
                expected: llm.config().hidden_size,
                got: c.output_dim,
            });
        }
        Ok(Self {
            llm,
            net,
            processor: efficientnet_processor(),
            projector,
            info,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn info(&self) -> &VlmInfo {
        &self.info
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Tokens per image.
    pub fn tokens_per_image(&self) -> usize {
        match self.info.image_tokens {
            ImageTokens::Spatial => 49,
            ImageTokens::Pooled => 1,
        }
    }

    /// An image's embeddings in the LLM's space, `(tokens, hidden)`; computed once per
    /// distinct image content.
    pub fn image_embeddings(&self, image: &ImageSource) -> Result<Tensor> {
        let rgb = self.processor.decode(image)?;
        let key: [u8; 32] = Sha256::digest(rgb.as_raw()).into();
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let pixels = self.processor.tensor(&[rgb], &Device::Cpu)?;
        let features = image_features(&self.net, &pixels, self.info.image_tokens)?;
        let tokens = self.projector.forward(&features)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, tokens.clone());
        }
        Ok(tokens)
    }

    /// The messages with the model's system prompt first (unless they have one).
    pub fn with_system(&self, messages: &[Message]) -> Vec<Message> {
        match &self.info.system {
            Some(system) if messages.first().is_none_or(|m| m.role != "system") => {
                std::iter::once(Message::system(system.clone()))
                    .chain(messages.iter().cloned())
                    .collect()
            }
            _ => messages.to_vec(),
        }
    }

    /// Answers the conversation, whose user turns hold one `<image>` placeholder per
    /// image of `images` (in order). `cache` starts empty.
    pub fn generate(
        &self,
        cache: &mut KvCache,
        messages: &[Message],
        images: &[ImageSource],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        options.sampling.validate()?;
        let messages = self.with_system(messages);
        let kinds = vec![MediaKind::Image; images.len()];
        let prompt = Interleaved::build(&self.llm, &messages, &kinds, false)?;
        let needed = prompt.len(|_, _| self.tokens_per_image());
        if needed + 1 > cache.capacity() {
            return Err(Error::ContextOverflow {
                tokens: needed + 1,
                context: cache.capacity(),
            });
        }
        let t0 = std::time::Instant::now();
        let mut rows: Vec<f32> = Vec::new();
        let mut text_tokens = Vec::new();
        for segment in &prompt.segments {
            match segment {
                Segment::Text { tokens, .. } => {
                    rows.extend(self.llm.model.embed_tokens(tokens)?);
                    text_tokens.extend_from_slice(tokens);
                }
                Segment::Media { index, .. } => {
                    let image = &images[*index];
                    let embeds = self
                        .image_embeddings(image)
                        .map_err(|e| Error::InvalidInput(format!("image {}: {e}", index + 1)))?;
                    rows.extend(
                        embeds
                            .to_dtype(DType::F32)?
                            .flatten_all()?
                            .to_vec1::<f32>()?,
                    );
                }
            }
        }
        let logits = self.llm.model.forward_hidden(&rows, cache)?;
        let mut stats = GenerationStats {
            prompt_tokens: needed,
            prefill_tokens: needed,
            prefill_secs: t0.elapsed().as_secs_f64(),
            ..GenerationStats::default()
        };
        let t1 = std::time::Instant::now();
        let mut decoding = Decoding::new(&text_tokens, logits, options);
        loop {
            let text = decoding.step(&self.llm.tokenizer, cache.len() < cache.capacity());
            if !text.is_empty() && !on_text(&text) {
                let rest = decoding.cancel();
                if !rest.is_empty() {
                    on_text(&rest);
                }
                break;
            }
            let Some(token) = decoding.pending() else {
                break;
            };
            decoding.set_logits(
                self.llm
                    .model
                    .forward_hidden(&self.llm.model.embed_tokens(&[token])?, cache)?,
            );
            stats.decode_tokens += 1;
        }
        stats.decode_secs = t1.elapsed().as_secs_f64();
        Ok(decoding.into_generation(stats))
    }
}

impl Vlm {
    /// Answers one question about one image (a fresh cache of `context` positions).
    pub fn ask(
        &self,
        image: &ImageSource,
        question: &str,
        context: Option<usize>,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let question = question.trim();
        if question.is_empty() {
            return Err(Error::InvalidInput("the question is empty".into()));
        }
        let mut cache = self.llm.new_cache(context);
        let messages = [Message::user(format!("{IMAGE_TOKEN}\n{question}"))];
        self.generate(
            &mut cache,
            &messages,
            std::slice::from_ref(image),
            options,
            on_text,
        )
    }
}

/// A conversation with a [`Vlm`] in which images can be attached to user turns.
/// The conversation is re-run from the start each turn (image embeddings are cached).
pub struct VlmSession<'m> {
    vlm: &'m Vlm,
    messages: Vec<Message>,
    /// Images of the conversation, in placeholder order.
    images: Vec<PathBuf>,
    /// Attached since the last message.
    pending: Vec<PathBuf>,
    options: GenerateOptions,
    context: Option<usize>,
}

impl<'m> VlmSession<'m> {
    pub fn new(vlm: &'m Vlm, options: GenerateOptions, context: Option<usize>) -> Self {
        Self {
            vlm,
            messages: Vec::new(),
            images: Vec::new(),
            pending: Vec::new(),
            options,
            context,
        }
    }

    /// Attaches an image to the next message; a file that does not decode is refused
    /// here, and the conversation goes on without it.
    pub fn attach(&mut self, path: &Path) -> Result<()> {
        self.vlm.image_embeddings(&ImageSource::File(path))?;
        self.pending.push(path.to_path_buf());
        Ok(())
    }

    /// Images waiting for the next message.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the conversation and any attached images.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.images.clear();
        self.pending.clear();
    }

    /// Sends `user` (with the attached images first) and streams the reply. On error
    /// the message and its images are not kept (they stay attached).
    pub fn send(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if user.contains(IMAGE_TOKEN) {
            return Err(Error::InvalidInput(format!(
                "type {IMAGE_TOKEN} only through /image: the message holds a placeholder without an image"
            )));
        }
        let placeholders = format!("{IMAGE_TOKEN}\n").repeat(self.pending.len());
        self.messages
            .push(Message::user(format!("{placeholders}{user}")));
        let images: Vec<PathBuf> = self.images.iter().chain(&self.pending).cloned().collect();
        let sources: Vec<ImageSource> = images.iter().map(|p| ImageSource::File(p)).collect();
        let mut cache = self.vlm.llm.new_cache(self.context);
        let result =
            self.vlm
                .generate(&mut cache, &self.messages, &sources, &self.options, on_text);
        match &result {
            Ok(g) => {
                self.messages.push(Message::assistant(g.text.clone()));
                self.images = images;
                self.pending.clear();
            }
            Err(_) => {
                self.messages.pop();
            }
        }
        result
    }
}

/// The question `omni caption` asks.
pub const CAPTION_PROMPT: &str = "Describe the image.";

/// The directory of model `name` in the store, or `name` itself when it is a path.
pub fn vlm_dir(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.join(VlmInfo::FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let dir = crate::models::Store::open()?.model_dir(name);
    if dir.join(VlmInfo::FILE).is_file() {
        Ok(dir)
    } else {
        Err(Error::UnknownModel {
            name: format!("{name} (no image→LLM model there; train one with `omni train vlm`)"),
        })
    }
}
