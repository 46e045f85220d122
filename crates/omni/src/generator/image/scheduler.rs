//! Noise schedulers of diffusion sampling, as diffusers defines them: DDPM, DDIM (η = 0),
//! Euler and Euler ancestral, from a `scheduler_config.json` (beta schedule, timestep
//! spacing, prediction type). A sampler asks for the timesteps, scales the model's input,
//! and steps the latents with the model's output; the stochastic ones take the step's
//! noise from the caller, so that a seed (or a recorded reference) fixes the sample.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the training betas are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    /// Linear in √β (Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule (`squaredcos_cap_v2`).
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise ε.
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀.
    VPrediction,
    /// x₀ itself.
    Sample,
}

/// How the sampling timesteps are picked among the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `0, r, 2r, …` reversed, plus `steps_offset` (r = train steps / steps).
    Leading,
    /// From the last training step down by r.
    Trailing,
    /// Evenly spread from the last training step to 0.
    Linspace,
}

/// A `scheduler_config.json` (the fields the samplers here read; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    /// DDIM: the "previous" ᾱ of the last step is 1 (else ᾱ₀).
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    /// Stable Diffusion 1.5's.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 1,
            set_alpha_to_one: false,
        }
    }
}

impl SchedulerConfig {
    /// Reads a diffusers `scheduler_config.json`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::InvalidInput(format!("{}: not a scheduler config: {e}", path.display()))
        })
    }

    /// ᾱ_t for every training step (computed in f32, as diffusers does in torch).
    fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let linspace = |a: f32, b: f32| -> Vec<f32> {
            (0..n)
                .map(|i| a + (b - a) * i as f32 / (n.max(2) - 1) as f32)
                .collect()
        };
        let betas: Vec<f32> = match self.beta_schedule {
            BetaSchedule::Linear => linspace(self.beta_start as f32, self.beta_end as f32),
            BetaSchedule::ScaledLinear => linspace(
                (self.beta_start as f32).sqrt(),
                (self.beta_end as f32).sqrt(),
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
            BetaSchedule::SquaredcosCapV2 => {
                let bar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - bar(t2) / bar(t1)).min(0.999) as f32
                    })
                    .collect()
            }
        };
        let mut product = 1f32;
        betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product as f64
            })
            .collect()
    }
}

/// The sampling algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    Ddpm,
    Ddim,
    Euler,
    EulerAncestral,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 4] = [
        SamplerKind::Ddpm,
        SamplerKind::Ddim,
        SamplerKind::Euler,
        SamplerKind::EulerAncestral,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::Euler => "euler",
            SamplerKind::EulerAncestral => "euler_a",
        }
    }
}

/// A sampler set up for a number of steps.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kind: SamplerKind,
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<usize>,
    /// Euler: σ of each timestep, then 0.
    sigmas: Vec<f64>,
}

