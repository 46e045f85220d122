//! The trained image→text aligner, end to end: Fashion-MNIST images through frozen
//! EfficientNet-Lite0 (pooled 1280-d features, cached on disk), caption templates through
//! frozen MiniLM, a projector trained with CLIP's loss ([`crate::train::align`]), then
//! exported as a named model of the store (`aligner.json`, `projector.json`,
//! `model.safetensors`) that [`crate::tasks::search_space::load_space`] loads. The same
//! evaluation scores the training-free ConSE space, so both aligners are reported alike.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::classify::captions;
use super::search_space::{IMAGE_MODEL, ImageMapping, load_efficientnet};
use crate::encoder::efficientnet::EfficientNet;
use crate::encoder::{TextEmbedder, l2_normalize};
use crate::modality::image::{ImageProcessor, ImageProcessorConfig, ResizeTo, Rgb, RgbImage};
use crate::tasks::text_embedding::{embed_texts, load_text_embedder};
use crate::train::Checkpoints;
use crate::train::align::{AlignConfig, AlignData, AlignProgress, train_align};
use crate::train::datasets::{LabelledImages, Split, fashion_mnist};
use crate::{Error, Result};

/// Fashion-MNIST's classes as a caption says them, by label.
pub const FASHION_NAMES: [&str; 10] = [
    "t-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Caption templates the aligner trains on (and that classify with it).
pub const TRAIN_TEMPLATES: [&str; 8] = [
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a blurry photo of the {}.",
    "a product photo of a {}.",
    "a picture of a {}, a piece of clothing.",
    "a close-up photo of a {}.",
    "a grayscale image of the {}.",
];

/// Caption templates never seen in training: the text→image retrieval queries.
pub const HELD_OUT_TEMPLATES: [&str; 5] = [
    "an image of a {}.",
    "a small picture of the {}.",
    "a {} on a dark background.",
    "a catalogue photo showing a {}.",
    "this is a {}.",
];

/// One unit text embedding per class: the normalised mean of its templates' embeddings
/// (CLIP's prompt ensembling). `(classes, dim)`.
pub fn class_embeddings(
    text: &dyn TextEmbedder,
    names: &[&str],
    templates: &[&str],
) -> Result<Tensor> {
    let texts = captions(names, templates);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let flat: Vec<f32> = embed_texts(text, &refs, 64)?.concat();
    let rows = Tensor::from_vec(
        flat,
        (names.len(), templates.len(), text.dim()),
        &Device::Cpu,
    )?;
    l2_normalize(&rows.mean(1)?)
}

/// What the store's `aligner.json` says about a trained aligner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlignerInfo {
    /// The image encoder whose pooled features the projector reads (catalogue name).
    pub image_model: String,
    /// The text embedder whose space the projector writes into (catalogue name).
    pub text_model: String,
    /// The learned cosine-to-logit scale (1 / temperature).
    pub logit_scale: f32,
    /// Everything needed to make the weights again.
    pub recipe: AlignRecipe,
    /// The command that made them.
    pub command: String,
    /// Its scores on the Fashion-MNIST test split.
    pub evaluation: FashionScores,
}

impl AlignerInfo {
    /// The file name in the model directory.
    pub const FILE: &'static str = "aligner.json";

    /// Reads `dir/aligner.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))
    }
}

/// The side Fashion-MNIST images are upsampled to by default: half EfficientNet's 224,
/// a quarter of the compute, and still 4× the images' own resolution.
pub const FASHION_IMAGE_SIZE: u32 = 112;

/// A reproducible aligner training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignRecipe {
    /// The model name it is saved under.
    pub name: String,
    pub text_model: String,
    /// Use the first N training images (all 60,000 when `None`).
    pub train_images: Option<usize>,
    /// Evaluate on the first N of the 10,000 test images (all when `None`).
    pub eval_images: Option<usize>,
    /// Side of the square the 28×28 images are upsampled to for EfficientNet.
    pub image_size: u32,
    pub config: AlignConfig,
}

