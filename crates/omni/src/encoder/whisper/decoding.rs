//! Decoding one 30 s window: greedy, sampling and beam search with Whisper's logit rules,
//! mirroring CTranslate2's `WhisperReplica::generate` (`src/models/whisper.cc`) and its
//! `GreedySearch` / `BeamSearch` (`src/decoding.cc`), which faster-whisper drives:
//!
//! - the prompt up to its last task token is run at once, the last token starts the search;
//! - the probability of `<|nospeech|>` is read at `<|startoftranscript|>`;
//! - every step: `suppress_tokens`, then `suppress_blank` at the first step, then the timestamp
//!   rules (`ApplyTimestampRules`: no `<|notimestamps|>`, a timestamp first and not later than
//!   `max_initial_timestamp`, timestamps in pairs and non-decreasing, a timestamp forced when
//!   their total probability beats every text token);
//! - scores are sums of log-probabilities divided by `length ^ length_penalty`.

use candle_core::{D, Device, Tensor};
use rand::RngExt;

use super::decoder::{DecoderState, TextDecoder};
use super::tokenizer::WhisperTokenizer;
use crate::{Error, Result};

/// Value CTranslate2 writes into suppressed logits (`std::numeric_limits<float>::lowest()`).
const DISABLED: f32 = f32::MIN;

/// Options of one window's decoding (CTranslate2's `WhisperOptions`).
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// 1 = greedy (or sampling when `temperature > 0`); more = beam search.
    pub beam_size: usize,
    /// Beam search stops after `round(beam_size · patience)` finished hypotheses.
    pub patience: f32,
    /// Scores are divided by `length ^ length_penalty`.
    pub length_penalty: f32,
    /// 0 picks the best token; above 0 samples from `softmax(log_probs / temperature)`.
    pub temperature: f32,
    /// Independent samples drawn when sampling (`best_of`); the best-scoring one is kept.
    pub num_hypotheses: usize,
    /// Total length of prompt plus generated tokens (448 in faster-whisper).
    pub max_length: usize,
    /// Tokens never generated.
    pub suppress_tokens: Vec<u32>,
    /// Tokens not generated first (blank and `<|endoftext|>`), when `suppress_blank` is on.
    pub suppress_begin: Vec<u32>,
    /// The first timestamp may not exceed `timestamp_begin + max_initial_timestamp_index`.
    pub max_initial_timestamp_index: u32,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            beam_size: 5,
            patience: 1.0,
            length_penalty: 1.0,
            temperature: 0.0,
            num_hypotheses: 1,
            max_length: 448,
            suppress_tokens: Vec::new(),
            suppress_begin: Vec::new(),
            max_initial_timestamp_index: 50,
            seed: 0,
        }
    }
}

/// The result of decoding one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens, without the final `<|endoftext|>`.
    pub tokens: Vec<u32>,
    /// Sum of log-probabilities (including `<|endoftext|>`) over `len ^ length_penalty`.
    pub score: f32,
    /// Probability of `<|nospeech|>` at `<|startoftranscript|>`.
    pub no_speech_prob: f32,
}

/// The logit rules applied at every step (CTranslate2's logits processors, in their order).
struct Rules<'a> {
    suppress: &'a [u32],
    suppress_begin: &'a [u32],
    timestamps: Option<TimestampRules>,
}

#[derive(Clone, Copy)]
struct TimestampRules {
    eot: usize,
    no_timestamps: usize,
    begin: usize,
    end: usize,
    max_initial: usize,
}

impl Rules<'_> {
    /// Applies the rules to one row of logits given the tokens generated so far.
    fn apply(&self, step: usize, logits: &mut [f32], seq: &[u32]) {
        for &t in self.suppress {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = DISABLED;
            }
        }
        if step == 0 {
            for &t in self.suppress_begin {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = DISABLED;
                }
            }
        }
        if let Some(ts) = self.timestamps {
            ts.apply(step, logits, seq);
        }
    }
}

