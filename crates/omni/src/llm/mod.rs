//! Stage 4, the LLM backbone: LLaMA-family decoders from GGUF, tokenizer, chat template,
//! KV cache and sampling.
//!
//! ```no_run
//! use omni::llm::{GenerateOptions, Llm, LoadOptions};
//! let llm = Llm::load("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &LoadOptions::default())?;
//! let prompt = llm.tokenizer.encode("The capital of France is", true, false)?;
//! let mut cache = llm.new_cache(None);
//! let out = llm.generate(&mut cache, &prompt, &GenerateOptions::default(), &mut |t| {
//!     print!("{t}");
//!     true
//! })?;
//! # Ok::<(), omni::Error>(())
//! ```

mod attention;
mod chat_template;
mod config;
pub(crate) mod dense;
mod generate;
mod gguf;
mod kv_cache;
mod lora;
mod model;
mod pool;
mod quant;
mod sampling;
mod stream;
mod tokenizer;
mod vec;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub use chat_template::{ChatTemplate, Message, processor_chat_template};
pub use config::{Arch, LlmConfig, RopeStyle, SUPPORTED_ARCHITECTURES};
pub use dense::{DenseCache, DenseLlama};
pub use generate::{
    Decoding, FinishReason, GenerateOptions, Generation, GenerationStats, decode, generate, prefill,
};
pub use gguf::{GgufFile, Metadata};
pub use kv_cache::KvCache;
pub use lora::{LORA_TARGETS, LoraConfig, LoraWeights};
pub use model::LlamaModel;
pub use pool::{num_threads, set_num_threads};
pub use sampling::{Sampler, SamplingParams, argmax};
pub use stream::{Released, TextStream};
pub use tokenizer::LlmTokenizer;

use crate::{Error, Result};

/// A decoder seen from the pipeline: embeddings in, next-token logits out, with the
/// sequence's state in a [`KvCache`] so that one model serves many sequences.
pub trait Backbone: Send + Sync {
    fn config(&self) -> &LlmConfig;

    /// A cache for `capacity` positions (at most the model's context length).
    fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config(), capacity)
    }

    /// Token embeddings: `(tokens.len(), hidden_size)` f32.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor>;

    /// Runs `(seq, hidden_size)` embeddings (token embeddings, or image/audio embeddings
    /// spliced between them) at the next positions of `cache` and returns the logits of
    /// the last position (`vocab_size`).
    fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Vec<f32>>;

    /// [`Self::embed`] then [`Self::forward_embeds`], for text.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        self.forward_embeds(&self.embed(tokens)?, cache)
    }
}

impl Backbone for LlamaModel {
    fn config(&self) -> &LlmConfig {
        LlamaModel::config(self)
    }

    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let d = self.config().hidden_size;
        Ok(Tensor::from_vec(
            self.embed_tokens(tokens)?,
            (tokens.len(), d),
            &Device::Cpu,
        )?)
    }

    fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Vec<f32>> {
        let (_, d) = embeds.dims2()?;
        if d != self.config().hidden_size {
            return Err(Error::InvalidInput(format!(
                "embeddings of width {d} given to a model of width {}",
                self.config().hidden_size
            )));
        }
        let hidden = embeds
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.forward_hidden(&hidden, cache)
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let hidden = self.embed_tokens(tokens)?;
        self.forward_hidden(&hidden, cache)
    }
}

/// How to load an [`Llm`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A Hugging Face `tokenizer.json` to use instead of the GGUF vocabulary.
    pub tokenizer_json: Option<PathBuf>,
}

/// A ready-to-use language model: decoder, tokenizer and chat template.
pub struct Llm {
    pub model: LlamaModel,
    pub tokenizer: LlmTokenizer,
    /// The GGUF's `tokenizer.chat_template`, if any.
    pub chat_template: Option<ChatTemplate>,
    path: PathBuf,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("path", &self.path)
            .field("config", self.model.config())
            .finish()
    }
}

/// The GGUF file a model path names: the file itself, or the one `.gguf` in a directory.
pub fn find_gguf(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Err(Error::model_file(
            path,
            "no .gguf file in this model directory",
        )),
        1 => Ok(found.remove(0)),
        _ => Err(Error::model_file(
            path,
            format!(
                "several .gguf files in this model directory ({}); name one",
                found
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

impl Llm {
    /// Loads the GGUF at `path` (a file, or a directory holding one).
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        let path = find_gguf(path)?;
        let mut gguf = GgufFile::open(&path)?;
        let config = {
            let has = |name: &str| gguf.has_tensor(name);
            LlmConfig::from_metadata(&path, gguf.metadata(), has)?
        };
        let with_path = |e: Error| match e {
            Error::Tokenizer(reason) => Error::model_file(&path, reason),
            e => e,
        };
        let tokenizer = match &options.tokenizer_json {
            Some(json) => LlmTokenizer::from_json_file(json, &gguf.meta())?,
            None => LlmTokenizer::from_gguf(&gguf.meta()).map_err(with_path)?,
        };
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::model_file(
                &path,
                format!(
                    "the tokenizer has {} tokens but the model only {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        let chat_template = match gguf.meta().opt_str("tokenizer.chat_template")? {
            Some(source) => Some(ChatTemplate::new(source).map_err(with_path)?),
            None => None,
        };
        let model = LlamaModel::load(&mut gguf, config)?;
        Ok(Self {
            model,
            tokenizer,
            chat_template,
            path,
        })
    }

    /// The GGUF file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &LlmConfig {
        self.model.config()
    }

    /// A cache for `context` positions (default and maximum: the model's context length).
    pub fn new_cache(&self, context: Option<usize>) -> KvCache {
        let max = self.config().context_length;
        self.model
            .new_cache(context.map_or(max, |c| c.min(max)).max(1))
    }

    /// Renders `messages` with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::model_file(
                &self.path,
                "the model has no chat template (tokenizer.chat_template)",
            )
        })?;
        let text = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_text(i))
                .unwrap_or_default()
        };
        template.render(
            messages,
            add_generation_prompt,
            &text(self.tokenizer.bos_id()),
            &text(self.tokenizer.eos_id()),
        )
    }

    /// [`generate()`] with this model.
    pub fn generate(
        &self,
        cache: &mut KvCache,
        prompt: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        generate(
            &self.model,
            &self.tokenizer,
            cache,
            prompt,
            options,
            on_text,
        )
    }
}
