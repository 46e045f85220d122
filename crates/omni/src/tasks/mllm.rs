//! Image or audio → LLM: an encoder's features (EfficientNet-Lite0 for images, Whisper's
//! encoder for audio), a trained projector into the LLM's embedding space, and the LLM
//! reading them in place of the `<image>` / `<audio>` placeholders. The seeds' five
//! stages end to end: modality → encoder → projector → LLM → text.
//!
//! A model directory holds `mllm.json` ([`MllmInfo`]: the LLM, the modality and its
//! encoder settings, the system prompt), `projector.json` and `model.safetensors`, and,
//! when stage 2 trained them, the LLM's LoRA adapters (`lora.json`, `lora.safetensors`),
//! merged into the LLM's weights at load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::interleave::{Interleaved, MediaKind, Segment};
use super::search_space::{efficientnet_processor, load_efficientnet};
use crate::encoder::efficientnet::{EfficientNet, feature_tokens};
use crate::encoder::whisper::Whisper;
use crate::llm::{
    Decoding, GenerateOptions, Generation, GenerationStats, KvCache, Llm, LoraWeights, Message,
};
use crate::modality::image::{ImageProcessor, ImageSource};
use crate::projector::Projector;
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

/// What a model reads, and how its encoder turns it into feature rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Modality {
    /// EfficientNet-Lite0 features of an image.
    Image { tokens: ImageTokens },
    /// Whisper encoder states (one per 20 ms), averaged over `pool` consecutive states.
    Audio { whisper: String, pool: usize },
}

impl Modality {
    pub fn media_kind(&self) -> MediaKind {
        match self {
            Modality::Image { .. } => MediaKind::Image,
            Modality::Audio { .. } => MediaKind::Audio,
        }
    }
}

/// One media input: an image, or 16 kHz mono audio samples.
#[derive(Debug, Clone, Copy)]
pub enum Media<'a> {
    Image(ImageSource<'a>),
    Audio(&'a [f32]),
}

impl Media<'_> {
    pub fn kind(&self) -> MediaKind {
        match self {
            Media::Image(_) => MediaKind::Image,
            Media::Audio(_) => MediaKind::Audio,
        }
    }
}

/// A loaded media encoder.
pub enum MediaEncoder {
    Image {
        net: Box<EfficientNet>,
        processor: Box<ImageProcessor>,
        tokens: ImageTokens,
    },
    Audio {
        whisper: Box<Whisper>,
        pool: usize,
    },
}

impl MediaEncoder {
    /// Loads the encoder `modality` names (fetching it if needed).
    pub fn load(modality: &Modality) -> Result<Self> {
        Ok(match modality {
            Modality::Image { tokens } => MediaEncoder::Image {
                net: Box::new(load_efficientnet()?),
                processor: Box::new(efficientnet_processor()),
                tokens: *tokens,
            },
            Modality::Audio { whisper, pool } => {
                if *pool == 0 {
                    return Err(Error::InvalidInput(
                        "the audio pool must be at least 1".into(),
                    ));
                }
                MediaEncoder::Audio {
                    whisper: Box::new(Whisper::load(&crate::models::resolve(whisper)?)?),
                    pool: *pool,
                }
            }
        })
    }

    pub fn kind(&self) -> MediaKind {
        match self {
            MediaEncoder::Image { .. } => MediaKind::Image,
            MediaEncoder::Audio { .. } => MediaKind::Audio,
        }
    }

    /// Width of the feature rows.
    pub fn feature_dim(&self) -> usize {
        match self {
            MediaEncoder::Image { .. } => 1280,
            MediaEncoder::Audio { whisper, .. } => whisper.config.n_audio_state,
        }
    }

    /// Feature rows `(tokens, feature_dim)` and a hash of the decoded content.
    pub fn features(&self, media: &Media) -> Result<(Tensor, [u8; 32])> {
        let (decoded, key) = self.decode(media)?;
        Ok((self.encode(decoded)?, key))
    }

