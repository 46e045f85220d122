//! Text embeddings: load a sentence embedder by catalogue name or path, embed texts in
//! batches (each batch is padded to its longest text, so batches of similar lengths are
//! cheapest).

use crate::encoder::TextEmbedder;
use crate::encoder::bert::BertEmbedder;
use crate::{Error, Result};

/// The default text embedding model (catalogue name).
pub const DEFAULT_TEXT_MODEL: &str = "all-minilm-l6-v2";

/// Loads a sentence-transformers BERT embedder: a catalogue name (fetched if needed) or a
/// model directory.
pub fn load_text_embedder(name_or_path: &str) -> Result<BertEmbedder> {
    let dir = crate::models::resolve(name_or_path)?;
    BertEmbedder::load(&dir)
}

/// Embeds `texts` in batches of `batch_size`; one vector per text, in order.
pub fn embed_texts(
    model: &dyn TextEmbedder,
    texts: &[&str],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    if batch_size == 0 {
        return Err(Error::InvalidInput("batch size must be at least 1".into()));
    }
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size) {
        out.extend(model.embed(chunk)?);
    }
    Ok(out)
}
