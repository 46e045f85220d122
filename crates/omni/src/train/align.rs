//! Training an image→text aligner: a projector from frozen image-encoder features into a
//! frozen text embedder's space, with CLIP's contrastive loss and a learnable
//! temperature. Inputs are precomputed features, so this is fast on a CPU.
//!
//! Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
//! Supervision" (2021) — the loss and temperature; LLaVA's stage-1 recipe — train only the
//! projector, encoders frozen.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{AdamW, AdamWConfig, Checkpoints, LrSchedule, grad_norm, info_nce};
use crate::encoder::l2_normalize;
use crate::projector::{Projector, ProjectorConfig, ProjectorKind};
use crate::{Error, Result};

/// The name of the temperature variable (its log, as in CLIP).
pub const LOG_SCALE: &str = "logit_scale";

/// Hyper-parameters of an alignment run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignConfig {
    pub projector: ProjectorKind,
    /// Hidden width of an MLP projector (default: the text width).
    pub hidden_dim: Option<usize>,
    pub batch_size: usize,
    pub steps: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// CLIP's initial temperature (the logit scale starts at its inverse).
    pub init_temperature: f64,
    pub seed: u64,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            projector: ProjectorKind::Linear,
            hidden_dim: None,
            batch_size: 256,
            steps: 1000,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 50,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            init_temperature: 0.07,
            seed: 0,
            checkpoint_every: 200,
        }
    }
}

/// Training data: image features with a class label each, and one (L2-normalised) text
/// embedding per class — e.g. the mean of its caption templates' embeddings.
#[derive(Debug, Clone)]
pub struct AlignData {
    /// (N, image_dim)
    pub features: Tensor,
    pub labels: Vec<u32>,
    /// (classes, text_dim)
    pub class_texts: Tensor,
}

/// One training step's numbers, for progress bars and logs.
#[derive(Debug, Clone, Copy)]
pub struct AlignProgress {
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    pub lr: f64,
    pub temperature: f64,
}

