//! Kokoro's text-to-speech pipeline: normalise → split into sentences → G2P → vocabulary
//! ids (≤ 510 per utterance) → acoustic model with the voice's style → 24 kHz audio, one
//! sentence at a time so that long texts stream in bounded memory.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use super::AcousticModel;
use super::g2p::G2p;
use super::normalize::normalize;
use super::onnx::KokoroOnnx;
use super::voices::{Voice, VoiceBank};
use crate::{Error, Result};

/// The most phoneme tokens one utterance may hold (the style packs have one row per count).
pub const MAX_TOKENS: usize = 510;
/// The voice used when none is asked for.
pub const DEFAULT_VOICE: &str = "jm_kumo";
/// File names inside the model directory.
const MODEL_FILE: &str = "kokoro-v1.0.int8.onnx";
const VOCAB_FILE: &str = "vocab.json";
const VOICES_FILE: &str = "voices_ja.npz";
const RUNTIME_FILE: &str = "libonnxruntime.so.1.32.0";

/// How to speak: which voice (a name or a blend, see [`VoiceBank::resolve`]) and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechOptions {
    pub voice: String,
    /// 1.0 is the voice's natural pace; 0.25 to 4.0 allowed.
    pub speed: f32,
}

impl Default for SpeechOptions {
    fn default() -> Self {
        SpeechOptions {
            voice: DEFAULT_VOICE.to_string(),
            speed: 1.0,
        }
    }
}

/// One synthesised piece of a longer text.
#[derive(Debug, Clone)]
pub struct SpeechChunk {
    /// The (normalised) text this audio speaks.
    pub text: String,
    /// Its Kokoro phonemes.
    pub phonemes: String,
    /// Mono samples at the model's rate.
    pub samples: Vec<f32>,
    /// Bytes of the normalised text spoken so far, and in all (for progress bars).
    pub done: usize,
    pub total: usize,
}

/// Kokoro-82M: G2P, vocabulary, voices and an acoustic model.
pub struct Kokoro {
    model: Box<dyn AcousticModel>,
    vocab: HashMap<char, i64>,
    voices: VoiceBank,
    g2p: G2p,
}

impl Kokoro {
    /// Loads the model directory of `omni models pull kokoro-82m`, running ONNX Runtime on
    /// `threads` threads. Fails early when espeak-ng is missing.
    pub fn load(dir: &Path, threads: usize) -> Result<Kokoro> {
        let g2p = G2p::new()?;
        let model = KokoroOnnx::load(&dir.join(MODEL_FILE), &dir.join(RUNTIME_FILE), threads)?;
        Ok(Kokoro {
            model: Box::new(model),
            vocab: load_vocab(&dir.join(VOCAB_FILE))?,
            voices: load_voices(dir)?,
            g2p,
        })
    }

    /// The voices of the model directory, without loading the model.
    pub fn voices_in(dir: &Path) -> Result<VoiceBank> {
        load_voices(dir)
    }

    /// The voices this model speaks with.
    pub fn voices(&self) -> &VoiceBank {
        &self.voices
    }

    /// Output sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.model.sample_rate()
    }

    /// The utterances `text` is spoken as: each chunk's normalised text and its Kokoro
    /// phonemes, as [`Kokoro::stream`] would synthesise them.
    pub fn phonemize(&self, text: &str) -> Result<Vec<(String, String)>> {
        let mut chunks = Vec::new();
        for (sentence, _) in split_sentences(&normalize(text)) {
            for (text, phonemes, _) in self.fit(&sentence)? {
                chunks.push((text, phonemes));
            }
        }
        Ok(chunks)
    }

    /// Vocabulary ids of a phoneme string; symbols outside the vocabulary are dropped, as
    /// Kokoro's own pipeline does.
    pub fn tokenize(&self, phonemes: &str) -> Vec<i64> {
        phonemes
            .chars()
            .filter_map(|c| self.vocab.get(&c).copied())
            .collect()
    }

    /// Audio for phoneme ids (without the boundary zeros) in `voice` at `speed`.
    pub fn synthesize_ids(&self, ids: &[i64], voice: &Voice, speed: f32) -> Result<Vec<f32>> {
        if ids.is_empty() || ids.len() > MAX_TOKENS {
            return Err(Error::InvalidInput(format!(
                "an utterance needs 1 to {MAX_TOKENS} phoneme tokens, got {}",
                ids.len()
            )));
        }
        self.model.synthesize(ids, voice.style(ids.len()), speed)
    }

    /// Speaks `text` sentence by sentence: each item of the stream is one chunk's audio.
    /// Errors on input with nothing to speak, an unknown voice or a speed out of range.
    pub fn stream(&self, text: &str, opts: &SpeechOptions) -> Result<SpeechStream<'_>> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("the text to speak is empty".into()));
        }
        if !(0.25..=4.0).contains(&opts.speed) {
            return Err(Error::InvalidInput(format!(
                "speed {} is out of range (0.25 to 4.0)",
                opts.speed
            )));
        }
        let voice = self.voices.resolve(&opts.voice)?;
        let normalized = normalize(text);
        if !normalized.chars().any(char::is_alphanumeric) {
            return Err(Error::InvalidInput(
                "the text has nothing to speak (no words once symbols and emoji are removed)"
                    .into(),
            ));
        }
        Ok(SpeechStream {
            kokoro: self,
            voice,
            speed: opts.speed,
            total: normalized.len(),
            sentences: split_sentences(&normalized),
            pending: VecDeque::new(),
            done: 0,
        })
    }

    /// Phonemizes `text` and splits it until every piece fits in [`MAX_TOKENS`].
    fn fit(&self, text: &str) -> Result<Vec<(String, String, Vec<i64>)>> {
        let phonemes = self.g2p.phonemize(text)?;
        let ids = self.tokenize(&phonemes);
        if ids.len() <= MAX_TOKENS {
            return Ok(vec![(text.to_string(), phonemes, ids)]);
        }
        match split_point(text) {
            Some(at) => {
                let mut pieces = self.fit(text[..at].trim())?;
                pieces.extend(self.fit(text[at..].trim())?);
                Ok(pieces)
            }
            // One "word" longer than an utterance: keep what fits.
            None => Ok(vec![(
                text.to_string(),
                phonemes,
                ids[..MAX_TOKENS].to_vec(),
            )]),
        }
    }
}

