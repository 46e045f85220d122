//! `omni embed image|text --model DIR …`: embeddings from a CLIP or SigLIP model directory.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use omni::encoder::ImageTextModel;
use omni::modality::image::RgbImage;

use super::transcribe::set_threads;

/// `omni embed` subcommands.
#[derive(Debug, Subcommand)]
pub enum EmbedCommand {
    /// Embed image files (jpeg, png, webp, gif, bmp).
    Image(EmbedImageArgs),
    /// Embed texts.
    Text(EmbedTextArgs),
    /// Embed sentences with a sentence embedder (all-MiniLM-L6-v2 by default); one
    /// L2-normalised vector per text.
    Sentences(super::embed_sentences::EmbedTextArgs),
}

/// Options both subcommands share.
#[derive(Debug, Args)]
pub struct EmbedOptions {
    /// A CLIP or SigLIP model: a directory with config.json, model.safetensors,
    /// tokenizer.json and preprocessor_config.json, or a catalogue name.
    #[arg(long, short)]
    pub model: String,

    /// Print JSON: {"model", "dim", "normalized", "items": [{"input", "embedding"}]}.
    #[arg(long)]
    pub json: bool,

    /// Print the raw projections instead of unit-length (L2-normalised) vectors.
    #[arg(long)]
    pub no_normalize: bool,

    /// Inputs per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch_size: u16,

    /// Compute threads (default: the number of physical cores).
    #[arg(long, short = 't', value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Print load, preprocessing and encoding times (and inputs/s) to stderr.
    #[arg(long)]
    pub timings: bool,
}

/// Arguments of `omni embed image`.
#[derive(Debug, Args)]
pub struct EmbedImageArgs {
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub opts: EmbedOptions,
}

/// Arguments of `omni embed text`.
#[derive(Debug, Args)]
pub struct EmbedTextArgs {
    #[arg(required = true, value_name = "TEXT")]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub opts: EmbedOptions,
}

fn load(opts: &EmbedOptions) -> anyhow::Result<ImageTextModel> {
    if let Some(threads) = opts.threads {
        set_threads(threads);
    }
    let start = Instant::now();
    let dir = omni::models::resolve(&opts.model)?;
    let model = ImageTextModel::load(&dir, &candle_core::Device::Cpu)
        .with_context(|| format!("loading {}", dir.display()))?;
    if opts.timings {
        eprintln!("load: {:.3} s", start.elapsed().as_secs_f64());
    }
    Ok(model)
}

/// Runs `omni embed`.
pub fn run(command: EmbedCommand) -> anyhow::Result<()> {
    match command {
        EmbedCommand::Image(args) => run_image(args),
        EmbedCommand::Text(args) => run_text(args),
        EmbedCommand::Sentences(args) => super::embed_sentences::run(args),
    }
}

fn run_image(args: EmbedImageArgs) -> anyhow::Result<()> {
    let opts = &args.opts;
    let model = load(opts)?;
    let device = candle_core::Device::Cpu;
    let (mut t_pre, mut t_enc) = (0.0, 0.0);
    let mut rows = Vec::with_capacity(args.files.len());
    for chunk in args.files.chunks(usize::from(opts.batch_size)) {
        let start = Instant::now();
        let images = chunk
            .iter()
            .map(|p| model.processor().load(p))
            .collect::<omni::Result<Vec<RgbImage>>>()?;
        let pixels = model.processor().tensor(&images, &device)?;
        t_pre += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let e = model.image_embeddings(&pixels, !opts.no_normalize)?;
        rows.extend(e.to_vec2::<f32>()?);
        t_enc += start.elapsed().as_secs_f64();
    }
    if opts.timings {
        let n = args.files.len() as f64;
        eprintln!(
            "preprocess: {t_pre:.3} s ({:.1} images/s); encode: {t_enc:.3} s ({:.1} images/s)",
            n / t_pre,
            n / t_enc
        );
    }
    let inputs: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    print(opts, model.dim(), &inputs, &rows)
}

fn run_text(args: EmbedTextArgs) -> anyhow::Result<()> {
    let opts = &args.opts;
    let model = load(opts)?;
    let start = Instant::now();
    let mut rows = Vec::with_capacity(args.texts.len());
    for chunk in args.texts.chunks(usize::from(opts.batch_size)) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        rows.extend(
            model
                .text_embeddings(&texts, !opts.no_normalize)?
                .to_vec2::<f32>()?,
        );
    }
    if opts.timings {
        let t = start.elapsed().as_secs_f64();
        eprintln!(
            "encode: {t:.3} s ({:.1} texts/s)",
            args.texts.len() as f64 / t
        );
    }
    print(opts, model.dim(), &args.texts, &rows)
}

fn print(
    opts: &EmbedOptions,
    dim: usize,
    inputs: &[String],
    rows: &[Vec<f32>],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if opts.json {
        let items: Vec<_> = inputs
            .iter()
            .zip(rows)
            .map(|(i, e)| serde_json::json!({ "input": i, "embedding": e }))
            .collect();
        let doc = serde_json::json!({
            "model": opts.model,
            "dim": dim,
            "normalized": !opts.no_normalize,
            "items": items,
        });
        writeln!(out, "{doc}")?;
    } else {
        for (input, e) in inputs.iter().zip(rows) {
            let values: Vec<String> = e.iter().map(|v| format!("{v:.6}")).collect();
            writeln!(out, "{input}\t{}", values.join(" "))?;
        }
    }
    Ok(())
}
