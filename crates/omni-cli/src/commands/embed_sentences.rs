//! `omni embed sentences TEXT…`: sentence embeddings (all-MiniLM-L6-v2 by default).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use omni::encoder::TextEmbedder;
use omni::tasks::text_embedding::{DEFAULT_TEXT_MODEL, embed_texts, load_text_embedder};

/// Arguments of `omni embed sentences`.
#[derive(Debug, Args)]
pub struct EmbedTextArgs {
    /// Texts to embed.
    #[arg(value_name = "TEXT", required_unless_present = "file")]
    pub texts: Vec<String>,

    /// Also embed each line of this file (`-` for stdin).
    #[arg(long, short, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Text embedding model: a catalogue name or a sentence-transformers model directory.
    #[arg(long, short, default_value = DEFAULT_TEXT_MODEL)]
    pub model: String,

    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_size: u32,

    /// Print JSON: `{"model", "dim", "embeddings": [{"text", "embedding"}]}`.
    #[arg(long)]
    pub json: bool,

    /// Compute threads (default: the number of cores).
    #[arg(long, short = 't', value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Print the model load time and the embedding time to stderr.
    #[arg(long)]
    pub timings: bool,
}

/// Runs `omni embed sentences`.
pub fn run(args: EmbedTextArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        super::transcribe::set_threads(threads);
    }
    let mut texts = args.texts.clone();
    if let Some(file) = &args.file {
        texts.extend(read_lines(file)?);
    }
    let t0 = Instant::now();
    let model = load_text_embedder(&args.model)?;
    let load = t0.elapsed();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t1 = Instant::now();
    let embeddings = embed_texts(&model, &refs, args.batch_size as usize)?;
    let took = t1.elapsed();
    if args.timings {
        eprintln!("timing: model load {:.3} s", load.as_secs_f64());
        eprintln!(
            "timing: embedded {} texts in {:.3} s ({:.1} texts/s)",
            texts.len(),
            took.as_secs_f64(),
            texts.len() as f64 / took.as_secs_f64().max(1e-9)
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let items: Vec<serde_json::Value> = texts
            .iter()
            .zip(&embeddings)
            .map(|(t, e)| serde_json::json!({"text": t, "embedding": e}))
            .collect();
        let doc = serde_json::json!({"model": args.model, "dim": model.dim(), "embeddings": items});
        writeln!(out, "{doc}")?;
    } else {
        for e in &embeddings {
            let line: Vec<String> = e.iter().map(|v| format!("{v:.6}")).collect();
            writeln!(out, "{}", line.join(" "))?;
        }
    }
    Ok(())
}

fn read_lines(file: &PathBuf) -> anyhow::Result<Vec<String>> {
    let lines: std::io::Result<Vec<String>> = if file.as_os_str() == "-" {
        std::io::stdin().lock().lines().collect()
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        std::io::BufReader::new(f).lines().collect()
    };
    lines.with_context(|| format!("{}: cannot read text lines", file.display()))
}
