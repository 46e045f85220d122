//! OneLLM against the reference code (csuhan/OneLLM) on a tiny random model: every
//! modality's tokenizer, the universal encoder, the UPM's routing and output, and the
//! LLM's logits (fixtures from `scripts/make_onellm_fixtures.py`).

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use omni::modality::universal::{Modality, Signal};
use omni::tasks::onellm::{OneLlm, OneLlmConfig};

const TOLERANCE: f32 = 1e-4;

fn model() -> &'static OneLlm {
    static MODEL: OnceLock<OneLlm> = OnceLock::new();
    MODEL.get_or_init(|| OneLlm::load(&common::fixtures().join("onellm/tiny")).unwrap())
}

fn reference() -> &'static HashMap<String, Tensor> {
    static REF: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    REF.get_or_init(|| {
        let path = common::fixtures().join("onellm/reference.safetensors");
        omni::formats::safetensors::read_tensors(&path, &Device::Cpu).unwrap()
    })
}

fn signal(m: Modality) -> Signal {
    let x = &reference()[&format!("input.{}", m.name())];
    Signal {
        modality: m,
        data: x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        shape: x.dims().to_vec(),
    }
}

fn max_abs_diff(ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims());
    (ours - theirs)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check(m: Modality, stage: &str, ours: &Tensor) {
    let want = &reference()[&format!("{stage}.{}", m.name())];
    let diff = max_abs_diff(ours, want);
    eprintln!("{:6} {stage:8} max abs diff {diff:.2e}", m.name());
    assert!(diff <= TOLERANCE, "{} {stage} differs by {diff}", m.name());
}

fn text_tokens() -> Vec<Vec<u32>> {
    reference()["tokens"]
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|row| row.into_iter().map(|t| t as u32).collect())
        .collect()
}

#[test]
fn every_stage_of_every_modality_matches_the_reference() {
    let model = model();
    for m in Modality::ALL {
        let s = signal(m);
        check(m, "stem", &model.tokenize(&s).unwrap());
        let features = model.encode(&s).unwrap();
        check(m, "encoder", &features);
        check(m, "routing", &model.upm().routing(m).unwrap());
        check(m, "upm", &model.project(m, &features).unwrap());
        check(m, "logits", &model.logits(&s, &text_tokens()).unwrap());
    }
}

#[test]
fn signals_in_the_wrong_shape_or_with_nans_are_refused() {
    let model = model();
    let mut imu = signal(Modality::Imu);
    imu.shape = vec![2, 5, 48];
    let err = model.tokenize(&imu).unwrap_err().to_string();
    assert!(err.contains("imu input has shape [2, 5, 48]"), "{err}");
    assert!(err.contains("(batch, 6, 40)"), "{err}");

    let mut point = signal(Modality::Point);
    point.data[10] = f32::NAN;
    let err = model.encode(&point).unwrap_err().to_string();
    assert!(err.contains("point input has a non-finite value"), "{err}");

    let mut audio = signal(Modality::Audio);
    audio.data.pop();
    let err = model.encode(&audio).unwrap_err().to_string();
    assert!(err.contains("audio input holds"), "{err}");

    let err = "smell".parse::<Modality>().unwrap_err().to_string();
    assert!(err.contains("unknown modality `smell`"), "{err}");
}

