//! A reproducible image/audio → LLM training run: manifests in, a named model of the store
//! out, with its accuracy (and word error rate) per question kind against a text-only
//! baseline and chance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::interleave::{Interleaved, MediaKind};
use super::mllm::{
    ImageTokens, Media, MediaEncoder, MllmInfo, Modality, MultimodalLlm, OwnedMedia, mllm_dir,
};
use crate::llm::{
    DenseLlama, GenerateOptions, GgufFile, Llm, LoadOptions, Message, SamplingParams,
};
use crate::train::Checkpoints;
use crate::train::manifest::{AUDIO_TOKEN, IMAGE_TOKEN, Manifest, Record};
use crate::train::mllm::{
    ProjectorTraining, StepProgress, TrainData, TrainSample, train_projector,
};
use crate::train::synth::{SynthSizes, write_scenes};
use crate::{Error, Result};

/// What to train and on which data (`omni train mllm --config FILE`, TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MllmRecipe {
    /// The model name it is saved under.
    pub name: String,
    /// The LLM (store name or GGUF path).
    pub llm: String,
    /// What the model reads (image features or audio states) and how.
    pub modality: Modality,
    /// System prompt for training and use.
    pub system: Option<String>,
    /// Training manifests (LLaVA JSONL).
    pub train: Vec<PathBuf>,
    /// Held-out manifests for the evaluation.
    pub eval: Vec<PathBuf>,
    /// Train only on records of these kinds (e.g. `["caption"]` for stage 1).
    pub kinds: Option<Vec<String>>,
    /// Use at most this many training records (in manifest order).
    pub train_records: Option<usize>,
    /// Evaluate on at most this many held-out records, spread over the kinds.
    pub eval_records: usize,
    /// Start from this model's projector (stage 2 after stage 1).
    pub init: Option<String>,
    pub training: ProjectorTraining,
}

impl Default for MllmRecipe {
    fn default() -> Self {
        Self {
            name: "smollm2-scenes".into(),
            llm: "smollm2-135m-instruct".into(),
            modality: Modality::Image {
                tokens: ImageTokens::Spatial,
            },
            system: Some("Answer with one word.".into()),
            train: Vec::new(),
            eval: Vec::new(),
            kinds: None,
            train_records: None,
            eval_records: 200,
            init: None,
            training: ProjectorTraining {
                steps: 500,
                ..ProjectorTraining::default()
            },
        }
    }
}

/// Held-out conversations whose loss a run tracks (`eval_every`).
const HELD_OUT_LOSS_RECORDS: usize = 32;

/// Scenes of the default recipe: seed 0, 2,000 training and 300 test images.
pub const DEFAULT_SCENES: SynthSizes = SynthSizes {
    train: 2000,
    test: 300,
};

impl MllmRecipe {
    /// The default recipe: SmolLM2 on the synthetic scenes (written to
    /// `$OMNI_HOME/data/scenes` first if they are not there), every question kind at once.
    pub fn default_scenes(on_image: &mut dyn FnMut()) -> Result<Self> {
        let dir = crate::models::omni_home().join("data").join("scenes");
        if !dir.join("test.jsonl").is_file() {
            write_scenes(&dir, 0, DEFAULT_SCENES, on_image)?;
        }
        Ok(MllmRecipe {
            train: vec![dir.join("train.jsonl")],
            eval: vec![dir.join("test.jsonl")],
            ..MllmRecipe::default()
        })
    }

    /// Reads a TOML recipe; relative manifest paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut recipe: MllmRecipe = toml::from_str(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        recipe.train = recipe.train.iter().map(|p| base.join(p)).collect();
        recipe.eval = recipe.eval.iter().map(|p| base.join(p)).collect();
        if recipe.train.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: `train` lists no manifest",
                path.display()
            )));
        }
        Ok(recipe)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