impl Scheduler {
    /// `kind` over `steps` sampling steps of `config`'s training schedule.
    pub fn new(kind: SamplerKind, config: SchedulerConfig, steps: usize) -> Result<Self> {
        let n = config.num_train_timesteps;
        if steps == 0 || steps > n {
            return Err(Error::InvalidInput(format!(
                "{steps} sampling steps: between 1 and the {n} training steps"
            )));
        }
        let timesteps: Vec<usize> = match config.timestep_spacing {
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + config.steps_offset).min(n - 1))
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (1..=steps)
                    .rev()
                    .map(|i| ((i as f64 * ratio).round() as usize).saturating_sub(1))
                    .collect()
            }
            TimestepSpacing::Linspace => (0..steps)
                .rev()
                .map(|i| (i as f64 * (n - 1) as f64 / (steps.max(2) - 1) as f64).round() as usize)
                .collect(),
        };
        let alphas_cumprod = config.alphas_cumprod();
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| {
                let a = alphas_cumprod[t] as f32;
                ((1.0 - a) / a).sqrt() as f64
            })
            .collect();
        sigmas.push(0.0);
        Ok(Self {
            kind,
            config,
            alphas_cumprod,
            timesteps,
            sigmas,
        })
    }

    /// The timesteps to run the model at, in order.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The scale of the initial noise.
    pub fn init_noise_sigma(&self) -> f64 {
        match self.kind {
            SamplerKind::Ddpm | SamplerKind::Ddim => 1.0,
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                let max = self.sigmas.iter().cloned().fold(0.0, f64::max);
                match self.config.timestep_spacing {
                    TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
                    _ => max,
                }
            }
        }
    }

    /// The model's input at step `i`: the latents, divided by √(σ² + 1) for Euler.
    pub fn scale_model_input(&self, latents: &Tensor, i: usize) -> Result<Tensor> {
        Ok(match self.kind {
            SamplerKind::Ddpm | SamplerKind::Ddim => latents.clone(),
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                let s = self.sigmas[i];
                (latents / (s * s + 1.0).sqrt())?
            }
        })
    }

    /// Whether step `i` takes noise.
    pub fn needs_noise(&self, i: usize) -> bool {
        match self.kind {
            SamplerKind::Ddpm => self.timesteps[i] > 0,
            SamplerKind::EulerAncestral => true,
            SamplerKind::Ddim | SamplerKind::Euler => false,
        }
    }

    /// ᾱ of the timestep after step `i` (the last: ᾱ₀ or 1).
    fn alpha_prev(&self, i: usize, last: f64) -> f64 {
        let ratio = self.config.num_train_timesteps / self.timesteps.len();
        match self.timesteps[i].checked_sub(ratio) {
            Some(prev) => self.alphas_cumprod[prev],
            None => last,
        }
    }

    /// x₀ and ε predicted from the model's `output` at ᾱ = `alpha` for `latents`.
    fn predict(&self, output: &Tensor, latents: &Tensor, alpha: f64) -> Result<(Tensor, Tensor)> {
        let (a, b) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        Ok(match self.config.prediction_type {
            PredictionType::Epsilon => (((latents - (output * b)?)? / a)?, output.clone()),
            PredictionType::VPrediction => (
                ((latents * a)? - (output * b)?)?,
                ((output * a)? + (latents * b)?)?,
            ),
            PredictionType::Sample => (output.clone(), ((latents - (output * a)?)? / b)?),
        })
    }

    /// The latents after step `i`, given the model's (guided) `output` for `latents` and,
    /// when [`Self::needs_noise`], standard normal `noise` of their shape.
    pub fn step(
        &self,
        output: &Tensor,
        i: usize,
        latents: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        if i >= self.timesteps.len() {
            return Err(Error::InvalidInput(format!(
                "step {i} of a {}-step schedule",
                self.timesteps.len()
            )));
        }
        let noise = match (self.needs_noise(i), noise) {
            (true, Some(n)) => Some(n),
            (true, None) => {
                return Err(Error::InvalidInput(format!(
                    "the {} sampler needs noise at step {i}",
                    self.kind.name()
                )));
            }
            (false, _) => None,
        };
        let t = self.timesteps[i];
        let alpha = self.alphas_cumprod[t];
        Ok(match self.kind {
            SamplerKind::Ddim => {
                let last = if self.config.set_alpha_to_one {
                    1.0
                } else {
                    self.alphas_cumprod[0]
                };
                let prev = self.alpha_prev(i, last);
                let (x0, eps) = self.predict(output, latents, alpha)?;
                ((x0 * prev.sqrt())? + (eps * (1.0 - prev).sqrt())?)?
            }
            SamplerKind::Ddpm => {
                let prev = self.alpha_prev(i, 1.0);
                let (x0, _) = self.predict(output, latents, alpha)?;
                let current_alpha = alpha / prev;
                let current_beta = 1.0 - current_alpha;
                let x0_coeff = prev.sqrt() * current_beta / (1.0 - alpha);
                let x_coeff = current_alpha.sqrt() * (1.0 - prev) / (1.0 - alpha);
                let mean = ((x0 * x0_coeff)? + (latents * x_coeff)?)?;
                match noise {
                    Some(n) => {
                        let variance = ((1.0 - prev) / (1.0 - alpha) * current_beta).max(1e-20);
                        (mean + (n * variance.sqrt())?)?
                    }
                    None => mean,
                }
            }
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
                let x0 = match self.config.prediction_type {
                    PredictionType::Epsilon => (latents - (output * sigma)?)?,
                    PredictionType::VPrediction => {
                        let s = (sigma * sigma + 1.0).sqrt();
                        ((output * (-sigma / s))? + (latents / (sigma * sigma + 1.0))?)?
                    }
                    PredictionType::Sample => output.clone(),
                };
                let derivative = ((latents - x0)? / sigma)?;
                if self.kind == SamplerKind::Euler {
                    (latents + (derivative * (next - sigma))?)?
                } else {
                    let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
                    let down = (next * next - up * up).sqrt();
                    let moved = (latents + (derivative * (down - sigma))?)?;
                    match noise {
                        Some(n) => (moved + (n * up)?)?,
                        None => moved,
                    }
                }
            }
        })
    }
}
