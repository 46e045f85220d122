//! `omni generate`: continue a prompt with a language model, streaming the text.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use omni::llm::{GenerateOptions, Llm, LoadOptions, SamplingParams};
use omni::tasks::generate::{GenerateRequest, generate};

/// The model and how to run it (shared by `generate` and `chat`).
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model name in the catalogue, a model directory or a .gguf file.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// A tokenizer.json to use instead of the vocabulary in the GGUF file.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<std::path::PathBuf>,
    /// Threads to compute with (default: all CPUs).
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's).
    #[arg(long = "ctx", value_name = "TOKENS")]
    pub context: Option<usize>,
}

impl ModelArgs {
    /// Applies the thread count and loads the model.
    pub fn load(&self) -> anyhow::Result<Llm> {
        if let Some(n) = self.threads {
            anyhow::ensure!(n > 0, "--threads must be at least 1");
            omni::llm::set_num_threads(n);
            // candle's own pool (used for GGUF types omni has no kernel for) reads this
            // once, on first use, which is after this point.
            // SAFETY: no other thread runs yet (argument parsing only).
            unsafe { std::env::set_var("CANDLE_NUM_THREADS", n.to_string()) };
        }
        if let Some(c) = self.context {
            anyhow::ensure!(c > 0, "--ctx must be at least 1");
        }
        let path = omni::models::resolve(&self.model)?;
        let options = LoadOptions {
            tokenizer_json: self.tokenizer.clone(),
        };
        Ok(Llm::load(&path, &options)?)
    }
}

/// How to pick tokens and when to stop (shared by `generate` and `chat`).
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 always picks the most likely token.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample among the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample among the most likely tokens covering this probability mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for repeating any of the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed, for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Do not stop at end-of-generation tokens (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn options(&self) -> anyhow::Result<GenerateOptions> {
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        };
        sampling.validate()?;
        Ok(GenerateOptions {
            max_tokens: self.max_tokens,
            sampling,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        })
    }
}

/// Continue a prompt with a language model, streaming the text to stdout.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt.
    #[arg(
        long,
        short,
        required_unless_present = "prompt_file",
        conflicts_with = "prompt_file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, value_name = "PATH")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// Wrap the prompt in the model's chat template (as a user message).
    #[arg(long)]
    pub chat: bool,
    /// A system message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object (text, tokens, finish reason, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Print token counts and speeds to stderr.
    #[arg(long)]
    pub stats: bool,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the prompt from {}", path.display()))?,
        (None, None) => anyhow::bail!("give a prompt with --prompt or --prompt-file"),
    };
    let request = GenerateRequest {
        prompt,
        chat: args.chat,
        system: args.system.clone(),
        context: args.model.context,
        options: args.sampling.options()?,
    };
    let llm = args.model.load()?;
    let mut stdout = std::io::stdout().lock();
    let streaming = !args.json;
    let mut write_error = None;
    let generation = generate(&llm, &request, &mut |text| {
        if !streaming {
            return true;
        }
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => true,
            Err(e) => {
                // A closed pipe ends generation quietly.
                write_error = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = write_error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(e).context("cannot write to stdout");
    }
    if args.json {
        serde_json::to_writer(&mut stdout, &generation)?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout)?;
    }
    if args.stats {
        let s = &generation.stats;
        eprintln!(
            "prefill: {} tokens in {:.3} s ({:.1} tok/s); decode: {} tokens in {:.3} s ({:.1} tok/s); {} generated, finish: {:?}, threads: {}",
            s.prefill_tokens,
            s.prefill_secs,
            s.prefill_tokens_per_sec(),
            s.decode_tokens,
            s.decode_secs,
            s.decode_tokens_per_sec(),
            generation.tokens.len(),
            generation.finish_reason,
            omni::llm::num_threads(),
        );
    }
    Ok(())
}
