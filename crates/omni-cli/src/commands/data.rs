//! `omni data synth`: write training data (images + LLaVA-style JSONL manifests).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use omni::tasks::onellm_data::write_onellm_data;
use omni::tasks::onellm_train::OneLlmRecipe;
use omni::train::synth::{SynthSizes, write_fashion, write_scenes, write_speech};

/// `omni data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a dataset for image/audio → LLM training: the media, train.jsonl and
    /// test.jsonl.
    Synth(SynthArgs),
}

/// Which dataset.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SynthKind {
    /// Rendered scenes of coloured shapes with captions and questions (colour, shape,
    /// count, left/right); test scenes hold colour–shape pairs never seen in training.
    Scenes,
    /// Fashion-MNIST images (Debian: dataset-fashion-mnist) with captions and a
    /// "what is it" question.
    Fashion,
    /// Sentences spoken by espeak-ng (Debian: espeak-ng) in several voices, with their
    /// transcripts and a "who is mentioned" question; test sentences hold word pairs
    /// never heard in training.
    Speech,
    /// OneLLM's eight modalities as the files `omni ask` takes (PNG, 16-bit depth PNG,
    /// MP4, WAV, PLY, CSV, .npy), the very signals `omni train onellm` (default recipe,
    /// or --config) trains and tests on; --train/--test count per modality.
    Onellm,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    #[arg(value_enum)]
    pub kind: SynthKind,
    /// Output folder.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Training images or clips [default: 2000; onellm: the recipe's per modality]
    #[arg(long)]
    pub train: Option<usize>,
    /// Test images or clips [default: 300; onellm: the recipe's per modality]
    #[arg(long)]
    pub test: Option<usize>,
    /// Seed of the scenes (the same seed writes the same data) [default: 0; onellm: the
    /// recipe's]
    #[arg(long)]
    pub seed: Option<u64>,
    /// onellm: the recipe (TOML) whose worlds to write (sizes, seed); the default recipe
    /// without it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni data …`.
pub fn run(command: DataCommand) -> anyhow::Result<()> {
    let DataCommand::Synth(args) = command;
    let recipe = match (&args.config, args.kind) {
        (Some(path), SynthKind::Onellm) => Some(OneLlmRecipe::load(path)?),
        (None, SynthKind::Onellm) => Some(OneLlmRecipe::default()),
        (Some(_), _) => anyhow::bail!("--config is for `omni data synth onellm` only"),
        (None, _) => None,
    };
    let sizes = SynthSizes {
        train: args
            .train
            .unwrap_or(recipe.as_ref().map_or(2000, |r| r.train_per_modality)),
        test: args
            .test
            .unwrap_or(recipe.as_ref().map_or(300, |r| r.test_per_modality)),
    };
    let seed = args.seed.unwrap_or(recipe.as_ref().map_or(0, |r| r.seed));
    let per_signal = if recipe.is_some() { 8 } else { 1 };
    let bar = ProgressBar::new(((sizes.train + sizes.test) * per_signal) as u64);
    bar.set_style(
        ProgressStyle::with_template("writing media [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = match args.kind {
        SynthKind::Scenes => write_scenes(&args.out, seed, sizes, &mut || bar.inc(1)),
        SynthKind::Fashion => write_fashion(&args.out, None, sizes, &mut || bar.inc(1)),
        SynthKind::Speech => write_speech(&args.out, seed, sizes, &mut || bar.inc(1)),
        SynthKind::Onellm => {
            let recipe = OneLlmRecipe {
                seed,
                ..recipe.unwrap_or_default()
            };
            write_onellm_data(&args.out, &recipe, sizes, &mut || bar.inc(1))
        }
    };
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "wrote {} media files (signals), {} training and {} test records to {}",
            report.images,
            report.train_records,
            report.test_records,
            args.out.display()
        );
    }
    Ok(())
}