impl TimestampRules {
    fn disable(logits: &mut [f32], range: std::ops::Range<usize>) {
        let end = range.end.min(logits.len());
        if range.start < end {
            logits[range.start..end].fill(DISABLED);
        }
    }

    fn apply(&self, step: usize, logits: &mut [f32], seq: &[u32]) {
        logits[self.no_timestamps] = DISABLED;
        let mut check_timestamp_prob = false;
        if step == 0 {
            // A timestamp first, and not later than max_initial_timestamp.
            Self::disable(logits, 0..self.begin);
            Self::disable(logits, self.max_initial + 1..self.end + 1);
        } else {
            let last = seq[step - 1] as usize;
            if last >= self.begin {
                let penultimate = if step >= 2 {
                    seq[step - 2] as usize
                } else {
                    last
                };
                if penultimate >= self.begin {
                    // A pair just closed: text must follow.
                    Self::disable(logits, self.begin..self.end + 1);
                } else {
                    // Cannot be text: another timestamp (≥ last) or the end.
                    Self::disable(logits, 0..self.eot);
                    Self::disable(logits, self.begin..last);
                    check_timestamp_prob = true;
                }
            } else {
                check_timestamp_prob = true;
                // Timestamps must increase.
                if let Some(&t) = seq[..step]
                    .iter()
                    .rev()
                    .find(|&&t| t as usize >= self.begin)
                {
                    Self::disable(logits, self.begin..t as usize + 1);
                }
            }
        }
        if check_timestamp_prob {
            // log P(any timestamp) > max log P(text token); the log-softmax normaliser is on
            // both sides, so compare the logits directly.
            let max_text = logits[..self.begin]
                .iter()
                .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let timestamp = log_sum_exp(&logits[self.begin..=self.end]);
            if timestamp > max_text {
                Self::disable(logits, 0..self.begin);
            }
        }
    }
}

fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + x.iter().map(|&v| (v - max).exp()).sum::<f32>().ln()
}

/// `x - logsumexp(x)`, in f32 like CTranslate2's CPU kernel.
pub(crate) fn log_softmax(x: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(x);
    x.iter().map(|&v| v - lse).collect()
}