    /// Decodes a media item and hashes its content (cheap next to the encoder).
    fn decode<'a>(&self, media: &Media<'a>) -> Result<(Decoded<'a>, [u8; 32])> {
        match (self, media) {
            (MediaEncoder::Image { processor, .. }, Media::Image(source)) => {
                let rgb = processor.decode(source)?;
                let key = Sha256::digest(rgb.as_raw()).into();
                Ok((Decoded::Image(rgb), key))
            }
            (MediaEncoder::Audio { .. }, Media::Audio(samples)) => {
                if samples.is_empty() {
                    return Err(Error::InvalidInput("the audio clip is empty".into()));
                }
                let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                Ok((Decoded::Audio(samples), Sha256::digest(&bytes).into()))
            }
            (encoder, media) => Err(Error::InvalidInput(format!(
                "this model reads {}, not {}",
                kind_name(encoder.kind()),
                kind_name(media.kind())
            ))),
        }
    }

    /// Runs the encoder on a decoded item.
    fn encode(&self, decoded: Decoded) -> Result<Tensor> {
        match (self, decoded) {
            (
                MediaEncoder::Image {
                    net,
                    processor,
                    tokens,
                },
                Decoded::Image(rgb),
            ) => {
                let pixels = processor.tensor(&[rgb], &Device::Cpu)?;
                let out = net.forward(&pixels)?;
                Ok(match tokens {
                    ImageTokens::Spatial => feature_tokens(&out.feature_map)?.squeeze(0)?,
                    ImageTokens::Pooled => out.pooled,
                })
            }
            (MediaEncoder::Audio { whisper, pool }, Decoded::Audio(samples)) => {
                pool_rows(&whisper.encoder_states(samples)?, *pool)
            }
            _ => Err(Error::InvalidInput(
                "decoded media of the wrong kind for this encoder".into(),
            )),
        }
    }
}

/// A decoded media item, ready for its encoder.
enum Decoded<'a> {
    Image(image::RgbImage),
    Audio(&'a [f32]),
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "images",
        MediaKind::Audio => "audio",
    }
}

/// Means of `pool` consecutive rows: `(n, d)` → `(⌈n / pool⌉, d)` (the last group may be
/// shorter).
pub fn pool_rows(x: &Tensor, pool: usize) -> Result<Tensor> {
    let n = x.dim(0)?;
    if pool <= 1 {
        return Ok(x.clone());
    }
    let groups = (0..n)
        .step_by(pool)
        .map(|start| x.narrow(0, start, pool.min(n - start))?.mean_keepdim(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&groups, 0)?)
}

/// What a trained media → LLM model is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MllmInfo {
    /// The LLM (a store name or path).
    pub llm: String,
    pub modality: Modality,
    /// The system prompt the model was trained with.
    pub system: Option<String>,
    /// How it was made and how well it does, for the record.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl MllmInfo {
    pub const FILE: &str = "mllm.json";

    /// Reads `mllm.json` from a model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))
    }
}

/// A chat model that reads images or audio.
pub struct MultimodalLlm {
    pub llm: Llm,
    encoder: MediaEncoder,
    projector: Projector,
    /// LoRA adapters merged into the LLM's weights (stage 2), kept for export.
    lora: Option<LoraWeights>,
    info: MllmInfo,
    /// Projected media tokens by content hash.
    cache: Mutex<HashMap<[u8; 32], Tensor>>,
}

impl MultimodalLlm {
    /// Loads a model directory (see the module docs), its LLM and its encoder.
    pub fn load(dir: &Path) -> Result<Self> {
        let info = MllmInfo::load(dir)?;
        let llm = Llm::load(
            &crate::models::resolve(&info.llm)?,
            &crate::llm::LoadOptions::default(),
        )?;
        let projector = Projector::load(dir, &Device::Cpu)?;
        let encoder = MediaEncoder::load(&info.modality)?;
        let lora = LoraWeights::load(dir)?;
        Self::from_parts(llm, encoder, projector, lora, info)
    }

