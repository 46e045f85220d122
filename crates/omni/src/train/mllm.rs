//! Training a projector that feeds image features to a frozen LLM (LLaVA's recipe):
//! next-token loss on the model's turns of image conversations, gradients flowing back
//! through the frozen decoder ([`DenseLlama`]) into the projector.
//!
//! Stage 1 (alignment) trains on captions; stage 2 (instruction tuning) on questions and
//! answers, starting from stage 1's projector. AdamW, warmup + cosine, global-norm
//! clipping, gradient accumulation, checkpoints that resume exactly.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::Checkpoints;
use super::align::{seeded_init, set_vars};
pub use super::steps::StepProgress;
use super::steps::{Objective, StepSettings, run_steps};
use crate::llm::DenseLlama;
use crate::llm::{LoraConfig, LoraWeights};
use crate::projector::{Projector, ProjectorConfig, ProjectorKind};
use crate::tasks::interleave::{Interleaved, Segment};
use crate::{Error, Result};

/// Optimizer settings of a projector run (the fields of [`StepSettings`] written out, as
/// in [`crate::tasks::onellm_train::OneLlmStage`], so that unknown fields are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorTraining {
    pub projector: ProjectorKind,
    /// A resampler's queries, layers and heads (its defaults when absent).
    pub queries: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    /// Also train LoRA adapters on the LLM (stage 2); the LLM stays frozen otherwise.
    pub lora: Option<LoraConfig>,
    pub steps: usize,
    /// Conversations per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Measure the loss on the held-out conversations every this many steps (and at the
    /// end); 0: never.
    pub eval_every: usize,
}

impl Default for ProjectorTraining {
    fn default() -> Self {
        Self {
            projector: ProjectorKind::Mlp2xGelu,
            queries: None,
            layers: None,
            heads: None,
            lora: None,
            steps: 300,
            batch_size: 4,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 20,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 0,
            checkpoint_every: 50,
            eval_every: 50,
        }
    }
}

/// One training conversation: its rendered prompt and the feature rows of its media.
#[derive(Debug, Clone)]
pub struct TrainSample {
    pub prompt: Interleaved,
    /// Per media slot, in order: encoder features `(tokens, input_dim)`.
    pub media: Vec<Tensor>,
}

/// What a projector run is, as its checkpoints record it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProjectorRun {
    config: ProjectorTraining,
    projector: ProjectorConfig,
}

impl ProjectorTraining {
    fn settings(&self) -> StepSettings {
        StepSettings {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            eval_every: self.eval_every,
        }
    }
}

/// The conversations a run learns from, and held-out ones whose loss it tracks.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    pub train: &'a [TrainSample],
    pub eval: &'a [TrainSample],
}

/// The mean loss of `samples` in batches of `batch_size` (no gradients kept).
fn held_out_loss(
    llm: &DenseLlama,
    projector: &Projector,
    samples: &[TrainSample],
    batch_size: usize,
) -> Result<f32> {
    let mut total = 0f32;
    for chunk in samples.chunks(batch_size) {
        let batch: Vec<&TrainSample> = chunk.iter().collect();
        let loss = batch_loss(llm, projector, &batch)?.detach();
        total += loss.to_scalar::<f32>()? * chunk.len() as f32;
    }
    Ok(total / samples.len().max(1) as f32)
}

/// The mean next-token loss of `samples` (one micro-batch), differentiable in the
/// projector.
pub fn batch_loss(
    llm: &DenseLlama,
    projector: &Projector,
    samples: &[&TrainSample],
) -> Result<Tensor> {
    let mut sequences = Vec::with_capacity(samples.len());
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for sample in samples {
        let mut parts = Vec::new();
        let mut pos = 0usize;
        for segment in &sample.prompt.segments {
            match segment {
                Segment::Text { tokens, target } => {
                    parts.push(llm.embed_tokens(tokens)?);
                    if *target {
                        // Position p predicts the token at p + 1.
                        for (i, &t) in tokens.iter().enumerate() {
                            if pos + i > 0 {
                                rows.push((sequences.len(), pos + i - 1));
                                labels.push(t);
                            }
                        }
                    }
                    pos += tokens.len();
                }
                Segment::Media { index, .. } => {
                    let features = sample.media.get(*index).ok_or_else(|| {
                        Error::InvalidInput(format!("media slot {index} has no features"))
                    })?;
                    let embeds = projector.forward(features)?.to_dtype(llm.dtype())?;
                    pos += embeds.dim(0)?;
                    parts.push(embeds);
                }
            }
        }
        sequences.push(Tensor::cat(&parts, 0)?);
    }
    next_token_loss(llm, &sequences, &rows, &labels)
}

