//! `omni eval fashion-mnist --model SPACE`: zero-shot top-1 and text→image recall of an
//! image–text space on Fashion-MNIST's test split.

use std::time::Instant;

use clap::{Args, Subcommand};
use omni::tasks::align::evaluate_space;

use super::index::DEFAULT_MODEL;
use super::train::Bars;

/// `omni eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score a space on Fashion-MNIST's 10,000 test images: zero-shot top-1 over the 10
    /// class names (8 caption templates), and recall@1/5 of 50 held-out captions.
    FashionMnist(FashionArgs),
}

#[derive(Debug, Args)]
pub struct FashionArgs {
    /// The space: a text model (images by EfficientNet-Lite0 + ConSE) or a trained aligner.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Score only the first N test images.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni eval …`.
pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    let EvalCommand::FashionMnist(args) = command;
    let start = Instant::now();
    let bars = Bars::default();
    let scores = evaluate_space(&args.model, args.limit.map(|n| n as usize), &mut |s| {
        bars.show(s)
    });
    bars.finish();
    let e = scores?;
    if args.json {
        let out = serde_json::json!({
            "model": args.model, "dataset": "fashion-mnist test", "scores": e,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}: {e}", args.model);
    }
    Ok(())
}
