//! Tasks compose the stages into jobs people run: chat, generation, transcription,
//! questions about recordings, speech synthesis,
//! image–text spaces and the aligner that makes one.

pub mod align;
pub mod ask;
pub mod chat;
pub mod classify;
pub mod describe;
pub mod generate;
pub mod idefics3;
pub mod interleave;
pub mod llava;
pub mod mllm;
pub mod mllm_train;
pub mod onellm;
pub mod onellm_data;
pub mod onellm_train;
pub mod search_space;
pub mod speak;
pub mod text_embedding;
pub mod transcribe;

use std::path::Path;

use crate::{Error, Result};

/// Writes a model directory: `fill` writes into a temporary sibling of `dir`, which then
/// replaces `dir`, so a failed or interrupted export never leaves half a model.
pub(crate) fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}