    /// Puts loaded parts together; the projector must map the encoder's width to the
    /// LLM's.
    pub fn from_parts(
        mut llm: Llm,
        encoder: MediaEncoder,
        projector: Projector,
        lora: Option<LoraWeights>,
        info: MllmInfo,
    ) -> Result<Self> {
        let c = projector.config();
        for (what, expected, got) in [
            (
                "projector input vs encoder width",
                encoder.feature_dim(),
                c.input_dim,
            ),
            (
                "projector output vs LLM width",
                llm.config().hidden_size,
                c.output_dim,
            ),
        ] {
            if expected != got {
                return Err(Error::DimensionMismatch {
                    what: what.into(),
                    expected,
                    got,
                });
            }
        }
        if let Some(lora) = &lora {
            llm.model.merge_lora(lora)?;
        }
        Ok(Self {
            llm,
            encoder,
            projector,
            lora,
            info,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn info(&self) -> &MllmInfo {
        &self.info
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// The LoRA adapters merged into the LLM, if the model has any.
    pub fn lora(&self) -> Option<&LoraWeights> {
        self.lora.as_ref()
    }

    /// The Whisper model of an audio model (its encoder; its decoder is the baseline).
    pub fn whisper(&self) -> Option<&Whisper> {
        match &self.encoder {
            MediaEncoder::Audio { whisper, .. } => Some(whisper),
            MediaEncoder::Image { .. } => None,
        }
    }

    /// The kind of media the model reads.
    pub fn media_kind(&self) -> MediaKind {
        self.encoder.kind()
    }

    /// A media item's embeddings in the LLM's space, `(tokens, hidden)`; computed once
    /// per distinct content.
    pub fn embeddings(&self, media: &Media) -> Result<Tensor> {
        Ok(self.keyed_embeddings(media)?.0)
    }

    /// [`Self::embeddings`] and the content hash they are cached under.
    fn keyed_embeddings(&self, media: &Media) -> Result<(Tensor, [u8; 32])> {
        let (decoded, key) = self.encoder.decode(media)?;
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok((hit, key));
        }
        let tokens = self.projector.forward(&self.encoder.encode(decoded)?)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, tokens.clone());
        }
        Ok((tokens, key))
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

    /// Answers the conversation, whose user turns hold one placeholder per item of
    /// `media` (in order). Only the part of the conversation not already in `cache` runs
    /// (an empty cache runs everything).
    pub fn generate(
        &self,
        cache: &mut MllmCache,
        messages: &[Message],
        media: &[Media],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        options.sampling.validate()?;
        let messages = self.with_system(messages);
        let kinds: Vec<MediaKind> = media.iter().map(Media::kind).collect();
        let prompt = Interleaved::build(&self.llm, &messages, &kinds, false)?;
        let t0 = std::time::Instant::now();
        let mut rows: Vec<f32> = Vec::new();
        let mut positions: Vec<Position> = Vec::new();
        let mut text_tokens = Vec::new();
        for segment in &prompt.segments {
            match segment {
                Segment::Text { tokens, .. } => {
                    rows.extend(self.llm.model.embed_tokens(tokens)?);
                    positions.extend(tokens.iter().map(|&t| Position::Token(t)));
                    text_tokens.extend_from_slice(tokens);
                }
                Segment::Media { index, kind } => {
                    let (embeds, key) = self.keyed_embeddings(&media[*index]).map_err(|e| {
                        Error::InvalidInput(format!("{} {}: {e}", kind_label(*kind), index + 1))
                    })?;
                    let embeds = embeds.to_dtype(DType::F32)?;
                    positions.extend((0..embeds.dim(0)?).map(|row| Position::Media(key, row)));
                    rows.extend(embeds.flatten_all()?.to_vec1::<f32>()?);
                }
            }
        }
        let total = positions.len();
        if total + 1 > cache.kv.capacity() {
            return Err(Error::ContextOverflow {
                tokens: total + 1,
                context: cache.kv.capacity(),
            });
        }
        // Reuse the cached prefix; at least the last position runs, for its logits.
        let shared = cache
            .fed
            .iter()
            .zip(&positions)
            .take_while(|(a, b)| a == b)
            .count()
            .min(total - 1)
            .min(cache.kv.len());
        cache.kv.truncate(shared);
        cache.fed.truncate(shared);
        let d = self.llm.config().hidden_size;
        let logits = self
            .llm
            .model
            .forward_hidden(&rows[shared * d..], &mut cache.kv)?;
        let stats = GenerationStats {
            prompt_tokens: total,
            prefill_tokens: total - shared,
            prefill_secs: t0.elapsed().as_secs_f64(),
            ..GenerationStats::default()
        };
        let result = crate::llm::decode(
            &self.llm.model,
            &self.llm.tokenizer,
            &mut cache.kv,
            Decoding::new(&text_tokens, logits, options),
            stats,
            on_text,
        );
        // Whatever happened, the cache holds a prefix of the prompt and the reply.
        let mut fed = positions;
        if let Ok(g) = &result {
            fed.extend(g.tokens.iter().map(|&t| Position::Token(t)));
        }
        fed.truncate(cache.kv.len());
        cache.fed = fed;
        result
    }

    /// A KV cache of `context` positions (the LLM's own context when `None`).
    pub fn new_cache(&self, context: Option<usize>) -> MllmCache {
        MllmCache {
            kv: self.llm.new_cache(context),
            fed: Vec::new(),
        }
    }

    /// Answers one question about one media item (a fresh cache of `context` positions).
    pub fn ask(
        &self,
        media: &Media,
        question: &str,
        context: Option<usize>,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let question = question.trim();
        if question.is_empty() {
            return Err(Error::InvalidInput("the question is empty".into()));
        }
        let mut cache = self.new_cache(context);
        let placeholder = media.kind().placeholder();
        let messages = [Message::user(format!("{placeholder}\n{question}"))];
        self.generate(
            &mut cache,
            &messages,
            std::slice::from_ref(media),
            options,
            on_text,
        )
    }
}

fn kind_label(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Audio => "audio clip",
    }
}

/// A media item held by its owner: an image file, or decoded 16 kHz audio.
#[derive(Debug, Clone)]
pub enum OwnedMedia {
    Image(PathBuf),
    Audio(Vec<f32>),
}

impl OwnedMedia {
    /// The image at `path`, or the recording at `path` decoded to 16 kHz mono.
    pub fn load(kind: MediaKind, path: &Path) -> Result<Self> {
        Ok(match kind {
            MediaKind::Image => OwnedMedia::Image(path.to_path_buf()),
            MediaKind::Audio => OwnedMedia::Audio(crate::modality::audio::load_mono(path, 16_000)?),
        })
    }