#[test]
fn a_constant_router_weighs_every_expert_equally() {
    let mut config = model().config().clone();
    config.upm.soft_router = false;
    let dir = common::fixtures().join("onellm/tiny");
    let tensors =
        omni::formats::safetensors::read_tensors(&dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let constant = OneLlm::from_tensors(config, tensors).unwrap();
    let w = constant
        .upm()
        .routing(Modality::Audio)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(w.iter().flatten().all(|&v| (v - 1.0 / 3.0).abs() < 1e-7));
}

#[test]
fn whisper_blocks_serve_as_the_universal_encoder() {
    let Some(dir) = common::model_dir("whisper-tiny.en", "model.bin") else {
        return;
    };
    let whisper = omni::encoder::whisper::Whisper::load(&dir).unwrap();
    let universal =
        omni::encoder::universal::UniversalEncoder::from_whisper(&dir.join("model.bin")).unwrap();
    assert!(universal.vit().is_none() && universal.class_embedding().is_none());
    let x = Tensor::randn(0f32, 1.0, (2, 37, universal.width()), &Device::Cpu).unwrap();
    let diff = max_abs_diff(
        &universal.forward(&x).unwrap(),
        &whisper.encoder.blocks(&x).unwrap(),
    );
    eprintln!("whisper-tiny.en blocks as the universal encoder: max abs diff {diff:.2e}");
    assert!(diff <= TOLERANCE, "{diff}");
}

#[test]
fn gradients_flow_through_the_frozen_encoder() {
    let dir = common::fixtures().join("onellm/tiny");
    let tensors =
        omni::formats::safetensors::read_tensors(&dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let clip: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("clip.visual.")?.to_string(), v.clone())))
        .collect();
    let encoder = omni::encoder::universal::UniversalEncoder::from_open_clip(&clip, 2).unwrap();
    let x = candle_core::Var::randn(0f32, 1.0, (1, 5, 64), &Device::Cpu).unwrap();
    let weights = Tensor::randn(0f32, 1.0, (1, 5, 64), &Device::Cpu).unwrap();
    // The tracked (candle ops) path computes what the fused path does.
    let fused = encoder.forward(&x.as_tensor().detach()).unwrap();
    let tracked = encoder.forward(x.as_tensor()).unwrap();
    assert!(max_abs_diff(&fused, &tracked) <= 1e-5);
    let loss = |t: &Tensor| {
        (encoder.forward(t).unwrap() * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = loss(x.as_tensor()).backward().unwrap();
    let analytic = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let base = x
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for i in [0, 77, 200, 319] {
        let eps = 1e-2;
        let at = |d: f32| {
            let mut v = base.clone();
            v[i] += d;
            let t = Tensor::from_vec(v, (1, 5, 64), &Device::Cpu).unwrap();
            loss(&t).to_scalar::<f32>().unwrap()
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        let err = (numeric - analytic[i]).abs();
        assert!(
            err <= 2e-2 * (1.0 + numeric.abs()),
            "x[{i}]: {numeric} vs {}",
            analytic[i]
        );
    }
}

#[test]
fn a_trainable_onellm_over_smollm2_passes_gradients_to_stems_and_upm() {
    let whisper = common::model_dir("whisper-tiny.en", "model.bin");
    let smollm = common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf");
    if whisper.is_none() || smollm.is_none() {
        return;
    }
    let config: OneLlmConfig = serde_json::from_value(serde_json::json!({
        "encoder": {"kind": "whisper", "model": "whisper-tiny.en"},
        "stems": {"imu_samples": 40, "image_size": 28, "image_patch": 14,
                  "audio_mel_bins": 36, "audio_frames": 56, "points": 96,
                  "point_centres": 24, "point_neighbours": 8, "point_distance_column": 0,
                  "fmri_voxels": 40, "fmri_tokens": 8},
        "upm": {"experts": 3, "layers": 1, "heads": 6, "queries": 4},
        "llm": {"gguf": "smollm2-135m-instruct"}
    }))
    .unwrap();
    let vars = candle_nn::VarMap::new();
    let model = OneLlm::trainable(config, &vars, 0).unwrap();
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    let sample =
        omni::train::signals::imu_window(&mut rng, omni::train::datasets::Split::Train, 40);
    let signal = Signal {
        modality: Modality::Imu,
        data: sample.data,
        shape: vec![1, 6, 40],
    };
    // BOS, start tag, 4 queries, end tag, 2 text tokens: logits from the end tag on.
    let logits = model.logits(&signal, &[vec![1, 2, 3]]).unwrap();
    assert_eq!(&logits.dims()[..2], &[1, 3]);
    let grads = logits.sum_all().unwrap().backward().unwrap();
    let vars = vars.data().lock().unwrap();
    for name in [
        "conv1.imu.weight",
        "positional_embedding.imu",
        "class_embedding",
        "resample_layers.0.0.attention.wq.weight",
        "routers.imu.fc1.weight",
        "clip_proj2.imu.0.weight",
    ] {
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("no variable {name}"));
        assert!(grads.get(var).is_some(), "{name} got no gradient");
    }
}

/// The tiny checkpoint's frozen parts (CLIP's ViT and the LLaMA decoder).
fn frozen_tensors() -> HashMap<String, Tensor> {
    let path = common::fixtures().join("onellm/tiny/model.safetensors");
    omni::formats::safetensors::read_tensors(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("clip.visual.")
                || k.starts_with("layers.")
                || ["tok_embeddings.weight", "norm.weight", "output.weight"].contains(&k.as_str())
        })
        .collect()
}

