//! The image generator's parts against diffusers on tiny random configs (fixtures from
//! `scripts/make_diffusion_fixtures.py`).

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use omni::generator::image::sampling::{denoise, guided};
use omni::generator::image::scheduler::{SamplerKind, Scheduler, SchedulerConfig};
use omni::generator::image::unet::{UNet, UNetConfig};
use omni::generator::image::vae::{Vae, VaeConfig};

fn reference() -> &'static HashMap<String, Tensor> {
    static REF: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    REF.get_or_init(|| {
        let path = common::fixtures().join("diffusion/reference.safetensors");
        omni::formats::safetensors::read_tensors(&path, &Device::Cpu).unwrap()
    })
}

fn tiny() -> std::path::PathBuf {
    common::fixtures().join("diffusion/tiny")
}

fn unet() -> &'static UNet {
    static UNET: OnceLock<UNet> = OnceLock::new();
    UNET.get_or_init(|| {
        let config = UNetConfig::load(&tiny().join("unet/config.json")).unwrap();
        let weights = omni::formats::safetensors::read_tensors(
            &tiny().join("unet/diffusion_pytorch_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let vb =
            candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu);
        UNet::new(config, vb).unwrap()
    })
}

fn max_abs_diff(ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims());
    (ours - theirs)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .unwrap()
}

/// A sample from the reference's initial noise and recorded step noise with `model`;
/// the latents after the first step and at the end.
fn sample(
    kind: SamplerKind,
    prefix: &str,
    model: &dyn Fn(&Tensor, usize) -> omni::Result<Tensor>,
) -> (Tensor, Tensor) {
    let config = SchedulerConfig::load(&tiny().join("scheduler/scheduler_config.json")).unwrap();
    let scheduler = Scheduler::new(kind, config, 10).unwrap();
    let want: Vec<usize> = reference()[&format!("{prefix}.timesteps")]
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&t| t as usize)
        .collect();
    assert_eq!(scheduler.timesteps(), want.as_slice());
    let noises = reference().get(&format!("{prefix}.noise"));
    let mut first = None;
    let last = denoise(
        &scheduler,
        &reference()["sample.init"],
        model,
        &mut |i| Ok(noises.expect("recorded noise").get(i)?),
        &mut |_, latents| {
            first.get_or_insert_with(|| latents.clone());
        },
    )
    .unwrap();
    (first.unwrap(), last)
}

#[test]
fn every_sampler_steps_as_diffusers_does() {
    for kind in SamplerKind::ALL {
        let prefix = format!("{}.toy", kind.name());
        let toy = |x: &Tensor, _: usize| Ok(((x * 0.3)? + 0.1)?);
        let (first, last) = sample(kind, &prefix, &toy);
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

#[test]
fn unet_noise_prediction_matches_diffusers() {
    let r = reference();
    let out = unet()
        .forward(&r["unet.sample"], &r["unet.timesteps"], &r["unet.context"])
        .unwrap();
    let diff = max_abs_diff(&out, &r["unet.out"]);
    eprintln!("unet max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "{diff}");
}

#[test]
fn guided_ten_step_samples_match_diffusers() {
    for kind in SamplerKind::ALL {
        let r = reference();
        let model = guided(unet(), &r["sample.cond"], Some(&r["sample.uncond"]), 5.0);
        let (first, last) = sample(kind, kind.name(), &model);
        let d1 = max_abs_diff(&first, &reference()[&format!("{}.first", kind.name())]);
        let d2 = max_abs_diff(&last, &reference()[&format!("{}.final", kind.name())]);
        eprintln!(
            "{:8} guided: first step {d1:.2e}, 10 steps {d2:.2e}",
            kind.name()
        );
        assert!(d1 <= 1e-3 && d2 <= 1e-3, "{}: {d1} {d2}", kind.name());
    }
}

fn load(dir: &str, file: &str) -> candle_nn::VarBuilder<'static> {
    let weights =
        omni::formats::safetensors::read_tensors(&tiny().join(dir).join(file), &Device::Cpu)
            .unwrap();
    candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu)
}

#[test]
fn vae_decode_and_encode_match_diffusers() {
    let r = reference();
    let config = VaeConfig::load(&tiny().join("vae/config.json")).unwrap();
    let vae = Vae::new(config, load("vae", "diffusion_pytorch_model.safetensors")).unwrap();
    let decoded = vae.decode(&r["vae.latents"]).unwrap();
    let (mean, std) = vae.encode(&r["vae.image"]).unwrap();
    for (name, ours) in [("decoded", &decoded), ("mean", &mean), ("std", &std)] {
        let diff = max_abs_diff(ours, &r[&format!("vae.{name}")]);
        eprintln!("vae {name} max abs diff {diff:.2e}");
        assert!(diff <= 1e-4, "vae {name}: {diff}");
    }
    let err = vae.encode(&r["vae.latents"]).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
}

#[test]
fn clip_text_states_match_transformers() {
    use omni::encoder::clip::{ClipTextConfig, ClipTextTransformer};
    let r = reference();
    let config: ClipTextConfig = serde_json::from_str(
        &std::fs::read_to_string(tiny().join("text_encoder/config.json")).unwrap(),
    )
    .unwrap();
    // transformers 5 saves a CLIPTextModel without the `text_model.` prefix of older
    // checkpoints (Stable Diffusion's).
    let vb = load("text_encoder", "model.safetensors");
    let vb = match vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
        true => vb.pp("text_model"),
        false => vb,
    };
    let tower = ClipTextTransformer::new(&config, vb).unwrap();
    let ids: Vec<Vec<u32>> = (0..2)
        .map(|b| {
            r["text.ids"]
                .get(b)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|&t| t as u32)
                .collect()
        })
        .collect();
    let keep = vec![vec![1u32; ids[0].len()]; 2];
    let states = tower.hidden_states(&ids, &keep, &Device::Cpu).unwrap();
    let diff = max_abs_diff(&states, &r["text.states"]);
    eprintln!("text states max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "{diff}");
}

#[test]
fn a_seed_fixes_the_sample_and_another_seed_changes_it() {
    use omni::generator::image::sampling::standard_normal;
    let r = reference();
    let model = guided(unet(), &r["sample.cond"], Some(&r["sample.uncond"]), 5.0);
    let run = |seed: u64| {
        let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed);
        let scheduler =
            Scheduler::new(SamplerKind::EulerAncestral, SchedulerConfig::default(), 4).unwrap();
        let init = standard_normal(&mut rng, &[1, 4, 8, 8]).unwrap();
        let mut noise = |_| standard_normal(&mut rng, &[1, 4, 8, 8]);
        denoise(&scheduler, &init, &model, &mut noise, &mut |_, _| {}).unwrap()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(max_abs_diff(&a, &c) > 0.1);
}
