//! `omni search "text"` / `omni search --image q.jpg`: query the embedded index.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use omni::index::{Index, IndexOptions, Kind, SearchOptions};
use omni::modality::image::ImageSource;
use serde_json::json;

use super::index::{IndexLocation, load_embedder};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query text.
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    pub query: Option<String>,
    /// Query with an image instead of text.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub index: IndexLocation,
    /// Number of results.
    #[arg(long, short, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub k: u32,
    /// Only results of this kind.
    #[arg(long, value_enum, default_value_t = KindArg::All)]
    pub kind: KindArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--kind`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    All,
    Image,
    Text,
}

/// Runs `omni search`.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let dir = args.index.path();
    let index = Index::open_read_only(&dir, IndexOptions::default())?;
    // The query is embedded by the index's own model, so the spaces always agree.
    let embedder = load_embedder(index.space())?;
    let query = match (&args.query, &args.image) {
        (_, Some(image)) => embedder
            .embed_images(&[ImageSource::File(image)])
            .pop()
            .context("the embedder returned no vector")??,
        (Some(text), None) => embedder
            .embed_texts(&[text.as_str()])?
            .pop()
            .context("the embedder returned no vector")?,
        (None, None) => bail!("give a query text or --image FILE"),
    };
    let opts = SearchOptions {
        k: args.k as usize,
        kind: match args.kind {
            KindArg::All => None,
            KindArg::Image => Some(Kind::Image),
            KindArg::Text => Some(Kind::Text),
        },
        ..SearchOptions::default()
    };
    let hits = index.search(embedder.space(), &query, &opts)?;
    if args.json {
        let out: Vec<_> = hits
            .iter()
            .map(|h| {
                json!({
                    "score": h.score, "path": h.entry.path, "kind": h.entry.kind.as_str(),
                    "thumbnail": h.entry.thumbnail, "snippet": h.entry.snippet,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for h in &hits {
            let extra = h
                .entry
                .snippet
                .as_deref()
                .or(h.entry.thumbnail.as_deref())
                .map(|s| format!("  {s}"))
                .unwrap_or_default();
            println!(
                "{:.4}  {:5}  {}{extra}",
                h.score,
                h.entry.kind.as_str(),
                h.entry.path
            );
        }
    }
    Ok(())
}