/// Point clouds and IMU windows of the synthetic worlds at the tiny stems' sizes, each
/// with a row whose two target tokens name the solid or the activity.
fn tiny_world() -> omni::train::onellm::OneLlmData {
    use omni::train::datasets::Split;
    use omni::train::onellm::{ModalSample, OneLlmData, TextTarget};
    use omni::train::signals::{Activity, Solid, imu_window, point_cloud};
    let mut rng = rand::SeedableRng::seed_from_u64(5);
    let mut data = OneLlmData::default();
    for i in 0..8 {
        let (modality, sample) = if i % 2 == 0 {
            (Modality::Point, point_cloud(&mut rng, Split::Train, 96))
        } else {
            (Modality::Imu, imu_window(&mut rng, Split::Train, 40))
        };
        let answer = &sample.questions[0].answer;
        let class = Solid::ALL
            .iter()
            .position(|s| s.name() == answer)
            .or_else(|| Activity::ALL.iter().position(|a| a.name() == answer))
            .unwrap() as u32;
        data.rows.push(TextTarget {
            signal: data.signals.len(),
            prompt: vec![1, 5],
            target: vec![10 + class, 2],
        });
        data.signals.push(ModalSample { modality, sample });
    }
    data
}

fn train_tiny(dir: &std::path::Path, stop_at: Option<usize>) -> Option<Vec<f32>> {
    use omni::train::onellm::OneLlmObjective;
    use omni::train::steps::{StepSettings, run_steps};
    let config: OneLlmConfig = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("onellm/tiny/config.json")).unwrap(),
    )
    .unwrap();
    let vars = candle_nn::VarMap::new();
    let model = OneLlm::trainable_over(config, &frozen_tensors(), &vars, 3).unwrap();
    let data = tiny_world();
    let held_out = omni::train::onellm::OneLlmData {
        signals: data.signals.clone(),
        rows: data.rows[..2].to_vec(),
    };
    let settings = StepSettings {
        steps: 6,
        batch_size: 3,
        grad_accum: 1,
        lr: 3e-3,
        min_lr: 1e-4,
        warmup: 1,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seed: 3,
        checkpoint_every: 100,
        eval_every: 3,
    };
    let mut objective = OneLlmObjective {
        model: &model,
        train: &data,
        held_out: &held_out,
        batch_size: 4,
    };
    let checkpoints = omni::train::Checkpoints::open(dir).unwrap();
    run_steps(
        &settings,
        &"tiny".to_string(),
        &vars,
        data.rows.len(),
        &mut objective,
        &checkpoints,
        &mut |p| Some(p.step) != stop_at,
    )
    .unwrap()
    .map(|l| l.train)
}

