//! The denoising loop of diffusion sampling: a scheduler's steps over a model (a UNet,
//! with classifier-free guidance), from seeded noise.

use candle_core::{Device, Tensor};
use rand::RngExt;
use rand::rngs::StdRng;

use super::scheduler::Scheduler;
use super::unet::UNet;
use crate::Result;

/// Standard normal values of `shape` from `rng` (Box–Muller), so that a seed fixes them.
pub fn standard_normal(rng: &mut StdRng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u: f32 = rng.random_range(f32::EPSILON..1.0);
            let v: f32 = rng.random_range(0.0..1.0);
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Runs `scheduler`'s steps from `init` (standard normal, in the latents' shape; scaled
/// here by the scheduler's initial sigma) with `model(x, t)` predicting at timestep `t`.
/// `noise(i)` gives step `i`'s noise when the sampler needs it; `on_step(i, latents)`
/// sees the latents after each step. Returns the final latents.
pub fn denoise(
    scheduler: &Scheduler,
    init: &Tensor,
    model: &dyn Fn(&Tensor, usize) -> Result<Tensor>,
    noise: &mut dyn FnMut(usize) -> Result<Tensor>,
    on_step: &mut dyn FnMut(usize, &Tensor),
) -> Result<Tensor> {
    let mut latents = (init * scheduler.init_noise_sigma())?;
    for (i, &t) in scheduler.timesteps().iter().enumerate() {
        let output = model(&scheduler.scale_model_input(&latents, i)?, t)?;
        let step_noise = match scheduler.needs_noise(i) {
            true => Some(noise(i)?),
            false => None,
        };
        latents = scheduler.step(&output, i, &latents, step_noise.as_ref())?;
        on_step(i, &latents);
    }
    Ok(latents)
}

/// `unet` conditioned on `cond` (B, S, D) with classifier-free guidance: ε_u + g·(ε_c −
/// ε_u), the unconditional and conditional passes in one batch; with `uncond` absent or
/// `guidance` 1, the conditional pass alone. A model for [`denoise`].
pub fn guided<'a>(
    unet: &'a UNet,
    cond: &'a Tensor,
    uncond: Option<&'a Tensor>,
    guidance: f64,
) -> impl Fn(&Tensor, usize) -> Result<Tensor> + 'a {
    move |x: &Tensor, t: usize| {
        let b = x.dim(0)?;
        match uncond {
            Some(uncond) if guidance != 1.0 => {
                let steps = Tensor::new(vec![t as f32; 2 * b], &Device::Cpu)?;
                let context = Tensor::cat(&[uncond, cond], 0)?;
                let eps = unet.forward(&Tensor::cat(&[x, x], 0)?, &steps, &context)?;
                let (u, c) = (eps.narrow(0, 0, b)?, eps.narrow(0, b, b)?);
                Ok((&u + ((c - &u)? * guidance)?)?)
            }
            _ => unet.forward(x, &Tensor::new(vec![t as f32; b], &Device::Cpu)?, cond),
        }
    }
}
