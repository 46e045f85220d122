//! The image generator's parts against diffusers on tiny random configs (fixtures from
//! `scripts/make_diffusion_fixtures.py`).

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use omni::generator::image::scheduler::{SamplerKind, Scheduler, SchedulerConfig};

fn reference() -> &'static HashMap<String, Tensor> {
    static REF: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    REF.get_or_init(|| {
        let path = common::fixtures().join("diffusion/reference.safetensors");
        omni::formats::safetensors::read_tensors(&path, &Device::Cpu).unwrap()
    })
}

fn max_abs_diff(ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims());
    (ours - theirs)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .unwrap()
}

/// A sample from the reference's initial noise with `predict` as the model; the latents
/// after the first step and at the end.
fn sample(
    kind: SamplerKind,
    prefix: &str,
    predict: impl Fn(&Tensor, usize) -> Tensor,
) -> (Tensor, Tensor) {
    let config = SchedulerConfig::load(
        &common::fixtures().join("diffusion/tiny/scheduler/scheduler_config.json"),
    )
    .unwrap();
    let scheduler = Scheduler::new(kind, config, 10).unwrap();
    let want: Vec<usize> = reference()[&format!("{prefix}.timesteps")]
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&t| t as usize)
        .collect();
    assert_eq!(scheduler.timesteps(), want.as_slice());
    let mut latents = (&reference()["sample.init"] * scheduler.init_noise_sigma()).unwrap();
    let mut first = None;
    for (i, &t) in scheduler.timesteps().iter().enumerate() {
        let output = predict(&scheduler.scale_model_input(&latents, i).unwrap(), t);
        let noise = scheduler
            .needs_noise(i)
            .then(|| reference()[&format!("{prefix}.noise")].get(i).unwrap());
        latents = scheduler
            .step(&output, i, &latents, noise.as_ref())
            .unwrap();
        first.get_or_insert_with(|| latents.clone());
    }
    (first.unwrap(), latents)
}

#[test]
fn every_sampler_steps_as_diffusers_does() {
    for kind in SamplerKind::ALL {
        let prefix = format!("{}.toy", kind.name());
        let (first, last) = sample(kind, &prefix, |x, _| ((x * 0.3).unwrap() + 0.1).unwrap());
        let d1 = max_abs_diff(&first, &reference()[&format!("{prefix}.first")]);
        let d2 = max_abs_diff(&last, &reference()[&format!("{prefix}.final")]);
        eprintln!("{:8} first step {d1:.2e}, 10 steps {d2:.2e}", kind.name());
        assert!(d1 <= 1e-4 && d2 <= 1e-4, "{}: {d1} {d2}", kind.name());
    }
}

#[test]
fn bad_schedules_and_missing_noise_are_refused() {
    let config = SchedulerConfig::default();
    let err = Scheduler::new(SamplerKind::Ddim, config.clone(), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 sampling steps"), "{err}");
    assert!(Scheduler::new(SamplerKind::Ddim, config.clone(), 1001).is_err());
    let s = Scheduler::new(SamplerKind::EulerAncestral, config, 4).unwrap();
    let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = s.step(&x, 0, &x, None).unwrap_err().to_string();
    assert!(err.contains("needs noise"), "{err}");
    assert!(s.step(&x, 4, &x, Some(&x)).is_err());
}
