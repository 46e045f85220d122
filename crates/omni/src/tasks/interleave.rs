//! Interleaved prompts: a conversation whose turns hold text and `<image>` / `<audio>`
//! placeholders, rendered with the LLM's chat template and cut into token runs and media
//! slots. The caller fills each slot with the media's projected embeddings and runs the
//! LLM from embeddings.
//!
//! For training, the model's own turns are marked as targets: the loss is computed on
//! them only (LLaVA's recipe).

use crate::llm::{Llm, Message};
use crate::{Error, Result};

/// The placeholder of an image in a turn.
pub const IMAGE_TOKEN: &str = "<image>";
/// The placeholder of an audio clip in a turn.
pub const AUDIO_TOKEN: &str = "<audio>";

/// The kind of media a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
}

impl MediaKind {
    /// Its placeholder in message text.
    pub fn placeholder(self) -> &'static str {
        match self {
            MediaKind::Image => IMAGE_TOKEN,
            MediaKind::Audio => AUDIO_TOKEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio clip",
        }
    }
}

/// A run of the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Tokens; `target` when the model should learn to produce them.
    Text { tokens: Vec<u32>, target: bool },
    /// The `index`-th media item of the conversation (in placeholder order).
    Media { kind: MediaKind, index: usize },
}

/// A rendered, tokenized conversation with media slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interleaved {
    pub segments: Vec<Segment>,
}

impl Interleaved {
    /// Renders `messages` with `llm`'s chat template. `media` lists the kinds of the
    /// conversation's media in order; the placeholders in the text must match it one to
    /// one. With `for_training`, assistant turns become targets; otherwise the prompt
    /// ends with the generation prompt.
    pub fn build(
        llm: &Llm,
        messages: &[Message],
        media: &[MediaKind],
        for_training: bool,
    ) -> Result<Interleaved> {
        check_placeholders(messages, media)?;
        let mut pieces: Vec<(String, bool)> = Vec::new();
        if for_training {
            // Render turn by turn: the text an assistant turn adds is a target.
            let mut done = String::new();
            for (i, m) in messages.iter().enumerate() {
                if m.role != "assistant" {
                    continue;
                }
                let before = llm.apply_chat_template(&messages[..i], true)?;
                let after = llm.apply_chat_template(&messages[..=i], false)?;
                let (Some(context), Some(reply)) = (
                    before.strip_prefix(done.as_str()),
                    after.strip_prefix(before.as_str()),
                ) else {
                    return Err(Error::InvalidInput(
                        "the chat template does not render conversations turn by turn; it cannot be trained with".into(),
                    ));
                };
                pieces.push((context.to_string(), false));
                pieces.push((reply.to_string(), true));
                done = after;
            }
            if pieces.is_empty() {
                return Err(Error::InvalidInput(
                    "a training conversation needs an assistant turn".into(),
                ));
            }
        } else {
            pieces.push((llm.apply_chat_template(messages, true)?, false));
        }
        let mut segments = Vec::new();
        let mut next_media = 0;
        for (text, target) in &pieces {
            let mut rest = text.as_str();
            while let Some((at, kind)) = next_placeholder(rest) {
                push_text(llm, &mut segments, &rest[..at], *target)?;
                segments.push(Segment::Media {
                    kind,
                    index: next_media,
                });
                next_media += 1;
                rest = &rest[at + kind.placeholder().len()..];
            }
            push_text(llm, &mut segments, rest, *target)?;
        }
        Ok(Interleaved { segments })
    }

    /// Positions the prompt takes when each media item takes `media_len(kind, index)`.
    pub fn len(&self, media_len: impl Fn(MediaKind, usize) -> usize) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Text { tokens, .. } => tokens.len(),
                Segment::Media { kind, index } => media_len(*kind, *index),
            })
            .sum()
    }

    /// Whether the prompt has no positions at all.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

fn push_text(llm: &Llm, segments: &mut Vec<Segment>, text: &str, target: bool) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    // BOS (when the model wants one) before the first run only.
    let tokens = llm.tokenizer.encode(text, segments.is_empty(), true)?;
    segments.push(Segment::Text { tokens, target });
    Ok(())
}

/// The first placeholder in `text`: its byte offset and kind.
fn next_placeholder(text: &str) -> Option<(usize, MediaKind)> {
    [MediaKind::Image, MediaKind::Audio]
        .into_iter()
        .filter_map(|k| text.find(k.placeholder()).map(|at| (at, k)))
        .min_by_key(|&(at, _)| at)
}

/// The placeholders of `messages`, in order, must be exactly `media`.
fn check_placeholders(messages: &[Message], media: &[MediaKind]) -> Result<()> {
    let mut found = Vec::new();
    for m in messages {
        let mut rest = m.content.as_str();
        while let Some((at, kind)) = next_placeholder(rest) {
            if m.role == "assistant" {
                return Err(Error::InvalidInput(format!(
                    "an assistant turn holds a {} placeholder; media can only come from the user",
                    kind.placeholder()
                )));
            }
            found.push(kind);
            rest = &rest[at + kind.placeholder().len()..];
        }
    }
    if found == media {
        return Ok(());
    }
    for kind in [MediaKind::Image, MediaKind::Audio] {
        let placed = found.iter().filter(|&&k| k == kind).count();
        let given = media.iter().filter(|&&k| k == kind).count();
        if placed != given {
            return Err(Error::InvalidInput(format!(
                "the conversation has {placed} {} placeholder(s) but {given} {}(s) were given",
                kind.placeholder(),
                kind.name()
            )));
        }
    }
    Err(Error::InvalidInput(format!(
        "the media ({media:?}) are not in the order of their placeholders ({found:?})"
    )))
}
