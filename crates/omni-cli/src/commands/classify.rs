//! `omni classify IMAGE… --labels "cat,dog,…"`: zero-shot classification.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use omni::tasks::classify::{DEFAULT_TEMPLATE, LabelSet};
use serde_json::json;

use super::index::{DEFAULT_MODEL, load_embedder};

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Image files (jpeg, png, webp, gif, bmp).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Candidate labels, comma-separated.
    #[arg(long, short, required = true, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The image–text space: a text model (images by EfficientNet-Lite0 + ConSE), a
    /// trained aligner (`omni train align`), or a CLIP/SigLIP directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Caption template, `{}` marking the label; repeat it to average several.
    #[arg(long = "template", default_value = DEFAULT_TEMPLATE)]
    pub templates: Vec<String>,
    /// Labels shown per image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// Print JSON: [{"image", "labels": [{"label", "probability", "cosine"}]} | {"image", "error"}].
    #[arg(long)]
    pub json: bool,
}

/// Runs `omni classify`.
pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let space = load_embedder(&args.model)?;
    let labels: Vec<&str> = args.labels.iter().map(String::as_str).collect();
    let templates: Vec<&str> = args.templates.iter().map(String::as_str).collect();
    let set = LabelSet::new(space.as_ref(), &labels, &templates)?;
    let paths: Vec<&std::path::Path> = args.images.iter().map(PathBuf::as_path).collect();
    let results = set.classify(space.as_ref(), &paths);
    let top = args.top as usize;
    let mut failed = 0;
    let mut items = Vec::new();
    for (path, result) in args.images.iter().zip(results) {
        match result {
            Ok(scores) => {
                let shown = &scores[..top.min(scores.len())];
                if args.json {
                    let labels: Vec<_> = shown
                        .iter()
                        .map(|s| json!({"label": s.label, "probability": s.probability, "cosine": s.cosine}))
                        .collect();
                    items.push(json!({"image": path, "labels": labels}));
                } else {
                    if args.images.len() > 1 {
                        println!("{}", path.display());
                    }
                    for s in shown {
                        println!(
                            "{:6.2}%  {:.4}  {}",
                            100.0 * s.probability,
                            s.cosine,
                            s.label
                        );
                    }
                }
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    items.push(json!({"image": path, "error": e.to_string()}));
                } else {
                    eprintln!("{}: {e}", path.display());
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            args.images.len()
        );
    }
    Ok(())
}
