//! Grapheme-to-phoneme for Kokoro: espeak-ng's IPA (American English), turned into
//! Kokoro's phoneme alphabet exactly as Kokoro's American pipeline does for espeak output
//! (phonemizer with punctuation preserved, then misaki's `EspeakFallback(british=False)`).
//!
//! ```text
//! text ─► split at punctuation runs ─► espeak-ng per chunk ─► put the punctuation back
//!      ─► misaki's replacements (a^ɪ→I, d^ʒ→ʤ, ɚ→əɹ, r→ɹ, ː dropped, ɾ→T, …)
//! ```
//!
//! The fixtures in `fixtures/kokoro/phonemes.json` (made by
//! `scripts/make_kokoro_fixtures.py` with phonemizer + misaki on the same espeak-ng) pin it.

use std::process::Command;

use crate::{Error, Result};

/// Environment variable naming the espeak-ng program (default: `espeak-ng` on `PATH`).
pub const ESPEAK_ENV: &str = "OMNI_ESPEAK";

/// phonemizer's punctuation marks: the text is cut at runs of these (and whitespace).
const MARKS: &str = ";:,.!?¡¿—…\"«»“”(){}[]";

/// Phonemizes English text by running espeak-ng.
#[derive(Debug, Clone)]
pub struct G2p {
    program: String,
}

impl G2p {
    /// Finds espeak-ng (`$OMNI_ESPEAK` or `espeak-ng`), failing with an install hint.
    pub fn new() -> Result<G2p> {
        let program = std::env::var(ESPEAK_ENV).unwrap_or_else(|_| "espeak-ng".to_string());
        let g2p = G2p { program };
        g2p.espeak("test")?;
        Ok(g2p)
    }

    /// Kokoro phonemes of already-normalised `text` (one line).
    pub fn phonemize(&self, text: &str) -> Result<String> {
        let text = text.replace(['\n', '\r'], " ");
        let split = split_punctuation(&text);
        let mut lines = Vec::with_capacity(split.chunks.len());
        for chunk in &split.chunks {
            lines.push(espeak_line(&self.espeak(chunk)?));
        }
        Ok(espeak_to_kokoro(&restore_punctuation(lines, split.marks)))
    }

