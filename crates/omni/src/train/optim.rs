//! AdamW with its state in plain named tensors (so a checkpoint can hold it and training
//! resumes exactly), global-norm gradient clipping and a warmup + cosine schedule.
//!
//! Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019);
//! `torch.optim.AdamW` and `torch.nn.utils.clip_grad_norm_`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// AdamW's hyper-parameters (PyTorch's defaults, except the weight decay).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not biases or scalars).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Param {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW over the variables of a [`VarMap`], in name order.
pub struct AdamW {
    params: Vec<Param>,
    step: usize,
    config: AdamWConfig,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("params", &self.params.len())
            .field("step", &self.step)
            .field("config", &self.config)
            .finish()
    }
}

impl AdamW {
    /// An optimizer for every float variable of `vars`, with zero moments.
    pub fn new(vars: &VarMap, config: AdamWConfig) -> Result<Self> {
        let data = vars
            .data()
            .lock()
            .map_err(|_| Error::InvalidInput("the variable map is poisoned".into()))?;
        let mut params = Vec::new();
        for (name, var) in data.iter().filter(|(_, v)| v.dtype().is_float()) {
            params.push(Param {
                name: name.clone(),
                var: var.clone(),
                m: var.zeros_like()?,
                v: var.zeros_like()?,
            });
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            params,
            step: 0,
            config,
        })
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The trained variables.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.params.iter().map(|p| &p.var)
    }

    /// One update with learning rate `lr`; gradients are multiplied by `grad_scale` first
    /// (for clipping, see [`grad_norm`]). Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let g = (g * grad_scale)?;
            p.m = ((&p.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&p.m / bias1)? / ((&p.v / bias2)?.sqrt()? + c.eps)?)?;
            let decay = if p.var.rank() >= 2 {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            let next = ((p.var.as_tensor() * decay)? - (update * lr)?)?;
            p.var.set(&next)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`), for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.m.clone());
            out.insert(format!("v.{}", p.name), p.v.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] after `step` updates.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for p in &mut self.params {
            for (prefix, slot) in [("m", &mut p.m), ("v", &mut p.v)] {
                let key = format!("{prefix}.{}", p.name);
                let t = state.get(&key).ok_or_else(|| {
                    Error::InvalidInput(format!("optimizer state has no `{key}`"))
                })?;
                if t.dims() != p.var.dims() {
                    return Err(Error::InvalidInput(format!(
                        "optimizer state `{key}` has shape {:?}, the variable {:?}",
                        t.dims(),
                        p.var.dims()
                    )));
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The global L2 norm of the gradients of `vars`.
pub fn grad_norm<'a>(grads: &GradStore, vars: impl Iterator<Item = &'a Var>) -> Result<f64> {
    let mut sum = 0.0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            sum += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    Ok(sum.sqrt())
}

/// Linear warmup to `peak`, then a cosine decay to `floor` at `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub floor: f64,
    pub warmup: usize,
    pub total: usize,
}

impl LrSchedule {
    /// The learning rate of update number `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let t = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.floor + 0.5 * (self.peak - self.floor) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let s = LrSchedule {
            peak: 1.0,
            floor: 0.1,
            warmup: 10,
            total: 110,
        };
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.55).abs() < 1e-12);
        assert!((s.at(110) - 0.1).abs() < 1e-12);
        assert!((s.at(1000) - 0.1).abs() < 1e-12);
    }

    /// Matches a hand-computed `torch.optim.AdamW` step on x ↦ sum(x²).
    #[test]
    fn one_step_like_torch() {
        let map = VarMap::new();
        let x = map
            .get(
                (1, 2),
                "x",
                candle_nn::Init::Const(1.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let mut opt = AdamW::new(&map, AdamWConfig::default()).unwrap();
        let grads = x.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        // m̂ = g, v̂ = g², update = 1 (±eps); decay: 1 - 0.1·0.01.
        let got: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        for v in got {
            assert!((v - (0.999 - 0.1)).abs() < 1e-6, "{v}");
        }
        // Resuming from the state gives the same second step as continuing.
        let state = opt.state();
        let mut resumed = AdamW::new(&map, AdamWConfig::default()).unwrap();
        resumed.load_state(&state, 1).unwrap();
        assert_eq!(resumed.step_count(), 1);
        assert_eq!(
            resumed.state()["m.x"].to_vec2::<f32>().unwrap(),
            [[2.0 * 0.1, 2.0 * 0.1]]
        );
    }
}