/// The audio of a text, chunk by chunk (see [`Kokoro::stream`]).
pub struct SpeechStream<'a> {
    kokoro: &'a Kokoro,
    voice: Voice,
    speed: f32,
    sentences: VecDeque<(String, usize)>,
    pending: VecDeque<(String, String, Vec<i64>)>,
    done: usize,
    total: usize,
}

impl SpeechStream<'_> {
    /// The voice speaking (its name, or the blend's recipe).
    pub fn voice(&self) -> &str {
        &self.voice.name
    }
}

impl Iterator for SpeechStream<'_> {
    type Item = Result<SpeechChunk>;

    fn next(&mut self) -> Option<Result<SpeechChunk>> {
        loop {
            if let Some((text, phonemes, ids)) = self.pending.pop_front() {
                if !phonemes.chars().any(char::is_alphabetic) {
                    continue; // punctuation only: nothing to say
                }
                let samples = match self.kokoro.synthesize_ids(&ids, &self.voice, self.speed) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                return Some(Ok(SpeechChunk {
                    text,
                    phonemes,
                    samples,
                    done: self.done,
                    total: self.total,
                }));
            }
            let (sentence, end) = self.sentences.pop_front()?;
            self.done = end;
            match self.kokoro.fit(&sentence) {
                Ok(pieces) => self.pending.extend(pieces),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Sentences of `text` (split after `.!?…;` followed by a space, and at line breaks), each
/// with the byte offset where it ends.
fn split_sentences(text: &str) -> VecDeque<(String, usize)> {
    let mut sentences = VecDeque::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = c == '\n'
            || (".!?…;".contains(c)
                && next.is_some_and(|n| n.is_whitespace() || "\"”’)".contains(n)));
        if ends {
            // Keep closing quotes and brackets with their sentence.
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if !"\"”’)".contains(n) {
                    break;
                }
                end = j + n.len_utf8();
                chars.next();
            }
            push_sentence(&mut sentences, &text[start..end], end);
            start = end;
        }
    }
    push_sentence(&mut sentences, &text[start..], text.len());
    sentences
}

fn push_sentence(sentences: &mut VecDeque<(String, usize)>, text: &str, end: usize) {
    let text = text.trim();
    if text.chars().any(char::is_alphanumeric) {
        sentences.push_back((text.to_string(), end));
    }
}

/// Where to cut a text too long for one utterance: the clause break (`, ; : —`) nearest
/// the middle, else the space nearest the middle.
fn split_point(text: &str) -> Option<usize> {
    let middle = text.len() / 2;
    let nearest = |pred: &dyn Fn(char) -> bool| {
        text.char_indices()
            .filter(|&(i, c)| i > 0 && pred(c))
            .map(|(i, c)| i + c.len_utf8())
            .filter(|&i| i < text.len())
            .min_by_key(|&i| i.abs_diff(middle))
    };
    nearest(&|c| ",;:—".contains(c)).or_else(|| nearest(&|c| c == ' '))
}

fn load_vocab(path: &Path) -> Result<HashMap<char, i64>> {
    #[derive(serde::Deserialize)]
    struct VocabFile {
        vocab: HashMap<String, i64>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file: VocabFile = serde_json::from_str(&text)
        .map_err(|e| Error::model_file(path, format!("not a Kokoro vocabulary: {e}")))?;
    file.vocab
        .into_iter()
        .map(|(symbol, id)| {
            let mut chars = symbol.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok((c, id)),
                _ => Err(Error::model_file(
                    path,
                    format!("symbol `{symbol}` is not one character"),
                )),
            }
        })
        .collect()
}

fn load_voices(dir: &Path) -> Result<VoiceBank> {
    VoiceBank::load(&dir.join(VOICES_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_after_terminal_punctuation() {
        let s: Vec<String> =
            split_sentences("Hi there. \"Who?\" he asked! Fine…\nNext line; more 3.5 ok")
                .into_iter()
                .map(|(t, _)| t)
                .collect();
        assert_eq!(
            s,
            [
                "Hi there.",
                "\"Who?\"",
                "he asked!",
                "Fine…",
                "Next line;",
                "more 3.5 ok"
            ]
        );
        assert!(split_sentences("... !!!").is_empty());
    }

    #[test]
    fn long_text_splits_at_clauses_then_spaces() {
        let text = "one two three, four five six seven eight";
        assert_eq!(&text[..split_point(text).unwrap()], "one two three,");
        assert_eq!(split_point("alpha beta gamma delta"), Some(11));
        assert_eq!(split_point("unsplittable"), None);
    }
}