    /// espeak-ng's output for one chunk. In SSML mode with a trailing `<break/>` the clause
    /// has no tonic, so the CLI does not promote a syllable to primary stress ("the" →
    /// ðˈə) as it otherwise would; this matches the library call phonemizer makes.
    fn espeak(&self, chunk: &str) -> Result<String> {
        let ssml = format!(
            "{}<break/>",
            chunk
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        );
        let missing = |reason: String| Error::MissingProgram {
            program: self.program.clone(),
            reason,
            hint: format!(
                "install it (Debian/Ubuntu: `apt install espeak-ng`) or set {ESPEAK_ENV} to its path"
            ),
        };
        let output = Command::new(&self.program)
            .args(["-q", "-m", "--ipa", "--tie=^", "-v", "en-us", "--", &ssml])
            .output()
            .map_err(|e| missing(e.to_string()))?;
        if !output.status.success() {
            return Err(missing(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn is_space(c: char) -> bool {
    // Python's str.isspace(), which phonemizer's regexes use.
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_mark(c: char) -> bool {
    MARKS.contains(c)
}

/// Where a punctuation run sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkPos {
    /// At the start of the text: glued before the first chunk.
    Begin,
    /// Between two chunks: joins them.
    Inner,
    /// At the end: appended after the last chunk.
    End,
    /// The whole text is punctuation.
    Alone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    text: String,
    pos: MarkPos,
}

/// The text cut at punctuation: the chunks to phonemize and the marks between them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Split {
    chunks: Vec<String>,
    marks: Vec<Mark>,
}

/// A mark is a maximal run of whitespace and punctuation holding at least one mark
/// (phonemizer's `Punctuation.preserve`).
fn split_punctuation(text: &str) -> Split {
    let chars: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !(is_space(chars[i]) || is_mark(chars[i])) {
            i += 1;
            continue;
        }
        let start = i;
        let mut has_mark = false;
        while i < chars.len() && (is_space(chars[i]) || is_mark(chars[i])) {
            has_mark |= is_mark(chars[i]);
            i += 1;
        }
        if has_mark {
            spans.push((start, i));
        }
    }
    let sub = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    if spans.is_empty() {
        let chunks = if text.is_empty() {
            vec![]
        } else {
            vec![text.to_string()]
        };
        return Split {
            chunks,
            marks: vec![],
        };
    }
    if spans == [(0, chars.len())] {
        let marks = vec![Mark {
            text: text.to_string(),
            pos: MarkPos::Alone,
        }];
        return Split {
            chunks: vec![],
            marks,
        };
    }
    let last = spans.len() - 1;
    let (mut chunks, mut marks, mut prev_end) = (Vec::new(), Vec::new(), 0);
    for (k, &(a, b)) in spans.iter().enumerate() {
        let pos = match (k, a, b) {
            (0, 0, _) => MarkPos::Begin,
            (k, _, b) if k == last && b == chars.len() => MarkPos::End,
            _ => MarkPos::Inner,
        };
        marks.push(Mark {
            text: sub(a, b),
            pos,
        });
        chunks.push(sub(prev_end, a));
        prev_end = b;
    }
    chunks.push(sub(prev_end, chars.len()));
    chunks.retain(|c| !c.is_empty());
    Split { chunks, marks }
}

/// One chunk's espeak output as phonemizer's line: clauses joined by a space, runs of
/// `_` collapsed, every word followed by one space ("" when espeak said nothing).
fn espeak_line(stdout: &str) -> String {
    let joined = stdout
        .split('\n')
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = joined.trim_matches(is_space).replace("  ", " ");
    let mut collapsed = String::with_capacity(line.len());
    for c in line.chars() {
        if !(c == '_' && collapsed.ends_with('_')) {
            collapsed.push(c);
        }
    }
    let collapsed = collapsed.replace("_ ", " ");
    if collapsed.is_empty() {
        return String::new();
    }
    collapsed
        .split(' ')
        .map(|word| format!("{} ", word.trim_matches(is_space)))
        .collect()
}

/// Puts the marks back between the chunks' lines (phonemizer's `Punctuation.restore`
/// for one line of text).
fn restore_punctuation(lines: Vec<String>, marks: Vec<Mark>) -> String {
    let mut text: std::collections::VecDeque<String> = lines.into();
    let mut out = String::new();
    for mark in marks {
        let m = mark.text;
        let single = text.len() == 1;
        let Some(first) = text.front_mut() else {
            out.push_str(&m);
            continue;
        };
        if first.ends_with(' ') {
            first.pop();
        }
        let sep = if m.ends_with(' ') { "" } else { " " };
        match mark.pos {
            MarkPos::Begin => *first = format!("{m}{first}"),
            MarkPos::End | MarkPos::Alone => {
                let t = text.pop_front().unwrap_or_default();
                out.push_str(&format!("{t}{m}{sep}"));
                // Only the first line is kept: what follows an end mark is dropped.
                return out;
            }
            MarkPos::Inner if single => first.push_str(&m),
            MarkPos::Inner => {
                let joined = format!("{}{m}", text.pop_front().unwrap_or_default());
                if let Some(next) = text.front_mut() {
                    *next = format!("{joined}{next}");
                }
            }
        }
    }
    if let Some(mut line) = text.pop_front() {
        if !line.ends_with(' ') {
            line.push(' ');
        }
        out.push_str(&line);
    }
    out
}

/// misaki's `EspeakFallback` replacements, in its order.
const REPLACEMENTS: &[(&str, &str)] = &[
    ("ʔˌn\u{329}", "ʔn"),
    ("ʔn\u{329}", "ʔn"),
    ("a^ɪ", "I"),
    ("a^ʊ", "W"),
    ("d^ʒ", "ʤ"),
    ("e^ɪ", "A"),
    ("t^ʃ", "ʧ"),
    ("ɔ^ɪ", "Y"),
    ("ə^l", "ᵊl"),
    ("ʲo", "jo"),
    ("ʲə", "jə"),
    ("e", "A"),
    ("ʲ", ""),
    ("ɚ", "əɹ"),
    ("r", "ɹ"),
    ("x", "k"),
    ("ç", "k"),
    ("ɐ", "ə"),
    ("ɬ", "l"),
    ("\u{303}", ""),
];

/// American-English Kokoro phonemes of a punctuation-restored espeak line.
fn espeak_to_kokoro(line: &str) -> String {
    let mut ps = line.trim_matches(is_space).to_string();
    for (from, to) in REPLACEMENTS {
        ps = ps.replace(from, to);
    }
    // A syllabic consonant X̩ becomes ᵊX.
    let chars: Vec<char> = ps.chars().collect();
    let mut out = String::with_capacity(ps.len());
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && !is_space(chars[i]) && chars[i + 1] == '\u{329}' {
            out.push('ᵊ');
            out.push(chars[i]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out.replace('\u{329}', "")
        .replace("o^ʊ", "O")
        .replace("ɜːɹ", "ɜɹ")
        .replace("ɜː", "ɜɹ")
        .replace("ɪə", "iə")
        .replace('ː', "")
        .replace('o', "ɔ") // espeak-ng < 1.52 writes o where Kokoro expects ɔ
        .replace('ɾ', "T") // Kokoro v1.0 spells the flap T and the glottal stop t
        .replace('ʔ', "t")
        .replace('^', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(t: &str, pos: MarkPos) -> Mark {
        Mark {
            text: t.to_string(),
            pos,
        }
    }

    #[test]
    fn splits_at_punctuation_runs() {
        let s = split_punctuation("\"Well,\" she said, \"it's fine.\"");
        assert_eq!(s.chunks, ["Well", "she said", "it's fine"]);
        assert_eq!(
            s.marks,
            [
                mark("\"", MarkPos::Begin),
                mark(",\" ", MarkPos::Inner),
                mark(", \"", MarkPos::Inner),
                mark(".\"", MarkPos::End)
            ]
        );
        assert_eq!(
            split_punctuation("...").marks,
            [mark("...", MarkPos::Alone)]
        );
        assert_eq!(split_punctuation("no marks here").chunks, ["no marks here"]);
    }

    #[test]
    fn restores_punctuation_with_phonemizer_spacing() {
        let s = split_punctuation("\"Well,\" she said.");
        let lines = vec!["wˈɛl ".to_string(), "ʃiː sˈɛd ".to_string()];
        assert_eq!(restore_punctuation(lines, s.marks), "\"wˈɛl,\" ʃiː sˈɛd. ");
    }

    #[test]
    fn maps_espeak_symbols_to_kokoro() {
        assert_eq!(espeak_to_kokoro("ðə bˈʌʔn̩ ɪz bˈɛɾɚ "), "ðə bˈʌtn ɪz bˈɛTəɹ");
        assert_eq!(
            espeak_to_kokoro("bˈɑːɾə^l fˈoː^ɹ hˈo^ʊm "),
            "bˈɑTᵊl fˈɔɹ hˈOm"
        );
        assert_eq!(espeak_to_kokoro("wˈʌzn̩t "), "wˈʌzᵊnt");
    }

    #[test]
    fn espeak_output_becomes_one_line() {
        assert_eq!(espeak_line("həlˈo^ʊ wˈɜːld\n\n"), "həlˈo^ʊ wˈɜːld ");
        assert_eq!(espeak_line("\n"), "");
    }
}
