//! Text embeddings: load a sentence embedder by catalogue name or path, embed texts in
//! batches. Each batch is padded to its longest text, so texts are batched longest first
//! (as sentence-transformers does) and the results put back in order.

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

/// Embeds `texts` in batches of `batch_size`, longest first; one vector per text, in the
/// order given.
pub fn embed_texts(
    model: &dyn TextEmbedder,
    texts: &[&str],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    if batch_size == 0 {
        return Err(Error::InvalidInput("batch size must be at least 1".into()));
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
    let mut out = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(batch_size) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        for (&i, row) in chunk.iter().zip(model.embed(&batch)?) {
            out[i] = row;
        }
    }
    Ok(out)
}
