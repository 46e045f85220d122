//! Text ↔ token ids for GGUF models.
//!
//! Built from the GGUF vocabulary (`tokenizer.ggml.*`) into a Hugging Face `tokenizers`
//! pipeline that reproduces llama.cpp's `llama_tokenize`: GPT-2 byte-level BPE with the
//! pre-tokenizer regexes llama.cpp uses for `tokenizer.ggml.pre` (src/llama-vocab.cpp),
//! control tokens recognised in the text only when asked to (`parse_special`),
//! user-defined tokens always. A `tokenizer.json` can be given instead of the GGUF vocab.
//! Detokenization goes through the raw bytes of each token, so a stream of tokens can be
//! turned into text without ever splitting a UTF-8 character (see `generate.rs`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::Metadata;
use crate::{Error, Result};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Texts llama.cpp treats as end of generation wherever they occur in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
];

// llama.cpp's GPT-2 regex (`unicode_regex_split_custom_gpt2`) is the one `ByteLevel`
// applies with `use_regex`: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer plus the special-token facts generation needs.
pub struct LlmTokenizer {
    inner: Tokenizer,
    /// `inner` with control tokens treated as plain text (built on first use).
    literal: OnceLock<Tokenizer>,
    /// The bytes each token stands for when printed (empty for control tokens).
    pieces: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: HashSet<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for LlmTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmTokenizer")
            .field("vocab", &self.pieces.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` value.
fn pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(Into::into)
        .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))
    };
    let bytes_only = || PreTokenizerWrapper::from(ByteLevel::new(false, false, false));
    let gpt2 = || PreTokenizerWrapper::from(ByteLevel::new(false, false, true));
    let seq = |parts: Vec<PreTokenizerWrapper>| PreTokenizerWrapper::from(Sequence::new(parts));
    // (pre-tokenizer, ignore_merges)
    Ok(match pre {
        "gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => (gpt2(), false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva"
        | "mellum2" => (seq(vec![split(r"\p{N}")?, gpt2()]), false),
        "qwen2" | "stablelm2" | "hunyuan" | "deepseek-r1-qwen" => {
            (seq(vec![split(REGEX_QWEN2)?, bytes_only()]), false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "smaug-bpe" => (seq(vec![split(REGEX_LLAMA3)?, bytes_only()]), true),
        "default" => (
            seq(vec![
                split(r"[\p{P}\$\+<=>\^~\|]+")?,
                gpt2(),
                split(r"\p{N}+")?,
                split("[0-9][0-9][0-9]")?,
            ]),
            false,
        ),
        other => {
            return Err(Error::Tokenizer(format!(
                "unsupported pre-tokenizer `{other}` (tokenizer.ggml.pre); pass a tokenizer.json instead"
            )));
        }
    })
}

/// GPT-2's map from bytes to the printable characters byte-level BPE vocabularies use.
fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    map
}

/// The bytes a byte-level BPE token string stands for.
fn byte_level_bytes(token: &str, char_to_byte: &std::collections::HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_to_byte.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

impl LlmTokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.model` must be `gpt2`).
    pub fn from_gguf(md: &Metadata<'_>) -> Result<Self> {
        let model = md.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` (tokenizer.ggml.model) is not supported from GGUF metadata \
                 (only GPT-2 byte-level BPE); pass a tokenizer.json instead"
            )));
        }
        let tokens = md.str_array("tokenizer.ggml.tokens")?;
        let merges = md.str_array("tokenizer.ggml.merges")?;
        let types = md
            .opt_int_array("tokenizer.ggml.token_type")?
            .unwrap_or_default();
        let pre = md.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
        let (pre_tok, ignore_merges) = pre_tokenizer(pre)?;

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("malformed merge `{m}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("building BPE from GGUF vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut control = vec![false; tokens.len()];
        let mut specials = Vec::new();
        let mut user = Vec::new();
        for (i, &ty) in types.iter().enumerate().take(tokens.len()) {
            match ty {
                TYPE_CONTROL => {
                    control[i] = true;
                    specials.push(AddedToken::from(tokens[i].to_string(), true));
                }
                TYPE_USER_DEFINED => user.push(AddedToken::from(tokens[i].to_string(), false)),
                _ => {}
            }
        }
        let id = |key: &str| -> Result<Option<u32>> {
            Ok(md
                .opt_usize(key)?
                .filter(|&i| i < tokens.len())
                .map(|i| i as u32))
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let mut eog: HashSet<u32> = eos.into_iter().chain(eot).collect();
        for (i, t) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(t) {
                eog.insert(i as u32);
                if !control[i] {
                    control[i] = true;
                    specials.push(AddedToken::from(t.to_string(), true));
                }
            }
        }
        inner
            .add_special_tokens(specials)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner
            .add_tokens(user)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;

        let char_to_byte: std::collections::HashMap<char, u8> = byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let user_ids: HashSet<usize> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == TYPE_USER_DEFINED)
            .map(|(i, _)| i)
            .collect();
        let pieces = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if control[i] {
                    Vec::new()
                } else if user_ids.contains(&i) {
                    t.as_bytes().to_vec()
                } else {
                    byte_level_bytes(t, &char_to_byte)
                }
            })
            .collect();
        let add_bos = md
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(matches!(
                pre,
                "llama3" | "llama-v3" | "llama-bpe" | "falcon3"
            ));
        Ok(Self {
            inner,
            literal: OnceLock::new(),
            pieces,
            bos,
            eos,
            eog,
            add_bos,
        })
    }

    /// Loads a Hugging Face `tokenizer.json`, taking BOS/EOS facts from the GGUF metadata.
    pub fn from_json_file(path: &Path, md: &Metadata<'_>) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| Error::model_file(path, format!("cannot load tokenizer: {e}")))?;
        let n = inner.get_vocab_size(true);
        let mut pieces = vec![Vec::new(); n];
        let mut eog = HashSet::new();
        let char_to_byte: std::collections::HashMap<char, u8> = byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let byte_level = matches!(
            inner.get_decoder(),
            Some(tokenizers::DecoderWrapper::ByteLevel(_))
        );
        let specials: HashSet<u32> = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        for (text, id) in inner.get_vocab(true) {
            let Some(slot) = pieces.get_mut(id as usize) else {
                continue;
            };
            if EOG_TEXTS.contains(&text.as_str()) {
                eog.insert(id);
            }
            if specials.contains(&id) {
                continue;
            }
            *slot = if byte_level {
                byte_level_bytes(&text, &char_to_byte)
            } else if let Some(hex) = text.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                u8::from_str_radix(hex, 16)
                    .map(|b| vec![b])
                    .unwrap_or_else(|_| text.into_bytes())
            } else {
                text.replace('\u{2581}', " ").into_bytes()
            };
        }
        let id = |key: &str| -> Result<Option<u32>> {
            Ok(md.opt_usize(key)?.filter(|&i| i < n).map(|i| i as u32))
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        eog.extend(eos);
        Ok(Self {
            inner,
            literal: OnceLock::new(),
            pieces,
            bos,
            eos,
            eog,
            add_bos: md
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(false),
        })
    }

    /// Token ids of `text`, with BOS first when the model wants it (`add_special`).
    /// With `parse_special`, control-token texts such as `<|im_start|>` become their
    /// ids; without, they are tokenized as plain text (llama.cpp's `parse_special`).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.inner
        } else {
            self.literal.get_or_init(|| {
                let mut t = self.inner.clone();
                t.set_encode_special_tokens(true);
                t
            })
        };
        let enc = tok
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The bytes token `id` prints as (empty for control tokens and unknown ids).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The text of `ids`, control tokens left out; invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.piece(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether `id` ends generation (EOS, EOT, `<|im_end|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The text of a token as stored in the vocabulary (e.g. `<|im_start|>`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (e.g. to use the
    /// vocabulary of a GGUF file elsewhere).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| Error::model_file(path, format!("cannot write tokenizer: {e}")))
    }
}
