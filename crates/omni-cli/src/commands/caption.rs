//! `omni caption IMAGE…`: describe images with an image → LLM model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use omni::llm::{GenerateOptions, SamplingParams};
use omni::modality::image::ImageSource;
use omni::tasks::mllm::{CAPTION_PROMPT, Media};

use super::ask::{DEFAULT_MLLM, load_mllm};

#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Images to describe.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// The image → LLM model (see `omni train mllm`).
    #[arg(long, default_value = DEFAULT_MLLM)]
    pub mllm: String,
    /// Most tokens per caption.
    #[arg(long, short = 'n', default_value_t = 60)]
    pub max_tokens: usize,
    /// Print one JSON object per line (image, caption).
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni caption`.
pub fn run(args: CaptionArgs) -> anyhow::Result<()> {
    let model = load_mllm(&args.mllm)?;
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    };
    let mut stdout = std::io::stdout().lock();
    for image in &args.images {
        let caption = model
            .ask(
                &Media::Image(ImageSource::File(image)),
                CAPTION_PROMPT,
                None,
                &options,
                &mut |_| true,
            )
            .with_context(|| format!("cannot caption {}", image.display()))?;
        if args.json {
            let line = serde_json::json!({"image": image, "caption": caption.text.trim()});
            writeln!(stdout, "{line}")?;
        } else {
            writeln!(stdout, "{}: {}", image.display(), caption.text.trim())?;
        }
    }
    Ok(())
}
