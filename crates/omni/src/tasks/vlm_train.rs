//! A reproducible image → LLM training run: manifests in, a named model of the store out,
//! with its accuracy per question kind against a text-only baseline and chance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::interleave::{Interleaved, MediaKind};
use super::search_space::{efficientnet_processor, load_efficientnet};
use super::vlm::{ImageTokens, Vlm, VlmInfo, image_features};
use crate::llm::{
    DenseLlama, GenerateOptions, GgufFile, Llm, LoadOptions, Message, SamplingParams,
};
use crate::modality::image::ImageSource;
use crate::train::Checkpoints;
use crate::train::manifest::{IMAGE_TOKEN, Manifest, Record};
use crate::train::mllm::{ProjectorTraining, StepProgress, TrainSample, train_projector};
use crate::{Error, Result};

/// What to train and on which data (`omni train vlm --config FILE`, TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlmRecipe {
    /// The model name it is saved under.
    pub name: String,
    /// The LLM (store name or GGUF path).
    pub llm: String,
    pub image_tokens: ImageTokens,
    /// System prompt for training and use.
    pub system: Option<String>,
    /// Training manifest (LLaVA JSONL).
    pub train: PathBuf,
    /// Held-out manifest for the evaluation.
    pub eval: Option<PathBuf>,
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

impl Default for VlmRecipe {
    fn default() -> Self {
        Self {
            name: "smollm2-scenes".into(),
            llm: "smollm2-135m-instruct".into(),
            image_tokens: ImageTokens::Spatial,
            system: Some("Answer with one word.".into()),
            train: PathBuf::new(),
            eval: None,
            kinds: None,
            train_records: None,
            eval_records: 200,
            init: None,
            training: ProjectorTraining::default(),
        }
    }
}

impl VlmRecipe {
    /// Reads a TOML recipe; relative manifest paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut recipe: VlmRecipe = toml::from_str(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        recipe.train = base.join(&recipe.train);
        recipe.eval = recipe.eval.map(|e| base.join(e));
        Ok(recipe)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
pub enum VlmStage {
    /// Encoding images (`done` of `total`).
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
}

/// The evaluation of a trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmReport {
    pub kinds: BTreeMap<String, KindScore>,
    /// Some answers, for a look.
    pub examples: Vec<(String, String, String)>,
    pub losses: Vec<f32>,
}

