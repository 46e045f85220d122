//! `omni bench`: omni's side of a benchmark row, timed in-process (model load excluded):
//! a warm-up pass, then `--rounds` timed passes, reported as their median and best.
//! `scripts/bench.py` runs these next to the peers (llama.cpp, faster-whisper, torch,
//! onnxruntime, transformers) and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use clap::{Args, Subcommand};
use omni::encoder::efficientnet::EfficientNet;
use omni::encoder::image_text::{ImageTextModel, Towers};
use omni::modality::image::{ImageProcessor, ResizeTo};

use super::transcribe::set_threads;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Image tower throughput (images/s) on fixed pseudo-random pixels at the model's input
    /// size (224×224 for EfficientNet-Lite): an EfficientNet-Lite checkpoint, or a
    /// CLIP/SigLIP model directory.
    ImageEncoder(ImageEncoderArgs),
    /// Sentence embedding throughput (texts/s) of a MiniLM-family model, tokenization
    /// included, batched longest first.
    TextEncoder(TextEncoderArgs),
    /// Image preprocessing throughput (images/s): decode + resize + crop + normalize, as
    /// the model's preprocessor_config.json says.
    Preprocess(PreprocessArgs),
}

/// Options every bench job takes.
#[derive(Debug, Args)]
pub struct BenchOptions {
    /// Model name from the catalogue, or a model directory / checkpoint file.
    #[arg(long, short)]
    pub model: String,
    /// Timed passes after the warm-up pass.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Compute threads (default: all cores).
    #[arg(long, short)]
    pub threads: Option<u16>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImageEncoderArgs {
    #[command(flatten)]
    pub opts: BenchOptions,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct TextEncoderArgs {
    #[command(flatten)]
    pub opts: BenchOptions,
    /// Texts, one per line.
    #[arg(long)]
    pub file: PathBuf,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct PreprocessArgs {
    #[command(flatten)]
    pub opts: BenchOptions,
    /// Image files (each pass decodes and preprocesses all of them).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `omni bench …`.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::ImageEncoder(args) => image_encoder(args),
        BenchCommand::TextEncoder(args) => text_encoder(args),
        BenchCommand::Preprocess(args) => preprocess(args),
    }
}

fn start(opts: &BenchOptions) -> anyhow::Result<PathBuf> {
    if opts.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if let Some(threads) = opts.threads {
        set_threads(threads);
    }
    Ok(omni::models::resolve(&opts.model)?)
}

fn image_encoder(args: ImageEncoderArgs) -> anyhow::Result<()> {
    let path = start(&args.opts)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device = Device::Cpu;
    let pixels = |side: usize| -> anyhow::Result<Tensor> {
        let n = args.batch * 3 * side * side;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Ok(Tensor::from_vec(
            data,
            (args.batch, 3, side, side),
            &device,
        )?)
    };
    let forward: Box<dyn Fn() -> anyhow::Result<()>> =
        if path.join("preprocessor_config.json").is_file() {
            let model = ImageTextModel::load_towers(&path, &device, Towers::Image)
                .with_context(|| format!("loading {}", path.display()))?;
            let config = model.processor().config();
            let side = match (config.crop, config.resize) {
                (Some((h, _)), _) => h,
                (None, Some(ResizeTo::Exact { height, .. })) => height,
                (None, Some(ResizeTo::ShortestEdge(s))) => s,
                (None, None) => 224,
            };
            let pixels = pixels(side as usize)?;
            Box::new(move || {
                model.image_embeddings(&pixels, true)?.to_vec2::<f32>()?;
                Ok(())
            })
        } else {
            let model = EfficientNet::load(&path)?;
            let pixels = pixels(224)?;
            Box::new(move || {
                model.forward(&pixels)?.logits.to_vec2::<f32>()?;
                Ok(())
            })
        };
    let secs = time_rounds(args.opts.rounds, forward)?;
    report(&args.opts, "image-encoder", "images/s", args.batch, &secs)
}

fn text_encoder(args: TextEncoderArgs) -> anyhow::Result<()> {
    let path = start(&args.opts)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if texts.is_empty() {
        bail!("{}: no texts (one per line)", args.file.display());
    }
    let model = omni::encoder::bert::BertEmbedder::load(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let secs = time_rounds(args.opts.rounds, || {
        omni::tasks::text_embedding::embed_texts(&model, &texts, args.batch)?;
        Ok(())
    })?;
    report(&args.opts, "text-encoder", "texts/s", texts.len(), &secs)
}

fn preprocess(args: PreprocessArgs) -> anyhow::Result<()> {
    let dir = start(&args.opts)?;
    if !dir.join("preprocessor_config.json").is_file() {
        bail!(
            "{}: no preprocessor_config.json (preprocess needs a CLIP/SigLIP model directory)",
            dir.display()
        );
    }
    let processor = ImageProcessor::from_model_dir(&dir)?;
    let secs = time_rounds(args.opts.rounds, || {
        processor.load_batch(&args.files, &Device::Cpu)?;
        Ok(())
    })?;
    report(
        &args.opts,
        "preprocess",
        "images/s",
        args.files.len(),
        &secs,
    )
}

/// One warm-up call, then `rounds` timed calls; their durations in seconds.
fn time_rounds(rounds: usize, f: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    f()?;
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn report(
    opts: &BenchOptions,
    job: &str,
    unit: &str,
    items: usize,
    secs: &[f64],
) -> anyhow::Result<()> {
    let mut rates: Vec<f64> = secs.iter().map(|s| items as f64 / s).collect();
    rates.sort_by(f64::total_cmp);
    let median = if rates.len() % 2 == 1 {
        rates[rates.len() / 2]
    } else {
        (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0
    };
    let best = rates[rates.len() - 1];
    if opts.json {
        println!(
            "{}",
            serde_json::json!({
                "job": job, "model": opts.model, "unit": unit, "items": items,
                "median": median, "best": best, "rates": rates,
            })
        );
    } else {
        println!(
            "{job} {}: {median:.1} {unit} median, {best:.1} best ({} rounds of {items})",
            opts.model,
            rates.len()
        );
    }
    Ok(())
}