pub enum MllmStage {
    /// Encoding the media (`done` of `total`).
    Features {
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

/// Accuracy of one kind of question.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KindScore {
    pub count: usize,
    /// Exact answers with the image.
    pub accuracy: f32,
    /// Exact answers from the question alone.
    pub text_only: f32,
    /// One over the number of distinct answers of this kind.
    pub chance: f32,
    /// Word error rate of the answers with the media (for captions and transcripts).
    pub wer: f32,
    /// For transcripts of an audio model: the word error rate of Whisper's own decoder
    /// on the same clips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whisper_wer: Option<f32>,
}

/// The evaluation of a trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MllmReport {
    pub kinds: BTreeMap<String, KindScore>,
    /// Some answers, for a look.
    pub examples: Vec<(String, String, String)>,
    pub losses: Vec<f32>,
    /// `(step, loss)` on held-out conversations during training.
    pub eval_losses: Vec<(usize, f32)>,
    /// Wall time per optimizer step of this run (resumed runs: of the steps run).
    pub seconds_per_step: f64,
}

impl std::fmt::Display for MllmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "kind               n   accuracy  text-only  chance    WER"
        )?;
        for (kind, s) in &self.kinds {
            writeln!(
                f,
                "{kind:<16} {:>4}   {:>6.1}%    {:>6.1}%  {:>5.1}%  {:>5.1}%",
                s.count,
                100.0 * s.accuracy,
                100.0 * s.text_only,
                100.0 * s.chance,
                100.0 * s.wer
            )?;
        }
        for (kind, s) in &self.kinds {
            if let Some(w) = s.whisper_wer {
                writeln!(
                    f,
                    "{kind}: Whisper's own decoder, same clips: WER {:.1}%",
                    100.0 * w
                )?;
            }
        }
        if self.seconds_per_step > 0.0 {
            writeln!(f, "training: {:.2} s per step", self.seconds_per_step)?;
        }
        Ok(())
    }
}

/// The messages of a record, with `system` first.
pub fn record_messages(record: &Record, system: Option<&str>) -> Vec<Message> {
    system
        .map(|s| Message::system(s.to_string()))
        .into_iter()
        .chain(record.conversations.iter().map(|t| {
            if t.is_assistant() {
                Message::assistant(t.value.clone())
            } else {
                Message::user(t.value.clone())
            }
        }))
        .collect()
}