/// Where a recipe run is.
#[derive(Debug, Clone, Copy)]
pub enum AlignStage {
    /// Embedding images with EfficientNet (`done` of `total`).
    Features {
        split: Split,
        done: usize,
        total: usize,
    },
    /// A training step.
    Train(AlignProgress),
}

/// Zero-shot and retrieval scores on Fashion-MNIST's test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FashionScores {
    /// Test images scored.
    pub images: usize,
    /// Top-1 accuracy of nearest class text (classes embedded with [`TRAIN_TEMPLATES`]).
    pub top1: f32,
    /// Text→image: share of held-out captions whose top-1 / top-5 images hold one of the
    /// caption's class.
    pub recall_at_1: f32,
    pub recall_at_5: f32,
    /// Captions queried ([`HELD_OUT_TEMPLATES`] × 10 classes).
    pub queries: usize,
}

impl std::fmt::Display for FashionScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fashion-MNIST test ({} images): zero-shot top-1 {:.1}%, text→image recall@1 {:.1}%, recall@5 {:.1}% ({} held-out captions)",
            self.images,
            100.0 * self.top1,
            100.0 * self.recall_at_1,
            100.0 * self.recall_at_5,
            self.queries
        )
    }
}

/// Pooled EfficientNet features of a labelled image set.
#[derive(Debug, Clone)]
pub struct Features {
    /// `(N, 1280)`.
    pub pooled: Tensor,
    pub labels: Vec<u32>,
}

/// EfficientNet input for a 28×28 Fashion-MNIST image: gray to RGB, bicubic upsampling to
/// `size`×`size`, TF-Lite normalisation.
fn fashion_processor(size: u32) -> ImageProcessor {
    ImageProcessor::new(ImageProcessorConfig {
        resize: Some(ResizeTo::Exact {
            height: size,
            width: size,
        }),
        crop: None,
        ..super::search_space::efficientnet_processor()
            .config()
            .clone()
    })
}

/// The features of the first `limit` images of a Fashion-MNIST split, computed once and
/// cached under `$OMNI_HOME/cache/features/` (a cached longer prefix serves too).
pub fn fashion_features(
    net: &EfficientNet,
    split: Split,
    limit: Option<usize>,
    size: u32,
    progress: &mut dyn FnMut(AlignStage) -> bool,
) -> Result<Features> {
    let data = fashion_mnist(None, split)?;
    let n = limit.unwrap_or(data.len()).min(data.len());
    let labels: Vec<u32> = data.labels[..n].iter().map(|&l| u32::from(l)).collect();
    let dir = crate::models::omni_home().join("cache").join("features");
    let prefix = format!("fashion-mnist-{}-", split_name(split));
    let suffix = format!("-{IMAGE_MODEL}-{size}.safetensors");
    let cached = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let count: usize = name
                .strip_prefix(&prefix)?
                .strip_suffix(&suffix)?
                .parse()
                .ok()?;
            (count >= n).then_some((count, dir.join(name)))
        })
        .min();
    if let Some((_, path)) = cached
        && let Ok(tensors) = candle_core::safetensors::load(&path, &Device::Cpu)
        && let Some(pooled) = tensors.get("pooled")
        && pooled.dim(1)? == net.config.head_channels
    {
        return Ok(Features {
            pooled: pooled.narrow(0, 0, n)?,
            labels,
        });
    }
    let pooled = embed_gray_images(net, &data, n, split, size, progress)?;
    save_atomically(&dir.join(format!("{prefix}{n}{suffix}")), &pooled)?;
    Ok(Features { pooled, labels })
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