#[test]
fn stems_and_upm_train_over_the_frozen_parts_deterministically_and_resume_exactly() {
    let dir = |tag: &str| {
        let d =
            std::env::temp_dir().join(format!("omni-onellm-train-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    let (a, b, c) = (dir("a"), dir("b"), dir("c"));
    let losses = train_tiny(&a, None).unwrap();
    assert!(losses.last() < losses.first(), "{losses:?}");
    assert_eq!(train_tiny(&b, None).unwrap(), losses, "same seed, same run");
    // Stopped after step 2 (a checkpoint is saved), then resumed.
    assert!(train_tiny(&c, Some(2)).is_none());
    assert_eq!(train_tiny(&c, None).unwrap(), losses);
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn video_frames_are_read_through_ffmpeg_evenly_spread() {
    use omni::modality::universal::readers::read_video;
    let dir = common::temp_dir("onellm-video");
    // Eight frames of a white square moving right on black, encoded as H.264 MP4.
    for f in 0..8u32 {
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            let inside = (8 * f..8 * f + 8).contains(&x) && (24..40).contains(&y);
            image::Rgb(if inside { [255; 3] } else { [0; 3] })
        });
        img.save(dir.join(format!("f{f}.png"))).unwrap();
    }
    let video = dir.join("moving.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "8", "-i"])
        .arg(dir.join("f%d.png"))
        .args(["-pix_fmt", "yuv420p"])
        .arg(&video)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        common::absent("ffmpeg (Debian: apt-get install ffmpeg)");
        return;
    }
    let frames = read_video(&video, 4, 32).unwrap();
    assert_eq!(frames.len(), 4);
    // The bright square's centre moves right from frame to frame.
    let centre = |f: &image::RgbImage| {
        let (sum, n) = f
            .enumerate_pixels()
            .filter(|(_, _, p)| p[0] > 128)
            .fold((0u32, 0u32), |(s, n), (x, _, _)| (s + x, n + 1));
        sum as f32 / n.max(1) as f32
    };
    let xs: Vec<f32> = frames.iter().map(centre).collect();
    assert!(xs.windows(2).all(|w| w[1] > w[0] + 2.0), "{xs:?}");

    let text = dir.join("notes.mp4");
    std::fs::write(&text, "not a video").unwrap();
    let err = read_video(&text, 4, 32).unwrap_err().to_string();
    assert!(err.contains("notes.mp4") && err.contains("ffmpeg"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn whisper_audio_stem_reproduces_whisper_and_efficientnet_frames_train() {
    let whisper = common::model_dir("whisper-tiny.en", "model.bin");
    let smollm = common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf");
    let effnet = common::model_dir("efficientnet-lite0", "efficientnet-lite0-57934424.pth");
    let (Some(whisper), Some(_), Some(_)) = (whisper, smollm, effnet) else {
        return;
    };
    // The encoder's own audio input then its blocks are Whisper's encoder, exactly.
    let universal =
        omni::encoder::universal::UniversalEncoder::from_whisper(&whisper.join("model.bin"))
            .unwrap();
    let audio = universal
        .audio()
        .expect("a Whisper encoder has its audio input");
    let mel = Tensor::randn(0f32, 1.0, (1, 80, 56), &Device::Cpu).unwrap();
    let values = mel.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let tokens = audio.tokens(&values, 1, 56).unwrap();
    assert_eq!(tokens.dims(), &[1, 28, universal.width()]);
    let positions = audio.position_table(28).unwrap().narrow(0, 1, 28).unwrap();
    let ours = universal
        .forward(&tokens.broadcast_add(&positions).unwrap())
        .unwrap();
    let reference = omni::encoder::whisper::Whisper::load(&whisper).unwrap();
    let diff = max_abs_diff(&ours, &reference.encoder.forward(&mel).unwrap());
    assert!(diff <= TOLERANCE, "Whisper audio stem: {diff}");

    let config: OneLlmConfig = serde_json::from_value(serde_json::json!({
        "encoder": {"kind": "whisper", "model": "whisper-tiny.en"},
        "stems": {"image_size": 64, "frame_stem": "efficientnet",
                  "audio_mel_bins": 80, "audio_frames": 56, "audio_stem": "encoder",
                  "imu_samples": 40, "points": 96, "point_centres": 24, "point_neighbours": 8,
                  "point_distance_column": 0, "fmri_voxels": 40, "fmri_tokens": 8},
        "upm": {"experts": 3, "layers": 1, "heads": 6, "queries": 4},
        "llm": {"gguf": "smollm2-135m-instruct"}
    }))
    .unwrap();
    let vars = candle_nn::VarMap::new();
    let model = OneLlm::trainable(config.clone(), &vars, 0).unwrap();
    let audio_signal = Signal {
        modality: Modality::Audio,
        data: values,
        shape: vec![1, 80, 56],
    };
    assert_eq!(model.tokenize(&audio_signal).unwrap().dims(), &[1, 28, 384]);
    assert_eq!(model.encode(&audio_signal).unwrap().dims(), &[1, 29, 384]);
    let mut rng = rand::SeedableRng::seed_from_u64(2);
    let clip =
        omni::train::frames::video_clip(&mut rng, omni::train::datasets::Split::Train, 2, 64);
    let video = Signal {
        modality: Modality::Video,
        data: clip.data,
        shape: vec![1, 2, 3, 64, 64],
    };
    // 64 px at EfficientNet's stride 32: 2 × 2 tokens per frame.
    assert_eq!(model.tokenize(&video).unwrap().dims(), &[2, 4, 384]);
    let logits = model.logits(&video, &[vec![1, 2, 3]]).unwrap();
    let grads = logits.sum_all().unwrap().backward().unwrap();
    let vars = vars.data().lock().unwrap();
    assert!(!vars.contains_key("conv1.audio.weight"));
    let frame_conv = &vars["conv1.image.weight"];
    assert_eq!(frame_conv.dims(), &[384, 1280, 1, 1]);
    assert!(grads.get(frame_conv).is_some());
    // A CLIP encoder embeds frames itself: asking for EfficientNet with it is refused.
    let mut with_vit = config;
    with_vit.encoder = omni::tasks::onellm::EncoderSource::OpenClip { heads: 2 };
    with_vit.stems.audio_stem = omni::modality::universal::AudioStem::Patch;
    let err = OneLlm::trainable_over(with_vit, &frozen_tensors(), &candle_nn::VarMap::new(), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frame_stem"), "{err}");
}

#[test]
fn written_world_signals_read_back_as_the_signals_training_draws() {
    use omni::tasks::onellm_data::{world_signals, write_onellm_data};
    use omni::tasks::onellm_train::{OneLlmRecipe, read_signal};
    use omni::train::datasets::Split;
    use omni::train::synth::SynthSizes;
    for (program, package) in [("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng")] {
        if std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_err()
        {
            common::absent(&format!("{program} (Debian: apt-get install {package})"));
            return;
        }
    }
    let model = model();
    let mut recipe = OneLlmRecipe {
        model: model.config().clone(),
        video_frames: 4,
        ..OneLlmRecipe::default()
    };
    recipe.model.stems.image_size = *model.input_shape(Modality::Image, 1).last().unwrap();
    let dir = common::temp_dir("onellm-data");
    let sizes = SynthSizes { train: 0, test: 2 };
    let report = write_onellm_data(&dir, &recipe, sizes, &mut || {}).unwrap();
    assert_eq!(report.test_records, 16);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for m in Modality::ALL {
        let samples = world_signals(&recipe, m, Split::Test, 2).unwrap();
        let written: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["modality"] == m.name())
            .collect();
        assert_eq!(written.len(), 2, "{}", m.name());
        for (sample, record) in samples.iter().zip(written) {
            assert_eq!(record["caption"], sample.caption.as_str());
            let file = |option: &str| dir.join(record["files"][option].as_str().unwrap());
            let (path, photo) = match m {
                Modality::Rgbd => (file("depth"), Some(file("image"))),
                Modality::Rgbn => (file("normal"), Some(file("image"))),
                _ => (file(m.name()), None),
            };
            let read = read_signal(model, m, &path, photo.as_deref(), 4).unwrap();
            assert_eq!(read.data.len(), sample.data.len(), "{}", m.name());
            let diffs: Vec<f32> = read
                .data
                .iter()
                .zip(&sample.data)
                .map(|(a, b)| (a - b).abs())
                .collect();
            let max = diffs.iter().cloned().fold(0f32, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            eprintln!("{:6} max {max:.2e} mean {mean:.2e}", m.name());
            match m {
                // Exactly the numbers (text and .npy keep every bit; the WAV is the clip).
                Modality::Point | Modality::Imu | Modality::Fmri | Modality::Audio => {
                    assert!(max <= 1e-5, "{} differs by {max}", m.name())
                }
                // 8-bit pixels: half a level over CLIP's standard deviation.
                Modality::Image | Modality::Rgbn => assert!(max <= 0.01, "{} {max}", m.name()),
                // The depth reader scales a map to its maximum (the nearer shape's 0.9 → 1).
                Modality::Rgbd => {
                    let photo = diffs.len() / 2;
                    let photo_max = diffs[..photo].iter().cloned().fold(0f32, f32::max);
                    assert!(photo_max <= 0.01 && max <= 0.5, "{photo_max} {max}");
                }
                // H.264 in 4:2:0: colour edges blur.
                Modality::Video => assert!(mean <= 0.1, "video frames differ by {mean} on average"),
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