/// Lowercase words only (and "mr" spelt "mister", as transcripts write it): how answers
/// are compared.
pub fn normalize_answer(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| if w == "mr" { "mister" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The media file of a record (its image or its audio), with its kind.
fn record_media(record: &Record) -> Option<(MediaKind, &str)> {
    match (&record.image, &record.audio) {
        (Some(image), _) => Some((MediaKind::Image, image)),
        (None, Some(audio)) => Some((MediaKind::Audio, audio)),
        (None, None) => None,
    }
}

/// Runs (or resumes) `recipe` and saves model `recipe.name` in the store; `None` when
/// `progress` asked to stop.
pub fn train_mllm(
    recipe: &MllmRecipe,
    progress: &mut dyn FnMut(MllmStage) -> bool,
) -> Result<Option<(PathBuf, MllmReport)>> {
    crate::models::check_model_name(&recipe.name).map_err(Error::InvalidInput)?;
    let llm_path = crate::llm::find_gguf(&crate::models::resolve(&recipe.llm)?)?;
    let llm = Llm::load(&llm_path, &LoadOptions::default())?;
    let dense = {
        let mut gguf = GgufFile::open(&llm_path)?;
        DenseLlama::from_gguf(&mut gguf, llm.config().clone(), DType::F32)?
    };
    let kind = recipe.modality.media_kind();
    let train = Manifest::read_all(&recipe.train)?;
    let of_wanted_kind = |r: &&Record| {
        recipe
            .kinds
            .as_ref()
            .is_none_or(|k| r.kind.as_ref().is_some_and(|rk| k.contains(rk)))
    };
    let mut records: Vec<&Record> = train.records.iter().filter(of_wanted_kind).collect();
    records.truncate(recipe.train_records.unwrap_or(usize::MAX));
    if let Some(other) = records
        .iter()
        .find(|r| record_media(r).is_some_and(|(k, _)| k != kind))
    {
        return Err(Error::InvalidInput(format!(
            "record `{}` holds other media than the recipe's modality ({:?})",
            other.id, recipe.modality
        )));
    }
    let eval = Manifest::read_all(&recipe.eval)?;
    let eval_records = spread_over_kinds(&eval.records, recipe.eval_records);
    // The held-out conversations (of the kinds trained on) whose loss the run tracks.
    let trained_kinds: Vec<Record> = eval
        .records
        .iter()
        .filter(of_wanted_kind)
        .cloned()
        .collect();
    let loss_records = spread_over_kinds(&trained_kinds, HELD_OUT_LOSS_RECORDS);

    let encoder = MediaEncoder::load(&recipe.modality)?;
    let mut wanted: Vec<&str> = records
        .iter()
        .copied()
        .chain(&loss_records)
        .filter_map(|r| record_media(r).map(|(_, path)| path))
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut features: HashMap<&str, Tensor> = HashMap::new();
    for (i, path) in wanted.iter().enumerate() {
        let loaded = OwnedMedia::load(kind, Path::new(path))?;
        let (rows, _) = encoder
            .features(&loaded.media())
            .map_err(|e| Error::InvalidInput(format!("{path}: {e}")))?;
        features.insert(path, rows);
        progress(MllmStage::Features {
            done: i + 1,
            total: wanted.len(),
        });
    }
    let system = recipe.system.as_deref();
    let sample = |r: &Record| -> Result<TrainSample> {
        let media: Vec<Tensor> = record_media(r)
            .map(|(_, path)| features[path].clone())
            .into_iter()
            .collect();
        let kinds = vec![kind; media.len()];
        let prompt = Interleaved::build(&llm, &record_messages(r, system), &kinds, true)
            .map_err(|e| Error::InvalidInput(format!("record `{}`: {e}", r.id)))?;
        Ok(TrainSample { prompt, media })
    };
    let samples = records
        .iter()
        .map(|r| sample(r))
        .collect::<Result<Vec<_>>>()?;
    let held_out = loss_records
        .iter()
        .map(sample)
        .collect::<Result<Vec<_>>>()?;
    let init = match &recipe.init {
        Some(name) => Some(Checkpoints::load_tensors(&mllm_dir(name)?, "model")?),
        None => None,
    };
    let home = crate::models::omni_home();
    let checkpoints = Checkpoints::open(home.join("runs").join(&recipe.name))?;
    let started = std::time::Instant::now();
    let mut steps_run = 0usize;
    let Some(trained) = train_projector(
        &recipe.training,
        &dense,
        encoder.feature_dim(),
        TrainData {
            train: &samples,
            eval: &held_out,
        },
        init.as_ref(),
        &checkpoints,
        &mut |p| {
            steps_run += 1;
            progress(MllmStage::Train(p))
        },
    )?
    else {
        return Ok(None);
    };
    let seconds_per_step = started.elapsed().as_secs_f64() / steps_run.max(1) as f64;
    drop(dense);
    let info = MllmInfo {
        llm: recipe.llm.clone(),
        modality: recipe.modality.clone(),
        system: recipe.system.clone(),
        training: serde_json::Value::Null,
    };
    let model = MultimodalLlm::from_parts(llm, encoder, trained.projector, trained.lora, info)?;
    let mut report = evaluate(&model, &eval_records, trained.losses, progress)?;
    report.seconds_per_step = seconds_per_step;
    report.eval_losses = trained.eval_losses;
    let dir = crate::models::Store::open()?.model_dir(&recipe.name);
    export(&dir, &model, recipe, &report)?;
    Ok(Some((dir, report)))
}

/// Up to `n` records, taking kinds in turn so each is represented.
pub fn spread_over_kinds(records: &[Record], n: usize) -> Vec<Record> {
    let mut by_kind: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_kind
            .entry(r.kind.clone().unwrap_or_default())
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n && by_kind.values().any(|v| i < v.len()) {
        for v in by_kind.values() {
            if let Some(r) = v.get(i)
                && out.len() < n
            {
                out.push((*r).clone());
            }
        }
        i += 1;
    }
    out
}

/// Word-level edits between `hypothesis` and `reference` (normalised like answers) and
/// the reference's word count: the terms of a word error rate.
pub fn word_edits(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r: Vec<String> = normalize_answer(reference)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let h: Vec<String> = normalize_answer(hypothesis)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, x) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, y) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

#[derive(Default)]
struct Tally {
    count: usize,
    right: usize,
    text_right: usize,
    edits: usize,
    words: usize,
    /// Whisper decoder's (edits, words), for transcripts.
    whisper: Option<(usize, usize)>,
    answers: Vec<String>,
}

/// Answers each record's first question greedily, with and without its media.
pub fn evaluate(
    model: &MultimodalLlm,
    records: &[Record],
    losses: Vec<f32>,
    progress: &mut dyn FnMut(MllmStage) -> bool,
) -> Result<MllmReport> {
    let options = GenerateOptions {
        max_tokens: 48,
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    };
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut examples = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let (Some(question), Some(answer)) =
            (record.conversations.first(), record.conversations.get(1))
        else {
            continue;
        };
        let loaded = record_media(record)
            .map(|(kind, path)| OwnedMedia::load(kind, Path::new(path)))
            .transpose()?;
        let media: Vec<Media> = loaded.iter().map(OwnedMedia::media).collect();
        let ask = |content: &str, media: &[Media]| -> Result<String> {
            let mut cache = model.new_cache(Some(1024));
            let messages = [Message::user(content.to_string())];
            Ok(model
                .generate(&mut cache, &messages, media, &options, &mut |_| true)?
                .text)
        };
        let with_media = ask(&question.value, &media)?;
        let bare = question
            .value
            .replace(IMAGE_TOKEN, "")
            .replace(AUDIO_TOKEN, "");
        let text_only = ask(bare.trim(), &[])?;
        let want = normalize_answer(&answer.value);
        let tally = tallies
            .entry(record.kind.clone().unwrap_or_default())
            .or_default();
        let (edits, words) = word_edits(&answer.value, &with_media);
        tally.count += 1;
        tally.right += usize::from(normalize_answer(&with_media) == want);
        tally.text_right += usize::from(normalize_answer(&text_only) == want);
        tally.edits += edits;
        tally.words += words;
        if let (Some(whisper), Some(OwnedMedia::Audio(samples)), Some("transcript")) =
            (model.whisper(), &loaded, record.kind.as_deref())
        {
            let options = crate::encoder::whisper::TranscribeOptions::default();
            let heard =
                super::transcribe::transcribe_samples(whisper, samples, &options, &mut |_| {})?;
            let (e, w) = word_edits(&answer.value, &heard.text);
            let sum = tally.whisper.get_or_insert((0, 0));
            *sum = (sum.0 + e, sum.1 + w);
        }
        tally.answers.push(want);
        if examples.len() < 12 {
            examples.push((question.value.clone(), answer.value.clone(), with_media));
        }
        progress(MllmStage::Eval {
            done: i + 1,
            total: records.len(),
        });
    }
    let kinds = tallies
        .into_iter()
        .map(|(kind, mut t)| {
            t.answers.sort();
            t.answers.dedup();
            let n = t.count.max(1) as f32;
            let score = KindScore {
                count: t.count,
                accuracy: t.right as f32 / n,
                text_only: t.text_right as f32 / n,
                chance: 1.0 / t.answers.len().max(1) as f32,
                wer: t.edits as f32 / t.words.max(1) as f32,
                whisper_wer: t.whisper.map(|(e, w)| e as f32 / w.max(1) as f32),
            };
            (kind, score)
        })
        .collect();
    Ok(MllmReport {
        kinds,
        examples,
        losses,
        eval_losses: Vec::new(),
        seconds_per_step: 0.0,
    })
}

/// Writes the model directory `dir` (projector, LoRA, info with the training report),
/// replacing it whole.
fn export(
    dir: &Path,
    model: &MultimodalLlm,
    recipe: &MllmRecipe,
    report: &MllmReport,
) -> Result<()> {
    super::replace_dir(dir, |tmp| {
        model.projector().save(tmp)?;
        if let Some(lora) = model.lora() {
            lora.save(tmp)?;
        }
        let info = MllmInfo {
            training: serde_json::json!({ "recipe": recipe, "evaluation": report }),
            ..model.info().clone()
        };
        let text = serde_json::to_string_pretty(&info)
            .map_err(|e| Error::InvalidInput(format!("cannot serialise the model info: {e}")))?;
        let path = tmp.join(MllmInfo::FILE);
        std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
    })
}