/// A trained aligner: the projector and the logit scale.
#[derive(Debug, Clone)]
pub struct Aligner {
    pub projector: Projector,
    pub logit_scale: f32,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunState {
    step: usize,
    config: AlignConfig,
    projector: ProjectorConfig,
}

/// Trains (or resumes, from the newest checkpoint in `checkpoints`) an aligner.
/// `progress` is called after every step; when it returns `false` the run saves a
/// checkpoint and stops, returning `None` (call again to resume).
pub fn train_align(
    config: &AlignConfig,
    data: &AlignData,
    checkpoints: &Checkpoints,
    progress: &mut dyn FnMut(AlignProgress) -> bool,
) -> Result<Option<Aligner>> {
    let device = Device::Cpu;
    let (n, image_dim) = data.features.dims2()?;
    let (classes, text_dim) = data.class_texts.dims2()?;
    if n == 0 || data.labels.len() != n {
        return Err(Error::InvalidInput(format!(
            "{} labels for {n} feature rows",
            data.labels.len()
        )));
    }
    if let Some(bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(Error::InvalidInput(format!(
            "label {bad} but only {classes} class texts"
        )));
    }
    if config.batch_size == 0 || config.steps == 0 || config.checkpoint_every == 0 {
        return Err(Error::InvalidInput(
            "batch size, steps and checkpoint interval must be positive".into(),
        ));
    }
    let projector_config = ProjectorConfig {
        hidden_dim: config.hidden_dim,
        ..ProjectorConfig::new(config.projector, image_dim, text_dim)
    };
    let vars = VarMap::new();
    let projector = Projector::new(
        projector_config.clone(),
        VarBuilder::from_varmap(&vars, DType::F32, &device),
    )?;
    let log_scale = vars.get(
        (),
        LOG_SCALE,
        candle_nn::Init::Const((1.0 / config.init_temperature).ln()),
        DType::F32,
        &device,
    )?;
    seeded_init(&vars, config.seed)?;
    let mut optimizer = AdamW::new(
        &vars,
        AdamWConfig {
            weight_decay: config.weight_decay,
            ..AdamWConfig::default()
        },
    )?;

    let mut start = 0;
    if let Some((step, dir)) = checkpoints.latest()? {
        let state: RunState = Checkpoints::load_state(&dir)?;
        if state.config != *config || state.projector != projector_config {
            return Err(Error::InvalidInput(format!(
                "{} holds a run with other settings ({:?}); use another output directory",
                checkpoints.dir().display(),
                state.config
            )));
        }
        let weights = Checkpoints::load_tensors(&dir, "model")?;
        set_vars(&vars, &weights)?;
        optimizer.load_state(&Checkpoints::load_tensors(&dir, "optimizer")?, step)?;
        start = step;
    }

    let schedule = LrSchedule {
        peak: config.lr,
        floor: config.min_lr,
        warmup: config.warmup,
        total: config.steps,
    };
    let batch = config.batch_size.min(n);
    let per_epoch = n / batch;
    let mut order: (usize, Vec<u32>) = (usize::MAX, Vec::new());
    let max_log_scale = 100f32.ln();
    for step in start..config.steps {
        let epoch = step / per_epoch;
        if order.0 != epoch {
            // The order of an epoch depends only on the seed and the epoch, so a resumed
            // run sees the same batches.
            let mut rng = StdRng::seed_from_u64(config.seed ^ (epoch as u64).wrapping_mul(0x9E37));
            let mut perm: Vec<u32> = (0..n as u32).collect();
            perm.shuffle(&mut rng);
            order = (epoch, perm);
        }
        let offset = (step % per_epoch) * batch;
        let ids = &order.1[offset..offset + batch];
        let x = data.features.index_select(&Tensor::new(ids, &device)?, 0)?;
        let targets: Vec<u32> = ids.iter().map(|&i| data.labels[i as usize]).collect();
        let y = l2_normalize(&projector.forward(&x)?)?;
        let loss = info_nce(&y, &data.class_texts, &targets, &log_scale)?;
        let grads = loss.backward()?;
        let norm = grad_norm(&grads, optimizer.vars())?;
        let scale = if norm > config.max_grad_norm {
            config.max_grad_norm / norm
        } else {
            1.0
        };
        let lr = schedule.at(step);
        optimizer.step(&grads, lr, scale)?;
        // CLIP clamps the logit scale at 100.
        let s = log_scale.to_scalar::<f32>()?;
        if s > max_log_scale {
            set_vars(
                &vars,
                &HashMap::from([(LOG_SCALE.to_string(), Tensor::new(max_log_scale, &device)?)]),
            )?;
        }
        let done = step + 1;
        let go_on = progress(AlignProgress {
            step: done,
            steps: config.steps,
            loss: loss.to_scalar::<f32>()?,
            lr,
            temperature: (-(s.min(max_log_scale)) as f64).exp(),
        });
        if !go_on || done % config.checkpoint_every == 0 || done == config.steps {
            let weights = var_tensors(&vars)?;
            let state = RunState {
                step: done,
                config: config.clone(),
                projector: projector_config.clone(),
            };
            checkpoints.save(
                done,
                &[("model", &weights), ("optimizer", &optimizer.state())],
                &state,
            )?;
        }
        if !go_on {
            return Ok(None);
        }
    }
    Ok(Some(Aligner {
        projector,
        logit_scale: log_scale.to_scalar::<f32>()?.exp(),
    }))
}

/// Top-1 accuracy of nearest-class-text classification of projected features.
pub fn zero_shot_accuracy(
    projector: &Projector,
    features: &Tensor,
    labels: &[u32],
    class_texts: &Tensor,
) -> Result<f32> {
    let y = l2_normalize(&projector.forward(features)?)?;
    let predicted: Vec<u32> = y.matmul(&class_texts.t()?)?.argmax(D::Minus1)?.to_vec1()?;
    let correct = predicted.iter().zip(labels).filter(|(a, b)| a == b).count();
    Ok(correct as f32 / labels.len().max(1) as f32)
}

/// Re-initialises every matrix and its bias like PyTorch's `nn.Linear` (uniform in
/// ±1/√fan_in), from `seed`: candle's CPU random numbers cannot be seeded.
pub(crate) fn seeded_init(vars: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let current = var_tensors(vars)?;
    let mut names: Vec<&String> = current.keys().collect();
    names.sort();
    let mut fresh = HashMap::new();
    for name in names {
        let t = &current[name];
        // `bias` pairs with `weight`, `0.bias` with `0.weight`; a norm's (1-D weight)
        // keeps its initial values, as does the norm's weight.
        let fan_in = match name.strip_suffix("bias") {
            Some(layer) => current
                .get(&format!("{layer}weight"))
                .filter(|w| w.rank() == 2)
                .map(|w| w.dim(1))
                .transpose()?,
            None if t.rank() == 2 => Some(t.dim(1)?),
            None => None,
        };
        // LoRA's B starts at zero, so training starts from the unchanged LLM.
        if name.ends_with("lora_b") {
            continue;
        }
        let Some(fan_in) = fan_in else { continue };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..t.elem_count())
            .map(|_| rand::RngExt::random_range(&mut rng, -bound..bound))
            .collect();
        fresh.insert(
            name.clone(),
            Tensor::from_vec(values, t.shape(), t.device())?,
        );
    }
    set_vars(vars, &fresh)
}

