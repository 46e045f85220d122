//! Training OneLLM's alignment parts (the modality stems and the Universal Projection
//! Module) with the universal encoder and the LLM frozen, as the paper's progressive
//! alignment and instruction tuning do: next-token loss on captions or answers that
//! follow `[BOS, start tag, Q modality tokens, end tag, prompt]`, gradients flowing back
//! through the frozen decoder and the frozen encoder.
//!
//! A micro-batch may mix modalities: each modality's samples go through their stem and the
//! encoder as one batch, then all rows through the LLM together.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::mllm::next_token_loss;
use super::signals::Sample;
use super::steps::Objective;
use crate::modality::universal::{Modality, Signal};
use crate::tasks::onellm::OneLlm;
use crate::{Error, Result};

/// A signal of one modality with its caption and questions.
#[derive(Debug, Clone)]
pub struct ModalSample {
    pub modality: Modality,
    pub sample: Sample,
}

/// One training row: a signal and the tokens before and of the text to learn.
#[derive(Debug, Clone)]
pub struct TextTarget {
    /// Index of the signal in [`OneLlmData::signals`].
    pub signal: usize,
    /// BOS and the prompt (empty for a caption).
    pub prompt: Vec<u32>,
    /// The caption or answer, then EOS.
    pub target: Vec<u32>,
}

/// Signals and the rows that learn from them.
#[derive(Debug, Clone, Default)]
pub struct OneLlmData {
    pub signals: Vec<ModalSample>,
    pub rows: Vec<TextTarget>,
}

/// The signals of `rows` of one modality as one batch.
fn batch_signal(m: Modality, samples: &[&Sample]) -> Result<Signal> {
    let mut shape = vec![samples.len()];
    shape.extend(&samples[0].shape);
    let mut data = Vec::with_capacity(shape.iter().product());
    for s in samples {
        if s.shape != samples[0].shape {
            return Err(Error::InvalidInput(format!(
                "{} inputs of shapes {:?} and {:?} in one batch",
                m.name(),
                samples[0].shape,
                s.shape
            )));
        }
        data.extend(&s.data);
    }
    Ok(Signal {
        modality: m,
        data,
        shape,
    })
}

/// The mean next-token loss of `rows` of `data` (one micro-batch), differentiable in the
/// stems and the UPM.
pub fn batch_loss(model: &OneLlm, data: &OneLlmData, rows: &[usize]) -> Result<Tensor> {
    let mut by_modality: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        let row = data
            .rows
            .get(r)
            .ok_or_else(|| Error::InvalidInput(format!("no training row {r}")))?;
        let m = data.signals[row.signal].modality;
        let key = Modality::ALL.iter().position(|x| *x == m).unwrap_or(0);
        by_modality.entry(key).or_default().push(r);
    }
    let mut sequences = Vec::with_capacity(rows.len());
    let mut picks = Vec::new();
    let mut labels = Vec::new();
    for (key, group) in by_modality {
        let m = Modality::ALL[key];
        let samples: Vec<&Sample> = group
            .iter()
            .map(|&r| &data.signals[data.rows[r].signal].sample)
            .collect();
        let modal = model.project(m, &model.encode(&batch_signal(m, &samples)?)?)?;
        for (i, &r) in group.iter().enumerate() {
            let row = &data.rows[r];
            let tokens: Vec<u32> = row.prompt.iter().chain(&row.target).copied().collect();
            let sequence = model.sequence(m, &modal.get(i)?, &tokens)?;
            // The tokens after BOS end the sequence; target k sits at `first + k` and is
            // predicted from the position before it.
            let text_start = sequence.dim(0)? - (tokens.len() - 1);
            let first = text_start + row.prompt.len() - 1;
            for (k, &t) in row.target.iter().enumerate() {
                picks.push((sequences.len(), first + k - 1));
                labels.push(t);
            }
            sequences.push(sequence);
        }
    }
    next_token_loss(model.llm(), &sequences, &picks, &labels)
}

/// A OneLLM run's objective: training rows, and held-out rows whose loss is tracked.
pub struct OneLlmObjective<'a> {
    pub model: &'a OneLlm,
    pub train: &'a OneLlmData,
    pub held_out: &'a OneLlmData,
    pub batch_size: usize,
}

impl Objective for OneLlmObjective<'_> {
    fn loss(&mut self, batch: &[usize]) -> Result<Tensor> {
        batch_loss(self.model, self.train, batch)
    }

    fn held_out_loss(&mut self) -> Result<Option<f32>> {
        let n = self.held_out.rows.len();
        if n == 0 {
            return Ok(None);
        }
        let mut total = 0f32;
        let ids: Vec<usize> = (0..n).collect();
        for chunk in ids.chunks(self.batch_size.max(1)) {
            let loss = batch_loss(self.model, self.held_out, chunk)?.detach();
            total += loss.to_scalar::<f32>()? * chunk.len() as f32;
        }
        Ok(Some(total / n as f32))
    }
}
