//! Whisper's tokenizer: the HF `tokenizer.json` byte-level BPE plus the special tokens that
//! steer decoding (start of transcript, language, task, timestamps), as in faster-whisper's
//! `tokenizer.py` and OpenAI `whisper/tokenizer.py`.

use std::collections::BTreeSet;
use std::path::Path;

use tokenizers::Tokenizer;

use crate::{Error, Result};

/// Tokenizer with the ids of Whisper's special tokens.
#[derive(Debug, Clone)]
pub struct WhisperTokenizer {
    tokenizer: Tokenizer,
    /// `<|endoftext|>`; every id below it is text.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    pub sot_prev: u32,
    pub sot_lm: u32,
    pub translate: u32,
    pub transcribe: u32,
    /// `<|nospeech|>` or, in older vocabularies, `<|nocaptions|>`.
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; timestamp `k` (k × 20 ms) is `timestamp_begin + k`.
    pub timestamp_begin: u32,
    /// Language codes and their token ids, in vocabulary order.
    languages: Vec<(String, u32)>,
}

impl WhisperTokenizer {
    /// Loads `tokenizer.json` and looks up the special tokens.
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::model_file(path, format!("invalid tokenizer: {e}")))?;
        let id = |token: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| {
                Error::model_file(path, format!("the tokenizer has no `{token}` token"))
            })
        };
        let eot = id("<|endoftext|>")?;
        let sot = id("<|startoftranscript|>")?;
        let translate = id("<|translate|>")?;
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        let no_timestamps = id("<|notimestamps|>")?;
        let languages = (sot + 1..translate)
            .filter_map(|i| {
                let token = tokenizer.id_to_token(i)?;
                let code = token.strip_prefix("<|")?.strip_suffix("|>")?.to_string();
                Some((code, i))
            })
            .collect();
        Ok(WhisperTokenizer {
            eot,
            sot,
            sot_prev: id("<|startofprev|>")?,
            sot_lm: id("<|startoflm|>")?,
            translate,
            transcribe: id("<|transcribe|>")?,
            no_speech,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            languages,
            tokenizer,
        })
    }

    /// The token of language `code` (`en`, `fr`, …).
    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages
            .iter()
            .find(|(c, _)| c == code)
            .map(|&(_, id)| id)
    }

    /// The language code of a language token.
    pub fn language_code(&self, token: u32) -> Option<&str> {
        self.languages
            .iter()
            .find(|&&(_, id)| id == token)
            .map(|(c, _)| c.as_str())
    }

    /// All language codes the vocabulary knows.
    pub fn language_codes(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(|(c, _)| c.as_str())
    }

    /// `<|startoftranscript|>` then, for multilingual models, the language and task tokens.
    pub fn sot_sequence(&self, language: Option<u32>, task: Option<u32>) -> Vec<u32> {
        let mut seq = vec![self.sot];
        seq.extend(language);
        seq.extend(task);
        seq
    }

    /// Text → ids, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// Ids → text, keeping only text tokens (below `<|endoftext|>`).
    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        let text: Vec<u32> = tokens.iter().copied().filter(|&t| t < self.eot).collect();
        self.tokenizer
            .decode(&text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Tokens that would spell speaker tags, music symbols or other non-speech annotations,
    /// suppressed by `suppress_tokens = [-1]` (faster-whisper's `non_speech_tokens`).
    pub fn non_speech_tokens(&self) -> Result<Vec<u32>> {
        let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .chars()
            .map(String::from)
            .collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(String::from),
        );
        let miscellaneous: Vec<String> = "♩♪♫♬♭♮♯".chars().map(String::from).collect();
        let mut result = BTreeSet::new();
        for s in [" -", " '"] {
            if let Some(&t) = self.encode(s)?.first() {
                result.insert(t);
            }
        }
        for symbol in symbols.iter().chain(&miscellaneous) {
            let is_misc = miscellaneous.contains(symbol);
            for tokens in [self.encode(symbol)?, self.encode(&format!(" {symbol}"))?] {
                if (tokens.len() == 1 || is_misc)
                    && let Some(&t) = tokens.first()
                {
                    result.insert(t);
                }
            }
        }
        Ok(result.into_iter().collect())
    }

    /// The token list faster-whisper passes as `suppress_tokens` for the user's list
    /// (`-1` expands to [`Self::non_speech_tokens`]), plus the task and start tokens.
    pub fn suppressed_tokens(&self, user: &[i64]) -> Result<Vec<u32>> {
        let mut set: BTreeSet<u32> = user.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
        if user.contains(&-1) {
            set.extend(self.non_speech_tokens()?);
        }
        set.extend([
            self.transcribe,
            self.translate,
            self.sot,
            self.sot_prev,
            self.sot_lm,
            self.no_speech,
        ]);
        Ok(set.into_iter().collect())
    }
}
