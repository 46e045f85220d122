//! The optimisation loop shared by the LLM-side trainers (a projector, OneLLM's stems and
//! UPM): seeded epoch order, gradient accumulation, global-norm clipping, AdamW with
//! warmup + cosine, held-out loss, and checkpoints that resume exactly.

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::align::{set_vars, var_tensors};
use super::{AdamW, AdamWConfig, Checkpoints, LrSchedule, grad_norm};
use crate::{Error, Result};

/// How many steps and how big, and the optimiser's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    pub steps: usize,
    /// Samples per micro-batch.
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
    /// Measure the held-out loss every this many steps (and at the end); 0: never.
    pub eval_every: usize,
}

/// One step's numbers, for progress bars and logs.
#[derive(Debug, Clone, Copy)]
pub struct StepProgress {
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f64,
    /// The held-out loss, on steps that measured it.
    pub eval_loss: Option<f32>,
}

/// The losses of a finished run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Losses {
    /// The training loss of every step.
    pub train: Vec<f32>,
    /// `(step, held-out loss)` every `eval_every` steps.
    pub eval: Vec<(usize, f32)>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct RunState<C> {
    step: usize,
    config: C,
    losses: Vec<f32>,
    #[serde(default)]
    eval_losses: Vec<(usize, f32)>,
}

/// What a run optimises: the loss of a micro-batch of sample indices (differentiable in
/// the variables) and the held-out loss.
pub trait Objective {
    fn loss(&mut self, batch: &[usize]) -> Result<Tensor>;
    fn held_out_loss(&mut self) -> Result<Option<f32>>;
}

/// Runs (or resumes, from the newest checkpoint in `checkpoints`) `settings.steps` steps
/// over `n` samples, updating `vars`. `config` describes the run: a checkpoint made with
/// another config is refused. `progress` is called after every step; `false` saves and
/// stops, returning `None` (call again to resume).
pub fn run_steps<C>(
    settings: &StepSettings,
    config: &C,
    vars: &VarMap,
    n: usize,
    objective: &mut dyn Objective,
    checkpoints: &Checkpoints,
    progress: &mut dyn FnMut(StepProgress) -> bool,
) -> Result<Option<Losses>>
where
    C: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    if n == 0 {
        return Err(Error::InvalidInput("no training samples".into()));
    }
    let s = settings;
    if s.batch_size == 0 || s.steps == 0 || s.grad_accum == 0 || s.checkpoint_every == 0 {
        return Err(Error::InvalidInput(
            "steps, batch size, accumulation and checkpoint interval must be positive".into(),
        ));
    }
    let mut optimizer = AdamW::new(
        vars,
        AdamWConfig {
            weight_decay: s.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut start = 0;
    let mut losses = Losses::default();
    if let Some((step, dir)) = checkpoints.latest()? {
        let state: RunState<C> = Checkpoints::load_state(&dir)?;
        if state.config != *config {
            return Err(Error::InvalidInput(format!(
                "{} holds a run with other settings ({:?}); use another output directory",
                checkpoints.dir().display(),
                state.config
            )));
        }
        set_vars(vars, &Checkpoints::load_tensors(&dir, "model")?)?;
        optimizer.load_state(&Checkpoints::load_tensors(&dir, "optimizer")?, step)?;
        start = step;
        losses = Losses {
            train: state.losses,
            eval: state.eval_losses,
        };
    }
    let schedule = LrSchedule {
        peak: s.lr,
        floor: s.min_lr,
        warmup: s.warmup,
        total: s.steps,
    };
    let per_step = s.batch_size * s.grad_accum;
    let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
    for step in start..s.steps {
        let mut grads: Option<GradStore> = None;
        let mut step_loss = 0f32;
        for micro in 0..s.grad_accum {
            let ids: Vec<usize> = (0..s.batch_size)
                .map(|i| {
                    let k = step * per_step + micro * s.batch_size + i;
                    let epoch = k / n;
                    if order.0 != epoch {
                        // An epoch's order depends on the seed and the epoch only: a
                        // resumed run sees the same batches.
                        let mut rng =
                            StdRng::seed_from_u64(s.seed ^ (epoch as u64).wrapping_mul(0x9E37));
                        let mut perm: Vec<usize> = (0..n).collect();
                        perm.shuffle(&mut rng);
                        order = (epoch, perm);
                    }
                    order.1[k % n]
                })
                .collect();
            let loss = objective.loss(&ids)?;
            step_loss += loss.to_scalar::<f32>()? / s.grad_accum as f32;
            let g = (loss / s.grad_accum as f64)?.backward()?;
            grads = Some(match grads {
                None => g,
                Some(mut sum) => {
                    for var in optimizer.vars() {
                        if let Some(new) = g.get(var.as_tensor()) {
                            let total = match sum.get(var.as_tensor()) {
                                Some(old) => (old + new)?,
                                None => new.clone(),
                            };
                            sum.insert(var.as_tensor(), total);
                        }
                    }
                    sum
                }
            });
        }
        let grads = grads.ok_or_else(|| Error::InvalidInput("no gradients".into()))?;
        let norm = grad_norm(&grads, optimizer.vars())?;
        let scale = if norm > s.max_grad_norm {
            s.max_grad_norm / norm
        } else {
            1.0
        };
        let lr = schedule.at(step);
        optimizer.step(&grads, lr, scale)?;
        losses.train.push(step_loss);
        let done = step + 1;
        let eval_loss = if s.eval_every > 0 && (done % s.eval_every == 0 || done == s.steps) {
            objective.held_out_loss()?
        } else {
            None
        };
        if let Some(loss) = eval_loss {
            losses.eval.push((done, loss));
        }
        let go_on = progress(StepProgress {
            step: done,
            steps: s.steps,
            loss: step_loss,
            lr,
            grad_norm: norm,
            eval_loss,
        });
        if !go_on || done % s.checkpoint_every == 0 || done == s.steps {
            let state = RunState {
                step: done,
                config: config.clone(),
                losses: losses.train.clone(),
                eval_losses: losses.eval.clone(),
            };
            checkpoints.save(
                done,
                &[
                    ("model", &var_tensors(vars)?),
                    ("optimizer", &optimizer.state()),
                ],
                &state,
            )?;
        }
        if !go_on {
            return Ok(None);
        }
    }
    Ok(Some(losses))
}