fn embed_gray_images(
    net: &EfficientNet,
    data: &LabelledImages,
    n: usize,
    split: Split,
    size: u32,
    progress: &mut dyn FnMut(AlignStage) -> bool,
) -> Result<Tensor> {
    // Small batches keep every activation under the allocator's 32 MB reuse threshold.
    const BATCH: usize = 4;
    let processor = fashion_processor(size);
    let (w, h) = (data.width as u32, data.height as u32);
    let mut parts = Vec::with_capacity(n.div_ceil(BATCH));
    for start in (0..n).step_by(BATCH) {
        let images: Vec<RgbImage> = (start..(start + BATCH).min(n))
            .map(|i| {
                let gray = data.image(i);
                RgbImage::from_fn(w, h, |x, y| {
                    let v = gray[(y * w + x) as usize];
                    Rgb([v, v, v])
                })
            })
            .collect();
        let pixels = processor.tensor(&images, &Device::Cpu)?;
        parts.push(net.forward(&pixels)?.pooled);
        let done = (start + BATCH).min(n);
        if !progress(AlignStage::Features {
            split,
            done,
            total: n,
        }) {
            return Err(Error::InvalidInput("stopped while embedding images".into()));
        }
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn save_atomically(path: &Path, pooled: &Tensor) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("pooled".to_string(), pooled.clone())]),
        &tmp,
    )
    .map_err(|e| Error::model_file(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Scores a mapping of EfficientNet features into `text`'s space on `test`.
pub fn evaluate_fashion(
    mapping: &ImageMapping,
    net: &EfficientNet,
    text: &dyn TextEmbedder,
    test: &Features,
) -> Result<FashionScores> {
    let images = mapping.map(net, &test.pooled)?;
    let classes = class_embeddings(text, &FASHION_NAMES, &TRAIN_TEMPLATES)?;
    let predicted: Vec<u32> = images.matmul(&classes.t()?)?.argmax(D::Minus1)?.to_vec1()?;
    let correct = predicted
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count();

    let queries = captions(&FASHION_NAMES, &HELD_OUT_TEMPLATES);
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let q = Tensor::from_vec(
        embed_texts(text, &refs, 64)?.concat(),
        (refs.len(), text.dim()),
        &Device::Cpu,
    )?;
    let sims: Vec<Vec<f32>> = q.matmul(&images.t()?)?.to_vec2()?;
    let (mut hit1, mut hit5) = (0, 0);
    for (i, row) in sims.iter().enumerate() {
        let class = (i / HELD_OUT_TEMPLATES.len()) as u32;
        let mut order: Vec<usize> = (0..row.len()).collect();
        let k = 5.min(row.len());
        order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
        order[..k].sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        hit1 += usize::from(test.labels[order[0]] == class);
        hit5 += usize::from(order[..k].iter().any(|&j| test.labels[j] == class));
    }
    let nq = sims.len().max(1) as f32;
    Ok(FashionScores {
        images: test.labels.len(),
        top1: correct as f32 / test.labels.len().max(1) as f32,
        recall_at_1: hit1 as f32 / nq,
        recall_at_5: hit5 as f32 / nq,
        queries: sims.len(),
    })
}

/// Scores the space `model` (a text model with ConSE, or a trained aligner) on the first
/// `limit` Fashion-MNIST test images, upsampled as the aligner was trained (ConSE:
/// [`FASHION_IMAGE_SIZE`]).
pub fn evaluate_space(
    model: &str,
    limit: Option<usize>,
    progress: &mut dyn FnMut(AlignStage) -> bool,
) -> Result<FashionScores> {
    let dir = crate::models::resolve(model)?;
    let (text, mapping, size) = if dir.join(AlignerInfo::FILE).is_file() {
        let info = AlignerInfo::load(&dir)?;
        let projector = crate::projector::Projector::load(&dir, &Device::Cpu)?;
        (
            load_text_embedder(&info.text_model)?,
            ImageMapping::Projector(projector),
            info.recipe.image_size,
        )
    } else {
        let text = load_text_embedder(model)?;
        let conse = ImageMapping::imagenet_conse(&text)?;
        (text, conse, FASHION_IMAGE_SIZE)
    };
    let net = load_efficientnet()?;
    let test = fashion_features(&net, Split::Test, limit, size, progress)?;
    evaluate_fashion(&mapping, &net, &text, &test)
}

/// Runs (or resumes) `recipe`: features, training with checkpoints under
/// `$OMNI_HOME/runs/<name>`, evaluation on the test split, and export to the store as
/// model `<name>`. `None` when `progress` asked to stop (run it again to resume).
pub fn train_fashion_aligner(
    recipe: &AlignRecipe,
    command: &str,
    progress: &mut dyn FnMut(AlignStage) -> bool,
) -> Result<Option<(PathBuf, AlignerInfo)>> {
    crate::models::check_model_name(&recipe.name).map_err(Error::InvalidInput)?;
    if crate::models::Catalog::builtin()?
        .get(&recipe.name)
        .is_some()
    {
        return Err(Error::InvalidInput(format!(
            "`{}` is a catalogue model; pick another name",
            recipe.name
        )));
    }
    let text = load_text_embedder(&recipe.text_model)?;
    let net = load_efficientnet()?;
    let train = fashion_features(
        &net,
        Split::Train,
        recipe.train_images,
        recipe.image_size,
        progress,
    )?;
    let data = AlignData {
        features: train.pooled,
        labels: train.labels,
        class_texts: class_embeddings(&text, &FASHION_NAMES, &TRAIN_TEMPLATES)?,
    };
    let home = crate::models::omni_home();
    let checkpoints = Checkpoints::open(home.join("runs").join(&recipe.name))?;
    claim_run_dir(checkpoints.dir(), recipe)?;
    let Some(aligner) = train_align(&recipe.config, &data, &checkpoints, &mut |p| {
        progress(AlignStage::Train(p))
    })?
    else {
        return Ok(None);
    };
    let test = fashion_features(
        &net,
        Split::Test,
        recipe.eval_images,
        recipe.image_size,
        progress,
    )?;
    let mapping = ImageMapping::Projector(aligner.projector.clone());
    let info = AlignerInfo {
        image_model: IMAGE_MODEL.to_string(),
        text_model: recipe.text_model.clone(),
        logit_scale: aligner.logit_scale,
        recipe: recipe.clone(),
        command: command.to_string(),
        evaluation: evaluate_fashion(&mapping, &net, &text, &test)?,
    };
    let dir = crate::models::Store::open()?.model_dir(&recipe.name);
    export(&dir, &aligner.projector, &checkpoints, &info)?;
    Ok(Some((dir, info)))
}

/// Records `recipe` in the run directory, or checks that the run there follows the same
/// recipe (data included, not only the optimizer settings), so a resume never mixes two.
fn claim_run_dir(dir: &Path, recipe: &AlignRecipe) -> Result<()> {
    let path = dir.join("recipe.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let theirs: AlignRecipe =
                serde_json::from_str(&text).map_err(|e| Error::model_file(&path, e.to_string()))?;
            if theirs != *recipe {
                return Err(Error::InvalidInput(format!(
                    "{} holds a run with other settings ({theirs:?}); remove it or train under another --name",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_json(&path, recipe),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Writes the model directory under a temporary name, then swaps it into place.
fn export(
    dir: &Path,
    projector: &crate::projector::Projector,
    checkpoints: &Checkpoints,
    info: &AlignerInfo,
) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!(".{}.tmp-{}", info.recipe.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let (_, last) = checkpoints
        .latest()?
        .ok_or_else(|| Error::InvalidInput("the run saved no checkpoint".into()))?;
    let weights = Checkpoints::load_tensors(&last, "model")?;
    let weights: std::collections::HashMap<String, Tensor> = weights
        .into_iter()
        .filter(|(k, _)| k != crate::train::align::LOG_SCALE)
        .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    let path = tmp.join("model.safetensors");
    candle_core::safetensors::save(&weights, &path)
        .map_err(|e| Error::model_file(&path, e.to_string()))?;
    write_json(&tmp.join("projector.json"), projector.config())?;
    write_json(&tmp.join(AlignerInfo::FILE), info)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::InvalidInput(format!("cannot serialise {}: {e}", path.display())))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
