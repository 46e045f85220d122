//! `omni eval fashion-mnist --model SPACE`: zero-shot top-1 and text→image recall of an
//! image–text space on Fashion-MNIST's test split; `omni eval mllm`: a media → LLM
//! model on a manifest.

use std::time::Instant;

use clap::{Args, Subcommand};
use omni::tasks::align::evaluate_space;
use omni::tasks::mllm_train::{MllmStage, evaluate, spread_over_kinds};
use omni::train::manifest::Manifest;

use super::ask::load_mllm;
use super::index::DEFAULT_MODEL;
use super::train::Bars;

/// `omni eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score a space on Fashion-MNIST's 10,000 test images: zero-shot top-1 over the 10
    /// class names (8 caption templates), and recall@1/5 of 50 held-out captions.
    FashionMnist(FashionArgs),
    /// Score an image/audio → LLM model on a manifest (LLaVA JSONL): exact answers,
    /// word error rate and a text-only baseline per record kind.
    Mllm(MllmEvalArgs),
}

#[derive(Debug, Args)]
pub struct MllmEvalArgs {
    /// The model (store name or directory).
    #[arg(long, short)]
    pub model: String,
    /// Manifests to score on.
    #[arg(long, required = true, value_name = "FILE")]
    pub manifest: Vec<std::path::PathBuf>,
    /// Score at most N records, spread over the kinds.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
    let args = match command {
        EvalCommand::FashionMnist(args) => args,
        EvalCommand::Mllm(args) => return mllm(args),
    };
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

fn mllm(args: MllmEvalArgs) -> anyhow::Result<()> {
    let model = load_mllm(&args.model)?;
    let manifest = Manifest::read_all(&args.manifest)?;
    let records = spread_over_kinds(&manifest.records, args.limit);
    let bars = Bars::default();
    let report = evaluate(&model, &records, Vec::new(), &mut |stage| {
        if let MllmStage::Eval { done, total } = stage {
            bars.update("evaluating", total, done, String::new());
        }
        true
    });
    bars.finish();
    let report = report?;
    if args.json {
        let out = serde_json::json!({
            "model": args.model, "manifests": args.manifest, "kinds": report.kinds,
            "examples": report.examples,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
