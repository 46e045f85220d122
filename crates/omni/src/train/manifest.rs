//! Conversation datasets in LLaVA's JSONL form, one record per line:
//!
//! ```json
//! {"id": "0001", "image": "images/0001.png",
//!  "conversations": [{"from": "human", "value": "<image>\nWhat colour is the circle?"},
//!                    {"from": "gpt", "value": "red"}]}
//! ```
//!
//! `<image>` (or `<audio>` with an `"audio"` path) marks where the media's embeddings go;
//! paths are relative to the manifest's folder. An optional `"kind"` groups records for
//! per-kind scores. Users bring their own data in this form; `omni data synth` writes it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use crate::tasks::interleave::{AUDIO_TOKEN, IMAGE_TOKEN};

/// One turn: `from` is `human` (or `user`) or `gpt` (or `assistant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

impl Turn {
    /// Whether the model speaks this turn (it is what the loss is computed on).
    pub fn is_assistant(&self) -> bool {
        matches!(self.from.as_str(), "gpt" | "assistant")
    }
}

/// One training or evaluation example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    pub conversations: Vec<Turn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Record {
    /// A one-question record.
    pub fn single(id: String, image: String, question: &str, answer: &str, kind: &str) -> Self {
        Record {
            id,
            image: Some(image),
            audio: None,
            conversations: vec![
                Turn {
                    from: "human".into(),
                    value: format!("{IMAGE_TOKEN}\n{question}"),
                },
                Turn {
                    from: "gpt".into(),
                    value: answer.into(),
                },
            ],
            kind: Some(kind.into()),
        }
    }

    /// Checks that placeholders and media agree and that turns alternate human → model.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (token, media, what) in [
            (IMAGE_TOKEN, &self.image, "image"),
            (AUDIO_TOKEN, &self.audio, "audio"),
        ] {
            let uses: usize = self
                .conversations
                .iter()
                .map(|t| t.value.matches(token).count())
                .sum();
            match (uses, media) {
                (0, Some(_)) => return Err(format!("has an {what} but no {token} placeholder")),
                (n, None) if n > 0 => {
                    return Err(format!("uses {token} but names no {what} file"));
                }
                (n, Some(_)) if n > 1 => {
                    return Err(format!("uses {token} {n} times for one {what}"));
                }
                _ => {}
            }
        }
        if self.conversations.is_empty() {
            return Err("has no conversation".into());
        }
        for (i, turn) in self.conversations.iter().enumerate() {
            let want_model = i % 2 == 1;
            if turn.is_assistant() != want_model
                || !matches!(turn.from.as_str(), "human" | "user" | "gpt" | "assistant")
            {
                return Err(format!(
                    "turn {} is from `{}`: turns must alternate human, gpt, human, …",
                    i + 1,
                    turn.from
                ));
            }
        }
        if !self.conversations.iter().any(Turn::is_assistant) {
            return Err("has no model turn to learn from".into());
        }
        Ok(())
    }
}

/// Records read from disk, their media paths resolved.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub records: Vec<Record>,
}

impl Manifest {
    /// Reads and validates JSONL manifests, one after the other.
    pub fn read_all(paths: &[PathBuf]) -> Result<Manifest> {
        let mut records = Vec::new();
        for path in paths {
            records.extend(Self::read(path)?.records);
        }
        Ok(Manifest { records })
    }

    /// Reads and validates a JSONL manifest; errors name the file and line. Relative
    /// media paths become paths from the manifest's folder.
    pub fn read(path: &Path) -> Result<Manifest> {
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut records = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| {
                Error::InvalidInput(format!("{} line {}: {reason}", path.display(), i + 1))
            };
            let mut record: Record =
                serde_json::from_str(&line).map_err(|e| bad(format!("not a record: {e}")))?;
            record
                .validate()
                .map_err(|e| bad(format!("record `{}` {e}", record.id)))?;
            for media in [&mut record.image, &mut record.audio].into_iter().flatten() {
                *media = root.join(&*media).to_string_lossy().into_owned();
            }
            records.push(record);
        }
        if records.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{} holds no records",
                path.display()
            )));
        }
        Ok(Manifest { records })
    }
}

/// Writes `records` as JSONL to `path` (atomically: a temp file renamed into place).
pub fn write_manifest(path: &Path, records: &[Record]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
    for record in records {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::InvalidInput(format!("record `{}`: {e}", record.id)))?;
        writeln!(out, "{line}").map_err(|e| Error::io(&tmp, e))?;
    }
    out.flush().map_err(|e| Error::io(&tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn placeholders_and_media_must_agree() {
        let ok = record(
            r#"{"id":"a","image":"x.png","conversations":[{"from":"human","value":"<image>\nWhat?"},{"from":"gpt","value":"red"}]}"#,
        );
        assert_eq!(ok.validate(), Ok(()));
        let no_media = record(
            r#"{"id":"b","conversations":[{"from":"human","value":"<image> What?"},{"from":"gpt","value":"red"}]}"#,
        );
        assert!(no_media.validate().unwrap_err().contains("names no image"));
        let no_placeholder = record(
            r#"{"id":"c","image":"x.png","conversations":[{"from":"human","value":"What?"},{"from":"gpt","value":"red"}]}"#,
        );
        assert!(
            no_placeholder
                .validate()
                .unwrap_err()
                .contains("no <image> placeholder")
        );
        let twice = record(
            r#"{"id":"d","image":"x.png","conversations":[{"from":"human","value":"<image><image>"},{"from":"gpt","value":"red"}]}"#,
        );
        assert!(twice.validate().unwrap_err().contains("2 times"));
        let order = record(
            r#"{"id":"e","conversations":[{"from":"gpt","value":"hi"},{"from":"human","value":"x"}]}"#,
        );
        assert!(order.validate().unwrap_err().contains("alternate"));
    }

    #[test]
    fn manifests_round_trip_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("omni-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.jsonl");
        let records = vec![Record::single(
            "1".into(),
            "images/1.png".into(),
            "What colour?",
            "red",
            "colour",
        )];
        write_manifest(&path, &records).unwrap();
        let read = Manifest::read(&path).unwrap();
        let image = dir.join("images/1.png").to_string_lossy().into_owned();
        assert_eq!(read.records[0].image.as_deref(), Some(image.as_str()));
        assert_eq!(read.records[0].conversations, records[0].conversations);

        std::fs::write(&path, "{\"id\":\"1\"}\n").unwrap();
        let err = Manifest::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("conversations"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