fn softmax_at(x: &[f32], index: usize) -> f32 {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let sum: f32 = x.iter().map(|&v| (v - max).exp()).sum();
    (x[index] - max).exp() / sum
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Draws from `softmax(log_probs / temperature)`.
fn sample(log_probs: &[f32], temperature: f32, rng: &mut impl RngExt) -> usize {
    let scaled: Vec<f32> = log_probs.iter().map(|&v| v / temperature).collect();
    let max = scaled.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let weights: Vec<f64> = scaled.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    argmax(log_probs)
}

fn finalize(score: f32, len: usize, length_penalty: f32) -> f32 {
    score / (len as f32).powf(length_penalty)
}

/// Decodes one window: `audio_features` `[1, s, d]` from the encoder, `prompt` as built by
/// faster-whisper's `get_prompt` (optional `<|startofprev|>` + previous text, then the SOT
/// sequence, optionally `<|notimestamps|>`).
pub fn generate(
    decoder: &TextDecoder,
    tokenizer: &WhisperTokenizer,
    audio_features: &Tensor,
    prompt: &[u32],
    opts: &GenerateOptions,
    n_vocab: usize,
) -> Result<Generation> {
    let device = audio_features.device().clone();
    let sot_index = prompt
        .iter()
        .position(|&t| t == tokenizer.sot)
        .ok_or_else(|| Error::InvalidInput("the prompt has no <|startoftranscript|>".into()))?;
    let mut prompt_length = sot_index;
    while prompt_length < prompt.len()
        && (tokenizer.sot..=tokenizer.no_timestamps).contains(&prompt[prompt_length])
    {
        prompt_length += 1;
    }
    if prompt_length != prompt.len() {
        return Err(Error::InvalidInput(
            "text after the task tokens (a decoding prefix) is not supported".into(),
        ));
    }
    let start_token = prompt[prompt_length - 1];
    let start_step = prompt_length - 1;
    if start_step + 1 >= opts.max_length {
        return Err(Error::ContextOverflow {
            tokens: prompt_length,
            context: opts.max_length,
        });
    }
    let mut state = decoder.start(audio_features)?;
    let mut no_speech_prob = None;
    if start_step > 0 {
        let tokens = Tensor::new(&prompt[..start_step], &device)?.unsqueeze(0)?;
        let hidden = decoder.forward(&tokens, &mut state)?;
        if sot_index < start_step {
            // <|startoftranscript|> is inside the prompt: read <|nospeech|> there.
            let logits = decoder
                .logits(&hidden.narrow(1, sot_index, 1)?.squeeze(1)?)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            no_speech_prob = Some(softmax_at(&logits, tokenizer.no_speech as usize));
        }
    }
    let timestamps = (start_token != tokenizer.no_timestamps).then_some(TimestampRules {
        eot: tokenizer.eot as usize,
        no_timestamps: tokenizer.no_timestamps as usize,
        begin: tokenizer.timestamp_begin as usize,
        end: n_vocab - 1,
        max_initial: (tokenizer.timestamp_begin + opts.max_initial_timestamp_index) as usize,
    });
    let rules = Rules {
        suppress: &opts.suppress_tokens,
        suppress_begin: &opts.suppress_begin,
        timestamps,
    };
    let max_length = (opts.max_length / 2).min(opts.max_length - start_step);
    let search = Search {
        decoder,
        rules: &rules,
        eot: tokenizer.eot,
        no_speech: tokenizer.no_speech as usize,
        max_length,
        device: &device,
    };
    let (tokens, score, first_no_speech) = if opts.beam_size > 1 {
        search.beam(&mut state, start_token, opts)?
    } else {
        search.greedy(&mut state, start_token, opts)?
    };
    Ok(Generation {
        tokens,
        score,
        no_speech_prob: no_speech_prob.unwrap_or(first_no_speech),
    })
}

struct Search<'a> {
    decoder: &'a TextDecoder,
    rules: &'a Rules<'a>,
    eot: u32,
    no_speech: usize,
    max_length: usize,
    device: &'a Device,
}