    pub fn media(&self) -> Media<'_> {
        match self {
            OwnedMedia::Image(path) => Media::Image(ImageSource::File(path)),
            OwnedMedia::Audio(samples) => Media::Audio(samples),
        }
    }
}

/// What one cached position holds: a token, or row `usize` of a media item's
/// embeddings (by content hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Token(u32),
    Media([u8; 32], usize),
}

/// A KV cache and what is in it, so a conversation's next turn only runs what is new.
pub struct MllmCache {
    kv: KvCache,
    fed: Vec<Position>,
}

impl MllmCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    pub fn clear(&mut self) {
        self.kv.clear();
        self.fed.clear();
    }
}

/// A conversation with a [`MultimodalLlm`] in which media files can be attached to user
/// turns. One KV cache serves the whole conversation: each turn runs only its new
/// positions (media embeddings are also cached by content).
pub struct MllmSession<'m> {
    model: &'m MultimodalLlm,
    cache: MllmCache,
    messages: Vec<Message>,
    /// Media of the conversation, in placeholder order.
    media: Vec<OwnedMedia>,
    /// Attached since the last message.
    pending: Vec<OwnedMedia>,
    options: GenerateOptions,
}

impl<'m> MllmSession<'m> {
    pub fn new(model: &'m MultimodalLlm, options: GenerateOptions, context: Option<usize>) -> Self {
        Self {
            model,
            cache: model.new_cache(context),
            messages: Vec::new(),
            media: Vec::new(),
            pending: Vec::new(),
            options,
        }
    }

