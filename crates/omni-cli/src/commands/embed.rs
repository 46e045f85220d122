//! `omni embed image|text …`: embeddings in one image–text space. A CLIP or SigLIP
//! directory embeds with its own towers (raw projections on request); any other space
//! (all-MiniLM-L6-v2 by default, images by ConSE; or a trained aligner) goes through
//! [`omni::tasks::search_space::load_space`].

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use omni::encoder::{ImageTextModel, Towers};
use omni::index::Embedder;
use omni::modality::image::ImageSource;
use omni::tasks::text_embedding::DEFAULT_TEXT_MODEL;

use super::index::load_embedder;

use super::transcribe::set_threads;

/// `omni embed` subcommands.
#[derive(Debug, Subcommand)]
pub enum EmbedCommand {
    /// Embed image files (jpeg, png, webp, gif, bmp).
    Image(EmbedImageArgs),
    /// Embed texts (sentence embeddings with all-MiniLM-L6-v2 by default).
    Text(EmbedTextArgs),
}

/// Options both subcommands share.
#[derive(Debug, Args)]
pub struct EmbedOptions {
    /// The space: a sentence embedder (images by EfficientNet-Lite0 + ConSE), a trained
    /// aligner, or a CLIP/SigLIP directory (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json).
    #[arg(long, short, default_value = DEFAULT_TEXT_MODEL)]
    pub model: String,

    /// Print JSON: {"model", "dim", "normalized", "items": [{"input", "embedding"}]}.
    #[arg(long)]
    pub json: bool,

    /// Print the raw projections instead of unit-length vectors (CLIP/SigLIP only).
    #[arg(long)]
    pub no_normalize: bool,

    /// Inputs per forward pass of a CLIP/SigLIP model (other spaces batch 32 texts,
    /// longest first).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
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
    #[arg(value_name = "TEXT", required_unless_present = "file")]
    pub texts: Vec<String>,
    /// Also embed each line of this file (`-` for stdin).
    #[arg(long, short, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub opts: EmbedOptions,
}

/// The model behind `--model`.
enum Space {
    /// A CLIP or SigLIP checkpoint, used directly (raw projections on request).
    Towers(Box<ImageTextModel>),
    /// Any other space, always unit vectors.
    Other(Box<dyn Embedder>),
}

/// Loads `--model`; of a CLIP or SigLIP checkpoint only the tower the job needs.
fn load(opts: &EmbedOptions, towers: Towers) -> anyhow::Result<Space> {
    if let Some(threads) = opts.threads {
        set_threads(threads);
    }
    let start = Instant::now();
    let dir = omni::models::resolve(&opts.model)?;
    let space = if dir.join("preprocessor_config.json").is_file() {
        Space::Towers(Box::new(
            ImageTextModel::load_towers(&dir, &candle_core::Device::Cpu, towers)
                .with_context(|| format!("loading {}", dir.display()))?,
        ))
    } else {
        if opts.no_normalize {
            bail!(
                "--no-normalize needs a CLIP or SigLIP model; `{}` gives unit vectors only",
                opts.model
            );
        }
        Space::Other(load_embedder(&opts.model)?)
    };
    if opts.timings {
        eprintln!("load: {:.3} s", start.elapsed().as_secs_f64());
    }
    Ok(space)
}

/// Runs `omni embed`.
pub fn run(command: EmbedCommand) -> anyhow::Result<()> {
    match command {
        EmbedCommand::Image(args) => run_image(args),
        EmbedCommand::Text(args) => run_text(args),
    }
}

fn run_image(args: EmbedImageArgs) -> anyhow::Result<()> {
    let opts = &args.opts;
    let model = match load(opts, Towers::Image)? {
        Space::Towers(model) => model,
        Space::Other(space) => {
            let start = Instant::now();
            let sources: Vec<ImageSource> =
                args.files.iter().map(|p| ImageSource::File(p)).collect();
            let rows = space
                .embed_images(&sources)
                .into_iter()
                .zip(&args.files)
                .map(|(r, p)| r.with_context(|| format!("{}", p.display())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if opts.timings {
                let t = start.elapsed().as_secs_f64();
                eprintln!(
                    "encode: {t:.3} s ({:.1} images/s)",
                    sources.len() as f64 / t
                );
            }
            let inputs: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
            return print(opts, space.dim(), &inputs, &rows);
        }
    };
    let device = candle_core::Device::Cpu;
    let (mut t_pre, mut t_enc) = (0.0, 0.0);
    let mut rows = Vec::with_capacity(args.files.len());
    for chunk in args.files.chunks(usize::from(opts.batch_size)) {
        let start = Instant::now();
        let pixels = model.processor().load_batch(chunk, &device)?;
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
    let mut texts = args.texts.clone();
    if let Some(file) = &args.file {
        texts.extend(read_lines(file)?);
    }
    let space = load(opts, Towers::Text)?;
    let start = Instant::now();
    let rows = match &space {
        Space::Towers(model) => {
            let mut rows = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(usize::from(opts.batch_size)) {
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                rows.extend(
                    model
                        .text_embeddings(&chunk, !opts.no_normalize)?
                        .to_vec2::<f32>()?,
                );
            }
            rows
        }
        // Batched longest first by the space itself.
        Space::Other(space) => {
            let all: Vec<&str> = texts.iter().map(String::as_str).collect();
            space.embed_texts(&all)?
        }
    };
    if opts.timings {
        let t = start.elapsed().as_secs_f64();
        eprintln!("encode: {t:.3} s ({:.1} texts/s)", texts.len() as f64 / t);
    }
    let dim = match &space {
        Space::Towers(model) => model.dim(),
        Space::Other(space) => space.dim(),
    };
    print(opts, dim, &texts, &rows)
}

fn read_lines(file: &Path) -> anyhow::Result<Vec<String>> {
    let lines: std::io::Result<Vec<String>> = if file.as_os_str() == "-" {
        std::io::stdin().lock().lines().collect()
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        std::io::BufReader::new(f).lines().collect()
    };
    lines.with_context(|| format!("{}: cannot read text lines", file.display()))
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