impl Search<'_> {
    /// One decoder step for `inputs` (one token per row) → logits rows.
    fn step(&self, state: &mut DecoderState, inputs: &[u32]) -> Result<Vec<Vec<f32>>> {
        let tokens = Tensor::new(inputs, self.device)?.unsqueeze(1)?;
        let hidden = self.decoder.forward(&tokens, state)?.squeeze(1)?;
        let logits = self.decoder.logits(&hidden)?;
        let n_vocab = logits.dim(D::Minus1)?;
        let flat = logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(flat.chunks(n_vocab).map(<[f32]>::to_vec).collect())
    }

    /// Greedy search, or sampling with `num_hypotheses` independent rows.
    fn greedy(
        &self,
        state: &mut DecoderState,
        start: u32,
        opts: &GenerateOptions,
    ) -> Result<(Vec<u32>, f32, f32)> {
        let sampling = opts.temperature > 0.0;
        let n = if sampling {
            opts.num_hypotheses.max(1)
        } else {
            1
        };
        if n > 1 {
            state.select_rows(&vec![0u32; n], self.device)?;
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(opts.seed);
        // (tokens, score, finished) per hypothesis; `alive` maps batch rows to hypotheses.
        let mut hyps: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0); n];
        let mut alive: Vec<usize> = (0..n).collect();
        let mut inputs = vec![start; n];
        let mut no_speech = 0.0;
        // Generated tokens per hypothesis, EOT included, as the timestamp rules see them.
        let mut seqs: Vec<Vec<u32>> = vec![Vec::new(); n];
        for step in 0..self.max_length {
            let mut rows = self.step(state, &inputs)?;
            let mut keep = Vec::new();
            let mut next_inputs = Vec::new();
            for (r, logits) in rows.iter_mut().enumerate() {
                let h = alive[r];
                if step == 0 && h == 0 {
                    no_speech = softmax_at(logits, self.no_speech);
                }
                self.rules.apply(step, logits, &seqs[h]);
                let log_probs = log_softmax(logits);
                let token = if sampling {
                    sample(&log_probs, opts.temperature, &mut rng)
                } else {
                    argmax(&log_probs)
                } as u32;
                hyps[h].1 += log_probs[token as usize];
                seqs[h].push(token);
                if token != self.eot {
                    hyps[h].0.push(token);
                }
                let finished = token == self.eot || step + 1 == self.max_length;
                if !finished {
                    keep.push(r as u32);
                    next_inputs.push(token);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() != alive.len() {
                state.select_rows(&keep, self.device)?;
                alive = keep.iter().map(|&r| alive[r as usize]).collect();
            }
            inputs = next_inputs;
        }
        let best = hyps
            .into_iter()
            .map(|(tokens, score)| {
                let s = finalize(score, tokens.len(), opts.length_penalty);
                (tokens, s)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_default();
        Ok((best.0, best.1, no_speech))
    }

    /// Beam search as CTranslate2's `BeamSearch` on CPU: the first step runs on one row and
    /// expands to `beam_size`; `2·beam_size` candidates per step refill beams that finished.
    fn beam(
        &self,
        state: &mut DecoderState,
        start: u32,
        opts: &GenerateOptions,
    ) -> Result<(Vec<u32>, f32, f32)> {
        let k = opts.beam_size;
        let n_candidates = 2 * k;
        let max_candidates = ((k as f32) * opts.patience).round() as usize;
        let early_exit = opts.length_penalty == 0.0;
        let mut inputs = vec![start];
        let mut beam_scores: Vec<f32> = vec![0.0];
        let mut alive: Vec<Vec<u32>> = vec![Vec::new()];
        let mut finished: Vec<(f32, Vec<u32>)> = Vec::new();
        let mut top_beam_finished = false;
        let mut no_speech = 0.0;
        for step in 0..self.max_length {
            let mut rows = self.step(state, &inputs)?;
            // (score, row, token) candidates: the best of each row, then the best overall.
            let mut cands: Vec<(f32, usize, u32)> = Vec::with_capacity(rows.len() * n_candidates);
            for (r, logits) in rows.iter_mut().enumerate() {
                if step == 0 && r == 0 {
                    no_speech = softmax_at(logits, self.no_speech);
                }
                self.rules.apply(step, logits, &alive[r]);
                let log_probs = log_softmax(logits);
                row_top_k(&log_probs, beam_scores[r], r, n_candidates, &mut cands);
            }
            let top = top_k(cands, n_candidates);
            let is_last = step + 1 == self.max_length;
            let seq_of = |c: &(f32, usize, u32)| {
                let mut s = alive[c.1].clone();
                s.push(c.2);
                s
            };
            let mut secondary = k;
            let mut active = Vec::with_capacity(k);
            for i in 0..k.min(top.len()) {
                let mut next = i;
                if top[i].2 == self.eot || is_last {
                    if i == 0 {
                        top_beam_finished = true;
                    }
                    let mut hyp = seq_of(&top[i]);
                    if top[i].2 == self.eot {
                        hyp.pop();
                    }
                    finished.push((top[i].0, hyp));
                    for (j, c) in top.iter().enumerate().skip(secondary) {
                        if c.2 != self.eot {
                            next = j;
                            secondary = j + 1;
                            break;
                        }
                    }
                }
                active.push(next);
            }
            let done = is_last
                || if early_exit {
                    top_beam_finished && !finished.is_empty()
                } else {
                    finished.len() >= max_candidates
                };
            if done || active.is_empty() {
                break;
            }
            let origins: Vec<u32> = active.iter().map(|&j| top[j].1 as u32).collect();
            state.select_rows(&origins, self.device)?;
            inputs = active.iter().map(|&j| top[j].2).collect();
            beam_scores = active.iter().map(|&j| top[j].0).collect();
            alive = active.iter().map(|&j| seq_of(&top[j])).collect();
        }
        let best = finished
            .into_iter()
            .map(|(score, tokens)| (finalize(score, tokens.len(), opts.length_penalty), tokens))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((f32::NEG_INFINITY, Vec::new()));
        Ok((best.1, best.0, no_speech))
    }
}

/// Appends the `k` best `(log_prob + offset, row, token)` of one row to `out`.
fn row_top_k(
    log_probs: &[f32],
    offset: f32,
    row: usize,
    k: usize,
    out: &mut Vec<(f32, usize, u32)>,
) {
    // Sorted best first; a new value enters only when it beats the current k-th.
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (t, &lp) in log_probs.iter().enumerate() {
        if best.len() == k && lp <= best[k - 1].0 {
            continue;
        }
        let pos = best.partition_point(|&(v, _)| v >= lp);
        best.insert(pos, (lp, t as u32));
        best.truncate(k);
    }
    out.extend(best.into_iter().map(|(lp, t)| (lp + offset, row, t)));
}

/// The `k` best candidates, best first.
fn top_k(mut cands: Vec<(f32, usize, u32)>, k: usize) -> Vec<(f32, usize, u32)> {
    let cmp = |a: &(f32, usize, u32), b: &(f32, usize, u32)| b.0.total_cmp(&a.0);
    if cands.len() > k {
        cands.select_nth_unstable_by(k, cmp);
        cands.truncate(k);
    }
    cands.sort_by(cmp);
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> TimestampRules {
        // vocabulary: 0..10 text, 10 eot, 11 notimestamps, 12..=20 timestamps
        TimestampRules {
            eot: 10,
            no_timestamps: 11,
            begin: 12,
            end: 20,
            max_initial: 14,
        }
    }

    #[test]
    fn first_token_is_an_early_timestamp() {
        let mut logits = vec![0.0f32; 21];
        rules().apply(0, &mut logits, &[]);
        let allowed: Vec<usize> = (0..21).filter(|&i| logits[i] > DISABLED).collect();
        assert_eq!(allowed, vec![12, 13, 14]);
    }

    #[test]
    fn timestamps_come_in_pairs_and_increase() {
        // after <t=13> text: timestamps ≤ 13 are banned
        let mut logits = vec![0.0f32; 21];
        rules().apply(2, &mut logits, &[13, 3]);
        assert!(logits[12] == DISABLED && logits[13] == DISABLED && logits[14] > DISABLED);
        // after text <t=15>: no text, timestamps ≥ 15 or eot (likely enough not to be
        // overruled by the total timestamp probability)
        let mut logits = vec![0.0f32; 21];
        logits[10] = 5.0;
        rules().apply(3, &mut logits, &[12, 3, 15]);
        let allowed: Vec<usize> = (0..21).filter(|&i| logits[i] > DISABLED).collect();
        assert_eq!(allowed, vec![10, 15, 16, 17, 18, 19, 20]);
        // … and when the timestamps together beat every text token, text (eot included) goes.
        let mut logits = vec![0.0f32; 21];
        rules().apply(3, &mut logits, &[12, 3, 15]);
        let allowed: Vec<usize> = (0..21).filter(|&i| logits[i] > DISABLED).collect();
        assert_eq!(allowed, vec![15, 16, 17, 18, 19, 20]);
        // after a closed pair: text only (timestamps banned)
        let mut logits = vec![0.0f32; 21];
        rules().apply(4, &mut logits, &[12, 3, 15, 15]);
        assert!((12..=20).all(|i| logits[i] == DISABLED) && logits[3] > DISABLED);
    }

    #[test]
    fn top_k_sorts_best_first() {
        let c = vec![(0.1, 0, 1), (0.5, 0, 2), (-1.0, 1, 3), (0.3, 1, 4)];
        let t = top_k(c, 2);
        assert_eq!(t.iter().map(|c| c.2).collect::<Vec<_>>(), vec![2, 4]);
    }
}
