//! `omni eval fashion-mnist --model SPACE`: zero-shot top-1 and text→image recall of an
//! image–text space on Fashion-MNIST's test split; `omni eval mllm`: a media → LLM
//! model on a manifest.

use std::time::Instant;

use clap::{Args, Subcommand};
use omni::encoder::whisper::Whisper;
use omni::tasks::align::evaluate_space;
use omni::tasks::mllm_train::{MllmStage, evaluate, spread_over_kinds};
use omni::tasks::speak::{TEST_SENTENCES, intelligibility};
use omni::train::manifest::Manifest;

use super::ask::load_mllm;
use super::index::DEFAULT_MODEL;
use super::speak::{TTS_MODEL, load_kokoro};
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
    /// How well speech synthesis is understood: ten sentences spoken in each voice,
    /// transcribed by Whisper, word error rate per voice.
    Speech(SpeechEvalArgs),
}

#[derive(Debug, Args)]
pub struct SpeechEvalArgs {
    /// Voices to score (repeatable; default: every voice of the model).
    #[arg(long = "voice", value_name = "VOICE")]
    pub voices: Vec<String>,
    /// The Whisper model that listens.
    #[arg(long, default_value = "whisper-base")]
    pub whisper: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
        EvalCommand::Speech(args) => return speech(args),
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

fn speech(args: SpeechEvalArgs) -> anyhow::Result<()> {
    let kokoro = load_kokoro(TTS_MODEL, None)?;
    let whisper = Whisper::load(&omni::models::resolve(&args.whisper)?)?;
    let voices = if args.voices.is_empty() {
        kokoro.voices().names().map(str::to_string).collect()
    } else {
        args.voices.clone()
    };
    for voice in &voices {
        kokoro.voices().resolve(voice)?;
    }
    let bars = Bars::default();
    let total = voices.len() * TEST_SENTENCES.len();
    let mut done = 0;
    let results = intelligibility(&kokoro, &whisper, &voices, &TEST_SENTENCES, &mut || {
        done += 1;
        bars.update("speaking and transcribing", total, done, String::new());
    });
    bars.finish();
    let results = results?;
    if args.json {
        let out = serde_json::json!({
            "model": TTS_MODEL, "whisper": args.whisper, "sentences": TEST_SENTENCES,
            "voices": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "voice            WER    (edits/words, {} sentences, {})",
        TEST_SENTENCES.len(),
        args.whisper
    );
    for r in &results {
        println!(
            "{:<15} {:>5.1}%  ({}/{})",
            r.voice,
            100.0 * r.wer,
            r.edits,
            r.words
        );
        for (said, heard) in &r.misheard {
            println!("    said:  {said}\n    heard: {}", heard.trim());
        }
    }
    Ok(())
}