pub(crate) fn var_tensors(vars: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::InvalidInput("the variable map is poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v): (&String, &Var)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

pub(crate) fn set_vars(vars: &VarMap, values: &HashMap<String, Tensor>) -> Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::InvalidInput("the variable map is poisoned".into()))?;
    for (name, value) in values {
        let var = data
            .get(name)
            .ok_or_else(|| Error::InvalidInput(format!("no variable `{name}`")))?;
        if var.dims() != value.dims() {
            return Err(Error::InvalidInput(format!(
                "`{name}` has shape {:?}, the saved value {:?}",
                var.dims(),
                value.dims()
            )));
        }
        var.set(value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 16-d, three random class texts in 8-d.
    fn clusters(n_per: usize, seed: u64) -> AlignData {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut feats = Vec::new();
        let mut labels = Vec::new();
        for c in 0..3u32 {
            for _ in 0..n_per {
                for d in 0..16 {
                    let centre = if d % 3 == c as usize { 2.0 } else { 0.0 };
                    let noise: f32 = rand::RngExt::random_range(&mut rng, -0.7..0.7);
                    feats.push(centre + noise);
                }
                labels.push(c);
            }
        }
        let texts: Vec<f32> = (0..24)
            .map(|_| rand::RngExt::random_range(&mut StdRng::seed_from_u64(7), -1.0f32..1.0))
            .enumerate()
            .map(|(i, v)| v + if i % 9 == 0 { 3.0 } else { 0.0 })
            .collect();
        let class_texts = Tensor::from_vec(texts, (3, 8), &Device::Cpu).unwrap();
        AlignData {
            features: Tensor::from_vec(feats, (3 * n_per, 16), &Device::Cpu).unwrap(),
            labels,
            class_texts: l2_normalize(&class_texts).unwrap(),
        }
    }

    fn scratch(tag: &str) -> Checkpoints {
        let dir = std::env::temp_dir().join(format!("omni-align-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Checkpoints::open(dir).unwrap()
    }

    #[test]
    fn learns_and_resumes_exactly() {
        let train = clusters(40, 1);
        let held_out = clusters(20, 2);
        let config = AlignConfig {
            batch_size: 32,
            steps: 60,
            lr: 1e-2,
            warmup: 5,
            checkpoint_every: 1000,
            ..AlignConfig::default()
        };
        let whole = scratch("whole");
        let a = train_align(&config, &train, &whole, &mut |_| true)
            .unwrap()
            .unwrap();
        let acc = zero_shot_accuracy(
            &a.projector,
            &held_out.features,
            &held_out.labels,
            &held_out.class_texts,
        )
        .unwrap();
        assert!(acc > 0.95, "held-out accuracy {acc}");

        // Stopped at step 25, then resumed: the same weights as one uninterrupted run.
        let split = scratch("split");
        let stopped = train_align(&config, &train, &split, &mut |p| p.step < 25).unwrap();
        assert!(stopped.is_none());
        assert_eq!(split.latest().unwrap().unwrap().0, 25);
        let b = train_align(&config, &train, &split, &mut |p| {
            assert!(p.step > 25);
            true
        })
        .unwrap()
        .unwrap();
        let x = &held_out.features;
        let diff = (a.projector.forward(x).unwrap() - b.projector.forward(x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "resumed run differs by {diff}");

        // Other settings in the same directory are refused.
        let other = AlignConfig { lr: 0.5, ..config };
        let err = train_align(&other, &train, &split, &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
        std::fs::remove_dir_all(whole.dir()).unwrap();
        std::fs::remove_dir_all(split.dir()).unwrap();
    }
}
