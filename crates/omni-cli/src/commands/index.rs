//! `omni index add DIR` / `omni index info`: build and inspect the embedded search index.
//!
//! The model that embeds is behind [`omni::index::Embedder`]; [`load_embedder`] is the one
//! place that picks it (see `omni::tasks::search_space`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use omni::index::{Embedder, Index, IndexDirOptions, IndexOptions, Kind, Progress, index_dir};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Index the images (jpg, png, webp, gif, bmp) and text files (txt, md) under DIR,
    /// recursively; unchanged files are skipped, deleted ones dropped.
    Add(AddArgs),
    /// Show what an index holds.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The directory to index.
    pub dir: PathBuf,
    #[command(flatten)]
    pub index: IndexLocation,
    /// The embedding model (default: the model of an existing index, else the default).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Files embedded per batch (each batch is saved before the next starts).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_size: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub index: IndexLocation,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--index DIR`, shared by `omni index` and `omni search`.
#[derive(Debug, Args)]
pub struct IndexLocation {
    /// The index directory (default: $OMNI_HOME/index, i.e. ~/.cache/omni/index).
    #[arg(
        id = "index_dir",
        long = "index",
        env = "OMNI_INDEX",
        value_name = "DIR"
    )]
    pub dir: Option<PathBuf>,
}

impl IndexLocation {
    pub fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| omni::models::omni_home().join("index"))
    }
}

/// The embedding model used when neither `--model` nor an existing index names one.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2";

/// Loads the embedding space `model` (a name as stored in the index): a MiniLM-family
/// text model (images through EfficientNet-Lite0 + ConSE), a trained aligner, or a
/// CLIP/SigLIP checkpoint.
pub fn load_embedder(model: &str) -> anyhow::Result<Box<dyn Embedder>> {
    omni::tasks::search_space::load_space(model)
        .with_context(|| format!("cannot load the embedding model `{model}`"))
}

/// The model of the index at `dir`, if one exists there.
pub fn index_model(dir: &std::path::Path) -> Option<String> {
    if !dir.join("index.json").exists() {
        return None;
    }
    Index::open_read_only(dir, IndexOptions::default())
        .ok()
        .map(|i| i.space().to_string())
}

/// Runs `omni index …`.
pub fn run(command: IndexCommand) -> anyhow::Result<()> {
    match command {
        IndexCommand::Add(args) => add(args),
        IndexCommand::Info(args) => info(args),
    }
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let dir = args.index.path();
    let model = args
        .model
        .clone()
        .or_else(|| index_model(&dir))
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let embedder = load_embedder(&model)?;
    let mut index = Index::open(
        &dir,
        embedder.space(),
        embedder.dim(),
        IndexOptions::default(),
    )?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} indexing [{bar:30}] {pos}/{len} files {per_sec} {eta} {wide_msg}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let opts = IndexDirOptions {
        batch_size: args.batch_size as usize,
        ..IndexDirOptions::default()
    };
    let report = index_dir(
        &mut index,
        &args.dir,
        embedder.as_ref(),
        &opts,
        &mut |p| match p {
            Progress::Found { total } => bar.set_length(total as u64),
            Progress::File { done, path, .. } => {
                bar.set_position(done as u64);
                bar.set_message(
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        },
    );
    bar.finish_and_clear();
    let report = report?;

    if args.json {
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|f| json!({"path": f.path, "reason": f.reason}))
            .collect();
        let out = json!({
            "index": dir, "model": index.space(), "found": report.found,
            "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "removed": report.removed, "failed": failed, "entries": index.len(),
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: {} added, {} updated, {} unchanged, {} removed, {} failed ({} entries, {:.1}s)",
            dir.display(),
            report.added,
            report.updated,
            report.unchanged,
            report.removed,
            report.failed.len(),
            index.len(),
            start.elapsed().as_secs_f64()
        );
        for f in &report.failed {
            eprintln!("skipped {}: {}", f.path.display(), f.reason);
        }
    }
    Ok(())
}

fn info(args: InfoArgs) -> anyhow::Result<()> {
    let dir = args.index.path();
    let index = Index::open_read_only(&dir, IndexOptions::default())?;
    let images = index.entries().filter(|e| e.kind == Kind::Image).count();
    let texts = index.len() - images;
    if args.json {
        let out = json!({
            "index": dir, "model": index.space(), "dim": index.dim(),
            "entries": index.len(), "images": images, "texts": texts,
            "search": if index.has_graph() { "hnsw" } else { "exact" },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("index   {}", dir.display());
        println!("model   {} ({}-d)", index.space(), index.dim());
        println!("entries {} ({images} images, {texts} texts)", index.len());
        println!(
            "search  {}",
            if index.has_graph() { "hnsw" } else { "exact" }
        );
    }
    Ok(())
}
