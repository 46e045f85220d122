//! Kokoro voices: one style pack per voice (510 rows of 256 floats, a row per utterance
//! length), read from an `.npz`, and blends of them.

use std::path::Path;
use std::sync::Arc;

use crate::formats::npy::read_npz;
use crate::{Error, Result};

/// Width of one style vector.
pub const STYLE_DIM: usize = 256;
/// Rows of a style pack: one per phoneme count from 1 to 510.
pub const PACK_ROWS: usize = 510;

/// The voices a model ships, by name.
#[derive(Debug, Clone)]
pub struct VoiceBank {
    voices: Vec<Voice>,
}

/// A voice: a name (or a blend's recipe) and its style pack.
#[derive(Debug, Clone)]
pub struct Voice {
    pub name: String,
    pack: Arc<Vec<f32>>,
}

impl Voice {
    /// The style vector for an utterance of `tokens` phoneme tokens.
    pub fn style(&self, tokens: usize) -> &[f32] {
        let row = tokens.clamp(1, PACK_ROWS) - 1;
        &self.pack[row * STYLE_DIM..(row + 1) * STYLE_DIM]
    }
}

impl VoiceBank {
    /// Reads every `[510, 1, 256]` pack of an `.npz` archive.
    pub fn load(path: &Path) -> Result<VoiceBank> {
        let mut voices = Vec::new();
        for (name, array) in read_npz(path)? {
            if array.data.len() != PACK_ROWS * STYLE_DIM {
                return Err(Error::model_file(
                    path,
                    format!(
                        "voice `{name}` has shape {:?}, expected [510, 1, 256]",
                        array.shape
                    ),
                ));
            }
            voices.push(Voice {
                name,
                pack: Arc::new(array.data),
            });
        }
        if voices.is_empty() {
            return Err(Error::model_file(path, "the archive holds no voices"));
        }
        Ok(VoiceBank { voices })
    }

    /// Voice names, in archive order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.voices.iter().map(|v| v.name.as_str())
    }

    /// A voice by name, or a blend: `a+b` (equal parts) or `a:0.7,b:0.3` (weights,
    /// normalised to sum to one). The style is the weighted average of the packs.
    pub fn resolve(&self, spec: &str) -> Result<Voice> {
        let spec = spec.trim();
        let parts: Vec<&str> = spec
            .split([',', '+'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(Error::InvalidInput("empty voice name".into()));
        }
        let mut weighted = Vec::with_capacity(parts.len());
        for part in &parts {
            let (name, weight) = match part.split_once([':', '*']) {
                Some((name, w)) => {
                    let w: f32 = w
                        .trim()
                        .parse()
                        .ok()
                        .filter(|w: &f32| w.is_finite() && *w >= 0.0)
                        .ok_or_else(|| {
                            Error::InvalidInput(format!(
                                "voice `{spec}`: bad weight `{w}` (a number ≥ 0)"
                            ))
                        })?;
                    (name.trim(), w)
                }
                None => (*part, 1.0),
            };
            let voice = self.voices.iter().find(|v| v.name == name).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown voice `{name}` (available: {})",
                    self.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            weighted.push((voice, weight));
        }
        if let [(voice, _)] = weighted.as_slice() {
            return Ok((*voice).clone());
        }
        let total: f32 = weighted.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "voice `{spec}`: the weights sum to zero"
            )));
        }
        let mut pack = vec![0.0f32; PACK_ROWS * STYLE_DIM];
        for (voice, weight) in &weighted {
            for (out, v) in pack.iter_mut().zip(voice.pack.iter()) {
                *out += v * weight / total;
            }
        }
        Ok(Voice {
            name: spec.to_string(),
            pack: Arc::new(pack),
        })
    }
}

/// OpenAI's voice names and the voice each one speaks with here (as compatible servers
/// map them): the lighter voices to the female ones, the deeper ones to `jm_kumo`.
pub const OPENAI_VOICES: &[(&str, &str)] = &[
    ("alloy", "jf_alpha"),
    ("ash", "jm_kumo"),
    ("ballad", "jm_kumo"),
    ("cedar", "jm_kumo"),
    ("coral", "jf_gongitsune"),
    ("echo", "jm_kumo"),
    ("fable", "jf_nezumi"),
    ("marin", "jf_tebukuro"),
    ("nova", "jf_tebukuro"),
    ("onyx", "jm_kumo"),
    ("sage", "jf_alpha"),
    ("shimmer", "jf_gongitsune"),
    ("verse", "jm_kumo"),
];

/// The voice an OpenAI voice name stands for, or the name itself.
pub fn map_openai_voice(name: &str) -> &str {
    OPENAI_VOICES
        .iter()
        .find(|(openai, _)| openai.eq_ignore_ascii_case(name))
        .map_or(name, |(_, ours)| ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank() -> VoiceBank {
        let voice = |name: &str, value: f32| Voice {
            name: name.into(),
            pack: Arc::new(
                (0..PACK_ROWS * STYLE_DIM)
                    .map(|i| value + (i / STYLE_DIM) as f32)
                    .collect(),
            ),
        };
        VoiceBank {
            voices: vec![voice("a", 0.0), voice("b", 1.0)],
        }
    }

    #[test]
    fn style_rows_follow_the_token_count() {
        let a = bank().resolve("a").unwrap();
        assert_eq!(a.style(1)[0], 0.0);
        assert_eq!(a.style(10)[0], 9.0);
        assert_eq!(a.style(5000)[0], 509.0);
    }

    #[test]
    fn blends_average_the_packs() {
        let bank = bank();
        assert_eq!(bank.resolve("a+b").unwrap().style(1)[0], 0.5);
        let blend = bank.resolve("a:3, b:1").unwrap();
        assert!((blend.style(1)[0] - 0.25).abs() < 1e-6);
        assert_eq!(blend.name, "a:3, b:1");
    }

    #[test]
    fn bad_voices_are_named() {
        let bank = bank();
        let err = bank.resolve("zed").unwrap_err().to_string();
        assert!(
            err.contains("unknown voice `zed`") && err.contains("a, b"),
            "{err}"
        );
        assert!(
            bank.resolve("a:x")
                .unwrap_err()
                .to_string()
                .contains("bad weight")
        );
        assert!(
            bank.resolve("a:0,b:0")
                .unwrap_err()
                .to_string()
                .contains("sum to zero")
        );
        assert!(bank.resolve(" ").is_err());
    }
}