/// The mean cross-entropy of `labels` predicted at positions `picks` (`(row, position)`)
/// of `sequences` (input embeddings, of any lengths) through the decoder: the rows
/// right-padded to the longest (causal attention keeps padding out of real positions)
/// and run as one batch.
pub(crate) fn next_token_loss(
    llm: &DenseLlama,
    sequences: &[Tensor],
    picks: &[(usize, usize)],
    labels: &[u32],
) -> Result<Tensor> {
    if labels.is_empty() {
        return Err(Error::InvalidInput(
            "the batch has no target tokens to learn".into(),
        ));
    }
    let d = llm.config().hidden_size;
    let mut longest = 0;
    for s in sequences {
        longest = longest.max(s.dim(0)?);
    }
    let padded = sequences
        .iter()
        .map(|s| {
            let len = s.dim(0)?;
            if len == longest {
                return Ok(s.clone());
            }
            let pad = Tensor::zeros((longest - len, d), s.dtype(), &Device::Cpu)?;
            Ok(Tensor::cat(&[s, &pad], 0)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let hidden = llm.forward_embeds(&Tensor::stack(&padded, 0)?)?;
    let flat = hidden.reshape((sequences.len() * longest, d))?;
    let index: Vec<u32> = picks
        .iter()
        .map(|&(b, p)| (b * longest + p) as u32)
        .collect();
    let picked = flat.index_select(&Tensor::new(index.as_slice(), &Device::Cpu)?, 0)?;
    let logits = llm.logits(&picked)?.to_dtype(DType::F32)?;
    let labels = Tensor::new(labels, &Device::Cpu)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &labels)?)
}

/// What a finished run made.
pub struct Trained {
    pub projector: Projector,
    /// The LLM's adapters, when the run trained some.
    pub lora: Option<LoraWeights>,
    /// The loss of every step.
    pub losses: Vec<f32>,
    /// `(step, held-out loss)` every `eval_every` steps.
    pub eval_losses: Vec<(usize, f32)>,
}

/// Trains (or resumes, from the newest checkpoint) a projector from `input_dim`
/// features into `llm`'s embedding space, and LoRA adapters on `llm` if `config.lora`
/// asks, on `data.train`; the loss on `data.eval` is measured every `eval_every` steps. `init` starts the projector from given weights (stage 2 from stage 1).
/// `progress` is called after every step; `false` saves and stops, returning `None`
/// (call again to resume).
pub fn train_projector(
    config: &ProjectorTraining,
    llm: &DenseLlama,
    input_dim: usize,
    data: TrainData,
    init: Option<&HashMap<String, Tensor>>,
    checkpoints: &Checkpoints,
    progress: &mut dyn FnMut(StepProgress) -> bool,
) -> Result<Option<Trained>> {
    let samples = data.train;
    if samples.is_empty() {
        return Err(Error::InvalidInput("no training conversations".into()));
    }
    let device = Device::Cpu;
    let projector_config = ProjectorConfig {
        queries: config.queries,
        layers: config.layers,
        heads: config.heads,
        ..ProjectorConfig::new(config.projector, input_dim, llm.config().hidden_size)
    };
    let vars = VarMap::new();
    let projector = Projector::new(
        projector_config.clone(),
        VarBuilder::from_varmap(&vars, DType::F32, &device),
    )?;
    let mut llm = llm.clone();
    if let Some(lora) = &config.lora {
        llm.add_lora(
            lora,
            &VarBuilder::from_varmap(&vars, DType::F32, &device).pp("lora"),
        )?;
    }
    let llm = &llm;
    seeded_init(&vars, config.seed)?;
    if let Some(weights) = init {
        set_vars(&vars, weights)?;
    }
    struct Run<'a> {
        llm: &'a DenseLlama,
        projector: &'a Projector,
        data: TrainData<'a>,
        batch_size: usize,
    }
    impl Objective for Run<'_> {
        fn loss(&mut self, batch: &[usize]) -> Result<Tensor> {
            let batch: Vec<&TrainSample> = batch.iter().map(|&i| &self.data.train[i]).collect();
            batch_loss(self.llm, self.projector, &batch)
        }
        fn held_out_loss(&mut self) -> Result<Option<f32>> {
            if self.data.eval.is_empty() {
                return Ok(None);
            }
            held_out_loss(self.llm, self.projector, self.data.eval, self.batch_size).map(Some)
        }
    }
    let run = ProjectorRun {
        config: config.clone(),
        projector: projector_config,
    };
    let mut objective = Run {
        llm,
        projector: &projector,
        data,
        batch_size: config.batch_size,
    };
    let Some(losses) = run_steps(
        &config.settings(),
        &run,
        &vars,
        samples.len(),
        &mut objective,
        checkpoints,
        progress,
    )?
    else {
        return Ok(None);
    };
    let lora = match &config.lora {
        Some(lora) => llm.lora_weights(lora)?,
        None => None,
    };
    Ok(Some(Trained {
        projector,
        lora,
        losses: losses.train,
        eval_losses: losses.eval,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::RopeStyle;
    use crate::llm::dense::test_support::{tiny_model, values};
    use crate::tasks::interleave::MediaKind;

    /// Conversations of the tiny model: two text tokens, 3 media rows of width 5, then
    /// two target tokens that depend on the media.
    fn samples() -> Vec<TrainSample> {
        let mut seed = 11;
        (0..6u32)
            .map(|i| TrainSample {
                prompt: Interleaved {
                    segments: vec![
                        Segment::Text {
                            tokens: vec![1, 2],
                            target: false,
                        },
                        Segment::Media {
                            kind: MediaKind::Image,
                            index: 0,
                        },
                        Segment::Text {
                            tokens: vec![3 + i % 4, 10],
                            target: true,
                        },
                    ],
                },
                media: vec![
                    Tensor::from_vec(
                        values(15, &mut seed)
                            .into_iter()
                            .map(|v| v as f32)
                            .collect::<Vec<f32>>(),
                        (3, 5),
                        &Device::Cpu,
                    )
                    .unwrap(),
                ],
            })
            .collect()
    }

    fn config() -> ProjectorTraining {
        ProjectorTraining {
            steps: 6,
            batch_size: 2,
            grad_accum: 2,
            lr: 1e-2,
            warmup: 2,
            checkpoint_every: 100,
            eval_every: 3,
            seed: 3,
            ..ProjectorTraining::default()
        }
    }

    fn run_dir(tag: &str) -> Checkpoints {
        let dir = std::env::temp_dir().join(format!("omni-mllm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Checkpoints::open(dir).unwrap()
    }

    fn train(checkpoints: &Checkpoints, stop_at: Option<usize>) -> Option<(Projector, Vec<f32>)> {
        train_with(&config(), checkpoints, stop_at).map(|t| (t.projector, t.losses))
    }

    fn train_with(
        config: &ProjectorTraining,
        checkpoints: &Checkpoints,
        stop_at: Option<usize>,
    ) -> Option<Trained> {
        let model = tiny_model(RopeStyle::Neox);
        let all = samples();
        let data = TrainData {
            train: &all[..5],
            eval: &all[5..],
        };
        train_projector(config, &model, 5, data, None, checkpoints, &mut |p| {
            Some(p.step) != stop_at
        })
        .unwrap()
    }

    #[test]
    fn training_is_deterministic_and_resumes_exactly() {
        let a = run_dir("a");
        let (_, losses) = train(&a, None).unwrap();
        assert!(losses.last() < losses.first(), "{losses:?}");
        let b = run_dir("b");
        assert_eq!(train(&b, None).unwrap().1, losses);

        // Stopped after step 3 (a checkpoint is saved), then resumed.
        let c = run_dir("c");
        assert!(train(&c, Some(3)).is_none());
        let (_, resumed) = train(&c, None).unwrap();
        assert_eq!(resumed, losses);
        // The held-out loss was measured at steps 3 and 6, the same after the resume.
        let d = run_dir("d");
        let whole = train_with(&config(), &d, None).unwrap().eval_losses;
        let again = train_with(&config(), &c, None).unwrap().eval_losses;
        assert_eq!(whole.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 6]);
        assert_eq!(again, whole);
        std::fs::remove_dir_all(d.dir()).unwrap();
        for dir in [a, b, c] {
            std::fs::remove_dir_all(dir.dir()).unwrap();
        }
    }

    #[test]
    fn a_resampler_trains_deterministically_to_a_fixed_token_count() {
        let config = ProjectorTraining {
            projector: ProjectorKind::Resampler,
            queries: Some(2),
            layers: Some(1),
            heads: Some(2),
            ..config()
        };
        let a = run_dir("resampler-a");
        let Trained {
            projector, losses, ..
        } = train_with(&config, &a, None).unwrap();
        assert!(losses.last() < losses.first(), "{losses:?}");
        let b = run_dir("resampler-b");
        assert_eq!(train_with(&config, &b, None).unwrap().losses, losses);
        // 3 feature rows in, 2 tokens out.
        let out = projector.forward(&samples()[0].media[0]).unwrap();
        assert_eq!(out.dims(), &[2, projector.config().output_dim]);
        for dir in [a, b] {
            std::fs::remove_dir_all(dir.dir()).unwrap();
        }
    }

    #[test]
    fn lora_adapters_train_with_the_projector_and_resume_exactly() {
        let config = ProjectorTraining {
            lora: Some(LoraConfig {
                rank: 2,
                alpha: 4.0,
                targets: vec!["attn_q".into(), "attn_v".into(), "ffn_down".into()],
            }),
            ..config()
        };
        let a = run_dir("lora-a");
        let trained = train_with(&config, &a, None).unwrap();
        let plain = run_dir("lora-plain");
        let without = train(&plain, None).unwrap().1;
        assert_ne!(trained.losses, without, "the adapters change the run");
        // B left zero would mean no training reached the adapters.
        let lora = trained.lora.unwrap();
        let (_, b) = LoraConfig::names(0, "attn_v");
        let b_norm: f32 = lora.tensors[&b]
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(b_norm > 0.0);
        assert_eq!(
            lora.tensors.len(),
            2 * 3 * 2,
            "A and B × 3 layers × 2 blocks"
        );

        let c = run_dir("lora-c");
        assert!(train_with(&config, &c, Some(3)).is_none());
        assert_eq!(
            train_with(&config, &c, None).unwrap().losses,
            trained.losses
        );
        for dir in [a, plain, c] {
            std::fs::remove_dir_all(dir.dir()).unwrap();
        }
    }
}
