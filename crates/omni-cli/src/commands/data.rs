//! `omni data synth`: write training data (images + LLaVA-style JSONL manifests).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
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
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    #[arg(value_enum)]
    pub kind: SynthKind,
    /// Output folder.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Training images (or clips).
    #[arg(long, default_value_t = 2000)]
    pub train: usize,
    /// Test images (or clips).
    #[arg(long, default_value_t = 300)]
    pub test: usize,
    /// Seed of the scenes (the same seed writes the same data).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni data …`.
pub fn run(command: DataCommand) -> anyhow::Result<()> {
    let DataCommand::Synth(args) = command;
    let sizes = SynthSizes {
        train: args.train,
        test: args.test,
    };
    let bar = ProgressBar::new((args.train + args.test) as u64);
    bar.set_style(
        ProgressStyle::with_template("writing media [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = match args.kind {
        SynthKind::Scenes => write_scenes(&args.out, args.seed, sizes, &mut || bar.inc(1)),
        SynthKind::Fashion => write_fashion(&args.out, None, sizes, &mut || bar.inc(1)),
        SynthKind::Speech => write_speech(&args.out, args.seed, sizes, &mut || bar.inc(1)),
    };
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "wrote {} media files, {} training and {} test records to {}",
            report.images,
            report.train_records,
            report.test_records,
            args.out.display()
        );
    }
    Ok(())
}