impl std::fmt::Display for VlmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kind        n   accuracy  text-only  chance")?;
        for (kind, s) in &self.kinds {
            writeln!(
                f,
                "{kind:<9} {:>4}   {:>6.1}%    {:>6.1}%  {:>5.1}%",
                s.count,
                100.0 * s.accuracy,
                100.0 * s.text_only,
                100.0 * s.chance
            )?;
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

/// Lowercase words only: how answers are compared.
pub fn normalize_answer(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs (or resumes) `recipe` and saves model `recipe.name` in the store; `None` when
/// `progress` asked to stop.
pub fn train_vlm(
    recipe: &VlmRecipe,
    progress: &mut dyn FnMut(VlmStage) -> bool,
) -> Result<Option<(PathBuf, VlmReport)>> {
    crate::models::check_model_name(&recipe.name).map_err(Error::InvalidInput)?;
    let llm_path = crate::llm::find_gguf(&crate::models::resolve(&recipe.llm)?)?;
    let llm = Llm::load(&llm_path, &LoadOptions::default())?;
    let dense = {
        let mut gguf = GgufFile::open(&llm_path)?;
        DenseLlama::from_gguf(&mut gguf, llm.config().clone(), DType::F32)?
    };
    let train = Manifest::read(&recipe.train)?;
    let mut records: Vec<&Record> = train
        .records
        .iter()
        .filter(|r| {
            recipe
                .kinds
                .as_ref()
                .is_none_or(|k| r.kind.as_ref().is_some_and(|rk| k.contains(rk)))
        })
        .collect();
    records.truncate(recipe.train_records.unwrap_or(usize::MAX));
    let eval = recipe.eval.as_deref().map(Manifest::read).transpose()?;
    let eval_records = eval
        .as_ref()
        .map(|m| spread_over_kinds(&m.records, recipe.eval_records))
        .unwrap_or_default();

    let net = load_efficientnet()?;
    let processor = efficientnet_processor();
    let mut wanted: Vec<PathBuf> = records
        .iter()
        .filter_map(|r| r.image.as_ref().map(|i| train.media_path(i)))
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut features: HashMap<PathBuf, Tensor> = HashMap::new();
    for (i, path) in wanted.iter().enumerate() {
        let rgb = processor.decode(&ImageSource::File(path))?;
        let pixels = processor.tensor(&[rgb], &Device::Cpu)?;
        features.insert(
            path.clone(),
            image_features(&net, &pixels, recipe.image_tokens)?,
        );
        progress(VlmStage::Features {
            done: i + 1,
            total: wanted.len(),
        });
    }
    let system = recipe.system.as_deref();
    let samples = records
        .iter()
        .map(|r| {
            let media: Vec<Tensor> = r
                .image
                .iter()
                .map(|i| features[&train.media_path(i)].clone())
                .collect();
            let kinds = vec![MediaKind::Image; media.len()];
            let prompt = Interleaved::build(&llm, &record_messages(r, system), &kinds, true)
                .map_err(|e| Error::InvalidInput(format!("record `{}`: {e}", r.id)))?;
            Ok(TrainSample { prompt, media })
        })
        .collect::<Result<Vec<_>>>()?;
    let init = match &recipe.init {
        Some(name) => {
            let dir = super::vlm::vlm_dir(name)?;
            Some(crate::train::Checkpoints::load_tensors(&dir, "model")?)
        }
        None => None,
    };
    let home = crate::models::omni_home();
    let checkpoints = Checkpoints::open(home.join("runs").join(&recipe.name))?;
    let input_dim = features.values().next().map_or(Ok(1280), |t| t.dim(1))?;
    let Some((projector, losses)) = train_projector(
        &recipe.training,
        &dense,
        input_dim,
        &samples,
        init.as_ref(),
        &checkpoints,
        &mut |p| progress(VlmStage::Train(p)),
    )?
    else {
        return Ok(None);
    };
    drop(dense);
    let info = VlmInfo {
        llm: recipe.llm.clone(),
        image_tokens: recipe.image_tokens,
        system: recipe.system.clone(),
        training: serde_json::Value::Null,
    };
    let vlm = Vlm::from_parts(llm, net, projector, info)?;
    let report = match &eval {
        Some(manifest) => evaluate(&vlm, manifest, &eval_records, losses, progress)?,
        None => VlmReport {
            kinds: BTreeMap::new(),
            examples: Vec::new(),
            losses,
        },
    };
    let dir = crate::models::Store::open()?.model_dir(&recipe.name);
    export(&dir, &vlm, recipe, &report)?;
    Ok(Some((dir, report)))
}

/// Up to `n` records, taking kinds in turn so each is represented.
fn spread_over_kinds(records: &[Record], n: usize) -> Vec<Record> {
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

/// Answers each record's first question greedily, with and without its image.
pub fn evaluate(
    vlm: &Vlm,
    manifest: &Manifest,
    records: &[Record],
    losses: Vec<f32>,
    progress: &mut dyn FnMut(VlmStage) -> bool,
) -> Result<VlmReport> {
    let options = GenerateOptions {
        max_tokens: 24,
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    };
    let mut tallies: BTreeMap<String, (usize, usize, usize, Vec<String>)> = BTreeMap::new();
    let mut examples = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let (Some(question), Some(answer)) =
            (record.conversations.first(), record.conversations.get(1))
        else {
            continue;
        };
        let paths: Vec<PathBuf> = record
            .image
            .iter()
            .map(|p| manifest.media_path(p))
            .collect();
        let images: Vec<ImageSource> = paths.iter().map(|p| ImageSource::File(p)).collect();
        let ask = |content: &str, images: &[ImageSource]| -> Result<String> {
            let mut cache = vlm.llm.new_cache(Some(512));
            let messages = [Message::user(content.to_string())];
            Ok(vlm
                .generate(&mut cache, &messages, images, &options, &mut |_| true)?
                .text)
        };
        let with_image = ask(&question.value, &images)?;
        let text_only = ask(question.value.replace(IMAGE_TOKEN, "").trim(), &[])?;
        let want = normalize_answer(&answer.value);
        let tally = tallies
            .entry(record.kind.clone().unwrap_or_default())
            .or_default();
        tally.0 += 1;
        tally.1 += usize::from(normalize_answer(&with_image) == want);
        tally.2 += usize::from(normalize_answer(&text_only) == want);
        tally.3.push(want);
        if examples.len() < 12 {
            examples.push((question.value.clone(), answer.value.clone(), with_image));
        }
        progress(VlmStage::Eval {
            done: i + 1,
            total: records.len(),
        });
    }
    let kinds = tallies
        .into_iter()
        .map(|(kind, (n, right, text_right, mut answers))| {
            answers.sort();
            answers.dedup();
            let score = KindScore {
                count: n,
                accuracy: right as f32 / n.max(1) as f32,
                text_only: text_right as f32 / n.max(1) as f32,
                chance: 1.0 / answers.len().max(1) as f32,
            };
            (kind, score)
        })
        .collect();
    Ok(VlmReport {
        kinds,
        examples,
        losses,
    })
}

/// Writes the model directory under a temporary name, then swaps it into place.
fn export(dir: &Path, vlm: &Vlm, recipe: &VlmRecipe, report: &VlmReport) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!(".{}.tmp-{}", recipe.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    vlm.projector().save(&tmp)?;
    let info = VlmInfo {
        training: serde_json::json!({ "recipe": recipe, "evaluation": report }),
        ..vlm.info().clone()
    };
    let text = serde_json::to_string_pretty(&info)
        .map_err(|e| Error::InvalidInput(format!("cannot serialise the model info: {e}")))?;
    let path = tmp.join(VlmInfo::FILE);
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}