    /// Positions of the conversation held in the KV cache.
    pub fn cached_positions(&self) -> usize {
        self.cache.len()
    }

    /// Attaches a media file (an image, or a recording for an audio model) to the next
    /// message; a file that does not decode is refused here and the conversation goes on.
    pub fn attach(&mut self, path: &Path) -> Result<()> {
        let item = OwnedMedia::load(self.model.media_kind(), path)?;
        self.model.embeddings(&item.media())?;
        self.pending.push(item);
        Ok(())
    }

    /// Media waiting for the next message.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the conversation and any attached media.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.messages.clear();
        self.media.clear();
        self.pending.clear();
    }

    /// Sends `user` (with the attached media first) and streams the reply. On error the
    /// message is not kept (its media stay attached).
    pub fn send(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        for kind in [MediaKind::Image, MediaKind::Audio] {
            if user.contains(kind.placeholder()) {
                return Err(Error::InvalidInput(format!(
                    "the message holds a {} placeholder without its media: attach files instead",
                    kind.placeholder()
                )));
            }
        }
        let placeholder = format!("{}\n", self.model.media_kind().placeholder());
        let prefix = placeholder.repeat(self.pending.len());
        self.messages.push(Message::user(format!("{prefix}{user}")));
        let all: Vec<OwnedMedia> = self.media.iter().chain(&self.pending).cloned().collect();
        let media: Vec<Media> = all.iter().map(OwnedMedia::media).collect();
        let result = self.model.generate(
            &mut self.cache,
            &self.messages,
            &media,
            &self.options,
            on_text,
        );
        match &result {
            Ok(g) => {
                self.messages.push(Message::assistant(g.text.clone()));
                self.media = all;
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
pub fn mllm_dir(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.join(MllmInfo::FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let dir = crate::models::Store::open()?.model_dir(name);
    if dir.join(MllmInfo::FILE).is_file() {
        Ok(dir)
    } else {
        Err(Error::InvalidInput(format!(
            "no image/audio → LLM model `{name}` (neither a model directory nor in {}); train one with `omni train mllm`",
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_averages_groups_and_keeps_the_tail() {
        let x = Tensor::new(
            &[[1f32, 2.], [3., 4.], [5., 6.], [7., 8.], [9., 10.]],
            &Device::Cpu,
        )
        .unwrap();
        let pooled = pool_rows(&x, 2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![2., 3.], vec![6., 7.], vec![9., 10.]]);
        assert_eq!(pool_rows(&x, 1).unwrap().dims(), &[5, 2]);
    }

    #[test]
    fn modalities_read_from_json() {
        let image: Modality =
            serde_json::from_str(r#"{"kind":"image","tokens":"spatial"}"#).unwrap();
        assert_eq!(image.media_kind(), MediaKind::Image);
        let audio: Modality =
            serde_json::from_str(r#"{"kind":"audio","whisper":"whisper-tiny.en","pool":4}"#)
                .unwrap();
        assert_eq!(audio.media_kind(), MediaKind::Audio);
        assert!(serde_json::from_str::<Modality>(r#"{"kind":"smell"}"#).is_err());
    }
}
